"""Seeded train/test splits."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["train_test_split"]


def train_test_split(x: ArrayLike, test_fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffles `x` with `seed` and returns `(train, test)`.

    The training part holds `int((1 - test_fraction) * len(x))` examples
    (1,437 of scikit-learn's 1,797 digits for the default 0.2).

    Raises:
      ValueError: if `test_fraction` is not in `[0, 1)`.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}.")
    x = np.asarray(x)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_train = int((1.0 - test_fraction) * len(x))
    return x[perm[:n_train]], x[perm[n_train:]]

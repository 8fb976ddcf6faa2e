"""Uniform dequantization of discrete data and the bits/dim it is reported in."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tfp_nice._validation import check_int

__all__ = ["bits_per_dim", "dequantize"]


def _check_levels(num_levels):
    return check_int(num_levels, "num_levels", minimum=2)


def check_levels_data(x, num_levels, who):
    """`x` as an array after checking it holds whole numbers in `[0, num_levels - 1]`."""
    _check_levels(num_levels)
    x = np.asarray(x)
    if x.size == 0:
        raise ValueError(f"{who} got an empty array.")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{who} needs numeric data, got dtype {x.dtype}.")
    bad = ~np.isfinite(x) | (x != np.round(x)) | (x < 0) | (x > num_levels - 1)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{who} needs whole numbers in [0, {num_levels - 1}]; "
            f"got {x[index].item()!r} at index {index}."
        )
    return x


def dequantize(x: np.ndarray, num_levels: int, seed: int | None = None,
               dtype: str = "float32") -> np.ndarray:
    """Maps integer data in `{0, ..., num_levels - 1}` to `(x + u) / num_levels`.

    `u` is uniform on `[0, 1)`, fresh for every entry, so the result lies in
    `[0, 1)` and a density `p` on it bounds the discrete likelihood:
    `log P(x) >= E_u[log p((x + u) / L)] - D log L` (NICE uses `L = 256`).

    Args:
      x: array of integer values (any integer or float dtype holding whole
        numbers) in `[0, num_levels - 1]`.
      num_levels: number of discrete levels `L`, an int >= 2.
      seed: seed of the noise (`None`, int, or `numpy.random.Generator`).
      dtype: dtype of the result.

    Raises:
      ValueError: for a bad `num_levels`, non-integer values, or values out
        of range (the message gives the first offending index).
    """
    x = check_levels_data(x, num_levels, "dequantize")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return ((x + rng.random(x.shape)) / num_levels).astype(dtype)


def bits_per_dim(nll_nats: Any, num_dims: int, num_levels: int | None = None) -> Any:
    """Converts a negative log-likelihood per example (nats) to bits per dimension.

    For data dequantized from `L = num_levels` levels into `[0, 1)` (see
    `dequantize`), the density's NLL is converted to the discrete data's by
    adding `D log L`: `bits/dim = (nll + D log L) / (D log 2)`. For continuous
    data (`num_levels=None`) it is `nll / (D log 2)`.

    Works on floats, numpy arrays and tensors alike.
    """
    check_int(num_dims, "num_dims")
    offset = 0.0
    if num_levels is not None:
        _check_levels(num_levels)
        offset = num_dims * math.log(num_levels)
    return (nll_nats + offset) / (num_dims * math.log(2.0))

"""Two-dimensional toy densities, generated with numpy (no download)."""

from __future__ import annotations

import numpy as np

from tfp_nice._validation import check_int

__all__ = ["TOY_DATASETS", "checkerboard", "eight_gaussians", "two_moons"]


def _check_n(n):
    return check_int(n, "n")


def two_moons(n: int, noise: float = 0.1, seed: int | None = None,
              dtype: str = "float32") -> np.ndarray:
    """Returns `n` points of two interleaved half circles, shape `(n, 2)`.

    The outer moon is `(cos t, sin t)` and the inner one `(1 - cos t, 0.5 - sin t)`
    with `t` uniform on `[0, pi]`, plus Gaussian noise of standard deviation
    `noise`; points are shuffled.
    """
    _check_n(n)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}.")
    rng = np.random.default_rng(seed)
    n_outer = n // 2
    t = rng.uniform(0.0, np.pi, size=n)
    x = np.where(np.arange(n)[:, None] < n_outer,
                 np.stack([np.cos(t), np.sin(t)], 1),
                 np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], 1))
    x = x + noise * rng.normal(size=x.shape)
    return rng.permutation(x).astype(dtype)


def eight_gaussians(n: int, scale: float = 2.0, std: float = 0.2, seed: int | None = None,
                    dtype: str = "float32") -> np.ndarray:
    """Returns `n` points from eight Gaussians on a circle of radius `scale`."""
    _check_n(n)
    rng = np.random.default_rng(seed)
    angles = rng.integers(0, 8, size=n) * (np.pi / 4)
    centres = scale * np.stack([np.cos(angles), np.sin(angles)], 1)
    return (centres + std * rng.normal(size=(n, 2))).astype(dtype)


def checkerboard(n: int, seed: int | None = None, dtype: str = "float32") -> np.ndarray:
    """Returns `n` points uniform on the dark squares of a 4x4 board on [-2, 2]^2."""
    _check_n(n)
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(-2.0, 2.0, size=n)
    x2 = rng.uniform(0.0, 1.0, size=n) - rng.integers(0, 2, size=n) * 2.0
    x2 = x2 + np.floor(x1) % 2
    return np.stack([x1, x2], 1).astype(dtype)


TOY_DATASETS = {
    "moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
}

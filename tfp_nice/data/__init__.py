"""Data sets, dequantization and metrics (the bottom layer: numpy in, numpy out)."""

from tfp_nice.data.toy import TOY_DATASETS, checkerboard, eight_gaussians, two_moons

__all__ = ["TOY_DATASETS", "checkerboard", "eight_gaussians", "two_moons"]

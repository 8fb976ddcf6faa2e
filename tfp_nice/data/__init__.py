"""Data sets, dequantization and metrics (the bottom layer: numpy in, numpy out)."""

from tfp_nice.data.baselines import gaussian_log_likelihood
from tfp_nice.data.loaders import (
    DIGITS_LEVELS,
    MNIST_LEVELS,
    download_mnist,
    load_digits,
    load_mnist,
    read_idx,
    read_npz,
)
from tfp_nice.data.quantization import bits_per_dim, dequantize
from tfp_nice.data.splits import train_test_split
from tfp_nice.data.toy import TOY_DATASETS, checkerboard, eight_gaussians, two_moons

__all__ = [
    "DIGITS_LEVELS",
    "MNIST_LEVELS",
    "TOY_DATASETS",
    "bits_per_dim",
    "checkerboard",
    "dequantize",
    "download_mnist",
    "eight_gaussians",
    "gaussian_log_likelihood",
    "load_digits",
    "load_mnist",
    "read_idx",
    "read_npz",
    "train_test_split",
    "two_moons",
]

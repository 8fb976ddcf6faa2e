"""Toy data sets: shapes, determinism, and the geometry they claim."""

import numpy as np
import pytest

from tfp_nice.data import TOY_DATASETS, checkerboard, eight_gaussians, two_moons


@pytest.mark.parametrize("name", list(TOY_DATASETS))
def test_toy_sets_are_seeded_and_shaped(name):
    make = TOY_DATASETS[name]
    a, b, c = make(500, seed=1), make(500, seed=1), make(500, seed=2)
    assert a.shape == (500, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_two_moons_without_noise_lies_on_the_circles():
    x = two_moons(1000, noise=0.0, seed=0).astype(np.float64)
    outer = np.isclose(np.hypot(x[:, 0], x[:, 1]), 1.0, atol=1e-6)
    inner = np.isclose(np.hypot(x[:, 0] - 1.0, x[:, 1] - 0.5), 1.0, atol=1e-6)
    assert np.all(outer | inner) and outer.sum() == 500


def test_checkerboard_lies_on_dark_squares():
    x = checkerboard(2000, seed=0)
    assert np.all((np.floor(x[:, 0]) + np.floor(x[:, 1])) % 2 == 0)


def test_eight_gaussians_have_eight_modes():
    x = eight_gaussians(4000, std=0.01, seed=0)
    angles = np.round(np.arctan2(x[:, 1], x[:, 0]) / (np.pi / 4)) % 8
    assert len(np.unique(angles)) == 8


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_sizes(n):
    with pytest.raises(ValueError, match=r"n must be an int >= 1. Received: n="):
        two_moons(n)

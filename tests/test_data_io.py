"""Dequantization, bits/dim, baselines and the loaders, on files the tests write."""

import gzip
import math
import pathlib

import numpy as np
import pytest
from scipy import stats

from tfp_nice.data import (
    DIGITS_LEVELS,
    bits_per_dim,
    dequantize,
    download_mnist,
    gaussian_log_likelihood,
    load_digits,
    load_mnist,
    read_idx,
)

SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def idx_bytes(array):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    array = np.asarray(array)
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


@pytest.fixture
def small_mnist(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, size=5).astype(np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    (tmp_path / "raw-images").write_bytes(idx_bytes(images))
    return tmp_path, images, labels


# --- dequantization and bits/dim -------------------------------------------------------


def test_dequantize_stays_in_each_cell():
    x = np.arange(17).repeat(100)
    u = dequantize(x, 17, seed=0, dtype="float64")
    assert u.shape == x.shape and u.dtype == np.float64
    assert np.all(np.floor(u * 17) == x)
    assert np.all((u >= 0) & (u < 1))
    # The noise is uniform within the cells: its mean offset is about 1/2.
    assert abs(np.mean(u * 17 - x) - 0.5) < 0.02


def test_dequantize_is_seeded():
    x = np.zeros((3, 4), int)
    np.testing.assert_array_equal(dequantize(x, 256, seed=1), dequantize(x, 256, seed=1))
    assert not np.array_equal(dequantize(x, 256, seed=1), dequantize(x, 256, seed=2))


@pytest.mark.parametrize("x,message", [
    (np.array([0, 17]), r"\[0, 16\].*17.*index \(1,\)"),
    (np.array([0.5, 1.0]), "whole numbers"),
    (np.array([-1, 2]), "index"),
    (np.array([1.0, np.nan]), "whole numbers"),
    (np.array([], int), "empty"),
])
def test_dequantize_bad_input(x, message):
    with pytest.raises(ValueError, match=message):
        dequantize(x, 17)


@pytest.mark.parametrize("levels", [1, 0, 2.5, None])
def test_dequantize_bad_levels(levels):
    with pytest.raises(ValueError, match="num_levels"):
        dequantize(np.zeros(3, int), levels)


def test_bits_per_dim_closed_form():
    # A uniform density on [0, 1)^D has NLL 0; over 256 levels that is exactly 8 bits/dim.
    assert bits_per_dim(0.0, 784, 256) == pytest.approx(8.0)
    assert bits_per_dim(10 * math.log(2.0), 10) == pytest.approx(1.0)
    nll = np.array([100.0, 200.0])
    np.testing.assert_allclose(bits_per_dim(nll, 64, 17),
                               (nll + 64 * np.log(17)) / (64 * np.log(2)))
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(1.0, 0)


def test_gaussian_baselines_match_scipy():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 2.0]])
    test = rng.normal(size=(20, 3))
    cov = np.cov(train, rowvar=False, bias=True)
    expected = stats.multivariate_normal(train.mean(0), cov).logpdf(test)
    np.testing.assert_allclose(gaussian_log_likelihood(train, test), expected, rtol=1e-10)
    expected_diag = stats.multivariate_normal(train.mean(0), np.diag(train.var(0))).logpdf(test)
    np.testing.assert_allclose(gaussian_log_likelihood(train, test, "diag"), expected_diag,
                               rtol=1e-10)
    with pytest.raises(ValueError, match="covariance"):
        gaussian_log_likelihood(train, test, "spherical")


# --- digits ----------------------------------------------------------------------------------


def test_load_digits():
    x, y = load_digits()
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert x.min() == 0 and x.max() == DIGITS_LEVELS - 1
    images, _ = load_digits(as_images=True)
    assert images.shape == (1797, 8, 8, 1)
    np.testing.assert_array_equal(images.reshape(1797, 64), x)


# --- MNIST files -------------------------------------------------------------------------------


def test_read_idx_gzipped_and_raw(small_mnist):
    folder, images, labels = small_mnist
    np.testing.assert_array_equal(read_idx(folder / "t10k-images-idx3-ubyte.gz"), images)
    np.testing.assert_array_equal(read_idx(folder / "raw-images"), images)
    np.testing.assert_array_equal(read_idx(folder / "t10k-labels-idx1-ubyte.gz"), labels)


def test_read_idx_other_dtypes(tmp_path):
    for array in [np.arange(6, dtype=">i4").reshape(2, 3), np.ones((2, 2), ">f4")]:
        path = tmp_path / "a.idx"
        path.write_bytes(idx_bytes(array))
        out = read_idx(path)
        np.testing.assert_array_equal(out, array)
        assert out.dtype.byteorder in ("=", "|", "<")


def test_load_mnist_idx_and_npz(small_mnist, tmp_path):
    folder, images, labels = small_mnist
    x, y = load_mnist(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    np.savez(tmp_path / "m.npz", x_train=images, y_train=labels)
    x, y = load_mnist(tmp_path / "m.npz")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    np.savez(tmp_path / "only.npz", images=images)
    x, y = load_mnist(tmp_path / "only.npz")
    assert y is None and x.shape == (5, 28, 28)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here.gz")
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_mnist(tmp_path / "nothing-here.npz")


def test_truncated_idx(small_mnist, tmp_path):
    folder, _, _ = small_mnist
    data = (folder / "raw-images").read_bytes()
    path = tmp_path / "cut"
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"truncated.*\(5, 28, 28\)"):
        read_idx(path)
    path.write_bytes(data[:6])
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(path)


def test_truncated_gzip(small_mnist, tmp_path):
    folder, _, _ = small_mnist
    data = (folder / "t10k-images-idx3-ubyte.gz").read_bytes()
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_not_an_idx_file(tmp_path):
    path = tmp_path / "text.idx"
    path.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


def test_npz_without_images(tmp_path):
    np.savez(tmp_path / "bad.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="holds no examples.*weights"):
        load_mnist(tmp_path / "bad.npz")


def test_corrupt_npz(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_mnist(tmp_path / "bad.npz")


def test_labels_not_matching_images(small_mnist, tmp_path):
    folder, images, _ = small_mnist
    (tmp_path / "labels").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="5 images but labels of shape"):
        load_mnist(folder / "raw-images", tmp_path / "labels")


def test_download_mnist_from_a_local_url(small_mnist, tmp_path):
    folder, images, labels = small_mnist
    target = tmp_path / "downloaded"
    paths = download_mnist(target, split="t10k", base_url=folder.as_uri() + "/")
    x, y = load_mnist(*paths)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert sorted(p.name for p in target.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_download_mnist_leaves_nothing_when_the_file_is_bad(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>not found</html>")
    target = tmp_path / "downloaded"
    with pytest.raises(ValueError, match="not an IDX file"):
        download_mnist(target, split="t10k", base_url=source.as_uri() + "/")
    assert list(target.iterdir()) == []
    with pytest.raises(ValueError, match="split"):
        download_mnist(target, split="validation")


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is not present")
def test_shared_mnist_test_split():
    x, y = load_mnist(SHARED_MNIST / "t10k-images-idx3-ubyte.gz",
                      SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert x.mean() == pytest.approx(33.79, abs=0.01)
    np.testing.assert_array_equal(
        np.bincount(y), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_train_test_split_is_seeded_and_complete():
    from tfp_nice.data import train_test_split

    x = np.arange(1797)
    train, test = train_test_split(x, 0.2, seed=0)
    assert len(train) == 1437 and len(test) == 360
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), x)
    again, _ = train_test_split(x, 0.2, seed=0)
    np.testing.assert_array_equal(train, again)
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(x, 1.0)

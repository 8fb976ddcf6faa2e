"""Loaders: scikit-learn's digits (shipped), MNIST from local IDX or .npz files."""

from __future__ import annotations

import gzip
import os
import pathlib
import shutil
import tempfile
import urllib.request
import zipfile
from typing import Any

import numpy as np

from tfp_nice._extras import require
from tfp_nice._fs import follow_umask

__all__ = ["DIGITS_LEVELS", "MNIST_LEVELS", "download_mnist", "load_digits", "load_mnist",
           "read_idx", "read_npz"]

DIGITS_LEVELS = 17  # scikit-learn's digits take the values 0..16
MNIST_LEVELS = 256

_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def load_digits(as_images: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Returns scikit-learn's 1,797 8x8 digits and their labels (no download).

    Pixels are integers in `0..16` (`DIGITS_LEVELS = 17` levels); dequantize
    them with `dequantize(x, DIGITS_LEVELS)`.

    Args:
      as_images: if `True`, images of shape `(n, 8, 8, 1)`; else `(n, 64)`.

    Returns:
      `(x, labels)`: `x` of dtype int64, `labels` of shape `(n,)`.

    Raises:
      MissingExtraError: (an `ImportError`) if scikit-learn, which ships the
        digits, is not installed; it comes with `pip install "tfp_nice[cli]"`.
    """
    datasets = require("sklearn.datasets", "the digits data set (scikit-learn's)")
    bunch = datasets.load_digits()
    x = bunch.images.astype(np.int64)
    x = x.reshape(-1, 8, 8, 1) if as_images else x.reshape(len(x), 64)
    return x, bunch.target.astype(np.int64)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (MNIST's format), gzipped or raw (told apart by content).

    Raises:
      FileNotFoundError: if the file is missing.
      ValueError: if it is not an IDX file or is truncated (the message names
        the file and what was expected).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No IDX file at {path}.")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip, whatever the file is called
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path} is a corrupt or truncated gzip file: {err}") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r}).")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"{path} has a truncated IDX header.")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path} is truncated or padded: its header says shape {shape} "
            f"({expected} bytes of data) but it holds {len(data) - header} bytes."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


_NPZ_IMAGE_KEYS = ("x", "images", "x_train", "x_test")
_NPZ_LABEL_KEYS = ("y", "labels", "y_train", "y_test")


def read_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """The examples (and labels, if any) of a `.npz` file, of whatever shape they have.

    The examples are stored under one of the keys `x`, `images`, `x_train`,
    `x_test`, the labels under the matching `y`, `labels`, `y_train`, `y_test`.

    Returns:
      `(x, labels)`; `labels` is `None` when the file holds none.

    Raises:
      ValueError: for an unreadable file or one without such a key.
    """
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            x_key = next((k for k in _NPZ_IMAGE_KEYS if k in keys), None)
            if x_key is None:
                raise ValueError(f"{path} holds no examples: expected one of the keys "
                                 f"{_NPZ_IMAGE_KEYS}, found {keys}.")
            y_key = _NPZ_LABEL_KEYS[_NPZ_IMAGE_KEYS.index(x_key)]
            return archive[x_key], (archive[y_key] if y_key in keys else None)
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable .npz file: {err}") from err


def load_mnist(path: str | os.PathLike,
               labels_path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Loads MNIST-like images from a local file.

    Args:
      path: an IDX images file (`.gz` or raw), or a `.npz` file holding the
        images under one of the keys `x`, `images`, `x_train`, `x_test` (and
        optionally labels under `y`, `labels`, `y_train`, `y_test`).
      labels_path: for IDX, the matching labels file (optional).

    Returns:
      `(images, labels)`: images `(n, h, w)` as stored (uint8 for MNIST),
      labels `(n,)` or `None`.

    Raises:
      FileNotFoundError, ValueError: for missing, corrupt or mismatched files.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No MNIST file at {path}.")
    if path.suffix == ".npz":
        images, labels = read_npz(path)
    else:
        images = read_idx(path)
        labels = read_idx(labels_path) if labels_path is not None else None
    if images.ndim != 3:
        raise ValueError(f"{path}: expected images of shape (n, h, w), got {images.shape}.")
    if labels is not None and labels.shape != (images.shape[0],):
        raise ValueError(
            f"{path}: {images.shape[0]} images but labels of shape {labels.shape}."
        )
    return images, labels


def download_mnist(directory: str | os.PathLike, split: str = "train",
                   base_url: str = MNIST_URL, timeout: float = 60) -> tuple[pathlib.Path, ...]:
    """Downloads one MNIST split's two IDX files into `directory` (skips present files).

    Each file is written to a temporary name and renamed once complete and
    readable, so an interrupted download never leaves a partial file behind.

    Args:
      directory: folder to write to (created if needed).
      split: `"train"` (60,000 images) or `"t10k"` (10,000).
      base_url: where the `*-idx?-ubyte.gz` files are.
      timeout: seconds per request.

    Returns:
      `(images_path, labels_path)`, ready for `load_mnist`.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {tuple(MNIST_FILES)}, got {split!r}.")
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in MNIST_FILES[split]:
        target = directory / name
        if not target.is_file():
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
            follow_umask(tmp)  # mkstemp makes it private to its owner
            try:
                with os.fdopen(fd, "wb") as out, \
                        urllib.request.urlopen(base_url + name, timeout=timeout) as response:
                    shutil.copyfileobj(response, out)
                read_idx(tmp)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        paths.append(target)
    return tuple(paths)

"""Turning the command line's `--data` and `MODEL` arguments into arrays and models.

Reading data needs numpy alone; TensorFlow is imported only to load a model.
"""

import dataclasses
import json
import math
import pathlib
import re
import warnings

import numpy as np

from tfp_nice.data import (
    DIGITS_LEVELS,
    TOY_DATASETS,
    dequantize,
    load_digits,
    load_mnist,
    read_npz,
)

BUILTIN_DATA = ("digits",) + tuple(TOY_DATASETS)


class InputError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


@dataclasses.dataclass
class Dataset:
    name: str
    x: np.ndarray  # float32 (n, d), dequantized when discrete
    num_levels: int | None
    image_shape: tuple | None  # (h, w) when the vectors are images

    @property
    def event_shape(self):
        return tuple(self.x.shape[1:])


def _check_finite(x, source, where):
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        kind = "NaN" if np.isnan(x[row]).any() else "inf"
        raise InputError(f"{source} holds {kind} in {where(row)}; remove or fill it.")


def _from_integers(raw, num_levels, seed, source):
    """Dequantizes whole-number data with `num_levels` (inferred when `None`)."""
    if num_levels is None:
        num_levels = 256 if raw.dtype == np.uint8 else int(raw.max()) + 1
    if num_levels < 2:
        raise InputError(f"{source}: integer data need at least 2 levels, got {num_levels}.")
    try:
        return dequantize(raw, num_levels, seed=seed), num_levels
    except ValueError as err:
        raise InputError(f"{source}: {err}") from err


_RAGGED = re.compile(r"number of columns changed from (\d+) to (\d+) at row (\d+)")
_NOT_A_NUMBER = re.compile(r"could not convert string (.*) to \w+ at row (\d+), column (\d+)")


class _CsvError(ValueError):
    """A value numpy could not read, at `line` (1-based, of the file)."""

    def __init__(self, message, line):
        super().__init__(message)
        self.line = line


def _loadtxt(path, skiprows):
    """numpy's CSV reader, its errors told in the CLI's terms (line numbers of the file)."""
    try:
        with warnings.catch_warnings():  # an empty file is reported below, not as a warning
            warnings.filterwarnings("ignore", message=".*input contained no data")
            return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=skiprows)
    except ValueError as err:
        ragged = _RAGGED.search(str(err))
        if ragged:  # numpy counts these rows from 1 after the skipped lines
            before, now, row = (int(g) for g in ragged.groups())
            raise InputError(f"{path}: line {row + skiprows} has {now} values but the lines "
                             f"before it have {before}; every line needs the same number "
                             "of comma-separated values.") from None
        value = _NOT_A_NUMBER.search(str(err))
        if value:  # and these from 0
            text, row, column = value.group(1), int(value.group(2)), int(value.group(3))
            line = row + skiprows + 1
            raise _CsvError(f"{path} is not a numeric CSV file: line {line}, column "
                            f"{column} holds {text}, not a number.", line) from None
        raise InputError(f"{path} is not a numeric CSV file: {err}") from None


def _read_csv(path):
    """Numbers separated by commas, one example per line, with at most one header line.

    Returns the array and the file's line number of its first row (2 after a header).
    """
    try:
        return _check_csv_rows(_loadtxt(path, 0), path), 1
    except _CsvError as err:
        if err.line != 1:  # the first line read: it may be a header; any other is bad
            raise InputError(str(err)) from None
    try:
        return _check_csv_rows(_loadtxt(path, 1), path), 2
    except _CsvError as err:
        raise InputError(str(err)) from None


def _check_csv_rows(x, path):
    if x.size == 0:
        raise InputError(f"{path} holds no rows of numbers (an empty CSV file).")
    return x


def _read_array(path):
    """The array of a data file, its image shape (or `None`), and how to name its rows."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False), None, _row
        except (ValueError, OSError) as err:
            raise InputError(f"{path} is not a readable .npy file: {err}") from err
    if suffix == ".csv":
        x, first_line = _read_csv(path)
        return x, None, lambda row: f"line {row + first_line}"
    if suffix == ".npz":  # any shape, (n, d) to (n, h, w, c): not only MNIST's (n, h, w)
        try:
            return read_npz(path)[0], None, _row
        except ValueError as err:
            raise InputError(str(err)) from err
    try:
        images, _ = load_mnist(path)
    except ValueError as err:
        raise InputError(str(err)) from err
    return images, tuple(images.shape[1:]), _row


def _row(index):
    return f"row {index}"


def load_dataset(spec, num_points=10000, num_levels=None, seed=0, float_levels=True):
    """Resolves `--data`: a built-in name or a `.npy`, `.csv`, `.npz` or IDX file.

    Integer data are dequantized into `[0, 1)` (256 levels for uint8, else
    `max + 1`, unless `num_levels` is given); float data are used as they are,
    unless `num_levels` is given and `float_levels` (then they must hold whole
    numbers, as `--num-levels` promises). Images are flattened into vectors.
    """
    if spec == "digits":
        raw, _ = load_digits()
        return Dataset("digits", dequantize(raw, DIGITS_LEVELS, seed=seed), DIGITS_LEVELS,
                       (8, 8))
    if spec in TOY_DATASETS:
        return Dataset(spec, TOY_DATASETS[spec](num_points, seed=seed), None, None)
    path = pathlib.Path(spec)
    if path.is_dir():
        raise InputError(f"--data {spec} is a folder; give a data file (.npy, .csv, .npz "
                         "or MNIST IDX) or one of " + ", ".join(BUILTIN_DATA) + ".")
    if not path.is_file():
        raise InputError(
            f"--data {spec}: no such file, and not one of {', '.join(BUILTIN_DATA)}."
        )
    raw, image_shape, where = _read_array(path)
    if raw.ndim < 2 or raw.shape[0] == 0 or math.prod(raw.shape[1:]) == 0:
        raise InputError(f"{path}: expected an array of shape (n, d) with n, d > 0, "
                         f"got shape {raw.shape}.")
    if raw.ndim in (3, 4) and image_shape is None:
        image_shape = tuple(raw.shape[1:])  # (h, w) or (h, w, c)
    raw = raw.reshape(len(raw), -1)
    if np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.bool_):
        x, levels = _from_integers(raw.astype(np.int64) if raw.dtype == np.bool_ else raw,
                                   num_levels, seed, path)
    elif np.issubdtype(raw.dtype, np.floating):
        _check_finite(raw, str(path), where)
        if num_levels is not None and float_levels:
            x, levels = _from_integers(raw, num_levels, seed, path)
        else:
            x, levels = raw.astype(np.float32), (None if float_levels else num_levels)
    else:
        raise InputError(f"{path}: expected numbers, got dtype {raw.dtype}.")
    if image_shape is None and int(math.isqrt(x.shape[1])) ** 2 == x.shape[1] and x.shape[1] > 4:
        side = math.isqrt(x.shape[1])
        image_shape = (side, side)
    return Dataset(path.stem, x, levels, image_shape)


def load_labels(spec, data_spec, count, num_classes=None):
    """Resolves `--labels`: `builtin` (the built-in digits' own labels) or a `.npy` or
    `.csv` file of one whole-number class `0..K-1` per example, in the data's order.

    Returns the labels (int64, shape `(count,)`) and the number of classes `K`
    (`num_classes` when given, a model's; else the largest label + 1, at least 2).
    """
    if spec == "builtin":
        if data_spec != "digits":
            raise InputError(f"--labels builtin gives the built-in digits' labels; --data "
                             f"{data_spec} has none built in: give a .npy or .csv file.")
        labels = load_digits()[1]
    else:
        path = pathlib.Path(spec)
        if not path.is_file():
            raise InputError(f"--labels {spec}: no such file (a .npy or .csv of one class "
                             "per example, or builtin for --data digits).")
        if path.suffix.lower() not in (".npy", ".csv"):
            raise InputError(f"--labels {spec}: expected a .npy or .csv file.")
        labels, _, where = _read_array(path)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise InputError(f"{path}: expected one label per example (shape (n,) or (n, 1)), "
                             f"got shape {labels.shape}.")
        if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype,
                                                                          np.floating)):
            raise InputError(f"{path}: expected whole-number class labels, got dtype "
                             f"{labels.dtype}.")
        bad = ~np.isfinite(labels) | (labels < 0) | (labels != np.round(labels))
        if bad.any():
            row = int(np.argmax(bad))
            raise InputError(f"{path}: {where(row)} holds {labels[row].item()!r}, not a "
                             "class label (a whole number >= 0).")
    labels = np.asarray(labels).astype(np.int64)
    if len(labels) != count:
        raise InputError(f"--labels {spec} holds {len(labels)} labels for {count} examples of "
                         "--data; give one label per example, in the same order.")
    if num_classes is None:
        num_classes = max(int(labels.max()) + 1, 2)
    elif labels.max() >= num_classes:
        raise InputError(f"--labels {spec}: label {int(labels.max())} is not one of the "
                         f"model's {num_classes} classes (0..{num_classes - 1}).")
    return labels, num_classes


def one_hot(labels, num_classes, dtype="float32"):
    """The context rows of a class-conditional model: one-hot labels."""
    return np.eye(num_classes, dtype=dtype)[np.asarray(labels)]


def class_count(info, model_path):
    """A class-conditional model's number of classes (its one-hot context), or `None`."""
    shape = info.get("context_shape")
    if shape is None:
        return None
    if len(shape) != 1:
        raise InputError(f"{model_path} is conditional on contexts of shape {shape}; the "
                         "command line gives one-hot class labels only (shape (K,)): use the "
                         "Python API.")
    return int(shape[0])


def labels_context(args, info, count):
    """The one-hot context of `--labels` for a class-conditional model; `None` for another
    (which must not be given labels)."""
    classes = class_count(info, args.model)
    if classes is None:
        if args.labels is not None:
            raise InputError(f"{args.model} is not class-conditional (trained without "
                             "--labels); drop --labels.")
        return None
    if args.labels is None:
        raise InputError(f"{args.model} is class-conditional ({classes} classes): give the "
                         "labels of --data with --labels.")
    labels, _ = load_labels(args.labels, args.data, count, num_classes=classes)
    return one_hot(labels, classes, np.dtype(info["dtype"]))


def is_saved_model(path):
    return path.is_dir() and (path / "saved_model.pb").is_file()


def load_model(path):
    """Loads `MODEL`: a `.keras` file (a `tfp_nice.NICE`) or a SavedModel folder.

    Returns `(kind, model_or_loaded, info)` where `info` holds `event_shape`
    and `num_levels`.
    """
    import keras
    import tensorflow as tf

    from tfp_nice.models import NICE  # noqa: F401 - registered for keras.models.load_model

    path = pathlib.Path(path)
    if not path.exists():
        raise InputError(f"No model at {path}.")
    if is_saved_model(path):
        try:
            loaded = tf.saved_model.load(str(path))
            meta = json.loads((path / "assets.extra" / "tfp_nice.json").read_text())
        except Exception as err:  # noqa: BLE001 - any failure means a bad folder
            raise InputError(f"{path} is not a readable tfp_nice SavedModel: {err}") from err
        context = meta.get("context_shape")
        info = {"event_shape": tuple(meta["event_shape"]), "num_levels": meta["num_levels"],
                "dtype": meta["dtype"], "context_shape": None if context is None else tuple(
                    context)}
        return "saved_model", loaded, info
    if path.suffix == ".keras" and path.is_file():
        try:
            model = keras.models.load_model(path)
        except Exception as err:  # noqa: BLE001 - corrupt or truncated archives
            raise InputError(f"{path} is not a readable .keras model: {err}") from err
        if not hasattr(model, "event_shape") or not hasattr(model, "log_prob"):
            raise InputError(f"{path} holds a {type(model).__name__}, not a tfp_nice model.")
        context = getattr(model, "context_shape", None)
        info = {"event_shape": tuple(model.event_shape), "num_levels": model.num_levels,
                "dtype": model.flow_dtype, "context_shape": None if context is None else tuple(
                    context)}
        return "keras", model, info
    raise InputError(f"{path} is neither a .keras file nor a SavedModel folder.")

"""Static argument checks shared by the bijectors."""

import tensorflow as tf

from tfp_nice.transformers.affine import LOG_SCALE_LIMIT, clip_log_scale  # noqa: F401


def floating_dtype(value, what):
    """Returns the floating `tf.DType` of `value` or raises `TypeError`."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        dtype = tf.convert_to_tensor(value).dtype
    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        raise TypeError(f"{what} must have a floating dtype, got {dtype.name}.")
    return dtype


def check_floating_input(x, expected_dtype, name):
    """Raises `TypeError` unless tensor `x` is floating (and of `expected_dtype`)."""
    if not x.dtype.is_floating:
        raise TypeError(
            f"{name} expects a floating input, got dtype {x.dtype.name}; "
            "cast integer data to float (and dequantize it) first."
        )
    if expected_dtype is not None and x.dtype != expected_dtype:
        raise TypeError(
            f"{name} works in {tf.as_dtype(expected_dtype).name}, "
            f"got an input of dtype {x.dtype.name}."
        )


def check_event_shape(x, expected, name, what="x"):
    """Raises `ValueError` if the static trailing dims of `x` contradict `expected`."""
    expected = tuple(int(d) for d in expected)
    k = len(expected)
    if k == 0 or x.shape.rank is None:
        return
    if x.shape.rank < k:
        raise ValueError(
            f"{name} expects {what} with event shape {expected} "
            f"(rank >= {k}), got shape {tuple(x.shape)}."
        )
    got = tuple(x.shape[-k:])
    for g, e in zip(got, expected):
        if g is not None and g != e:
            raise ValueError(
                f"{name} expects {what} with event shape {expected}, "
                f"got trailing dims {got} (full shape {tuple(x.shape)})."
            )

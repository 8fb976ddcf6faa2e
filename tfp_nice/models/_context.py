"""A conditional flow's context plumbing: the embedding network's shape and config, the
context's checks (tensors and arrays) and the `(x, context)` pairs `fit` is given."""

import keras
import numpy as np
import tensorflow as tf

__all__ = ["as_context", "checked_context", "data_pair", "embedded_shape", "embedding_config",
           "embedding_from_config"]


def embedded_shape(embedding, context_shape, dtype, name):
    """The shape one context row has after `embedding` (built here on the raw rows),
    `context_shape` without one, or a clear error."""
    if embedding is None:
        return context_shape
    if not isinstance(embedding, keras.layers.Layer):
        raise TypeError(f"{name}: embedding must be a Keras layer (it is trained and saved "
                        f"with the flow). Received: {embedding!r}")
    if context_shape is None:
        raise ValueError(f"{name}: an embedding maps the context, so it needs "
                         "context_shape (the shape of one raw context row).")
    out = embedding(tf.zeros((2,) + tuple(context_shape), dtype))
    if out.shape.rank is None or out.shape.rank < 2 or out.shape[0] != 2:
        raise ValueError(f"{name}: the embedding must map rows (N, *context_shape) to rows "
                         f"(N, ...); it mapped 2 rows to shape {tuple(out.shape)}.")
    return tuple(int(d) for d in out.shape[1:])


def embedding_config(embedding):
    return {} if embedding is None else {
        "embedding": keras.saving.serialize_keras_object(embedding)}


def embedding_from_config(config, custom_objects=None):
    config = dict(config)
    if isinstance(config.get("embedding"), dict):
        config["embedding"] = keras.saving.deserialize_keras_object(
            config["embedding"], custom_objects=custom_objects)
    return config


def checked_context(context, rows, caller, context_shape=None):
    """A context array of `rows` rows (of `context_shape`, when given) as float32, or an
    error naming what is wrong: not numbers, the wrong row shape, another number of rows
    than the examples, NaN or inf (by row). `caller` starts each message."""
    array = np.asarray(context)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{caller}: the context must be numbers, got dtype {array.dtype}; "
                        "one-hot encode labels as floats.")
    if context_shape is not None and tuple(array.shape[1:]) != tuple(context_shape):
        raise ValueError(f"{caller} needs context rows of shape {tuple(context_shape)}, got a "
                         f"context of shape {array.shape}.")
    if array.ndim < 1 or len(array) != rows:
        raise ValueError(f"{caller} got {rows} examples but {len(array) if array.ndim else 0} "
                         f"context rows (a context of shape {array.shape}); give one context "
                         "row per example.")
    array = array.astype("float32")
    finite = np.isfinite(array.reshape(rows, -1)).all(axis=1)
    if not finite.all():
        raise ValueError(f"{caller}: the context holds NaN or inf in row "
                         f"{int(np.argmin(finite))}.")
    return array


def as_context(model, context, x=None):
    """`context` as a tensor of the flow's dtype and shape `(N, *context_shape)`, with
    `N` the rows of `x` when given, or an error naming what is wrong."""
    name = type(model).__name__
    if not model.conditional:
        if context is not None:
            raise ValueError(f"{name} {model.name!r} is not conditional (built without "
                             "context_shape) and takes no context.")
        return None
    if context is None:
        raise ValueError(f"{name} {model.name!r} is conditional (context_shape="
                         f"{model.context_shape}) and needs context=, one row per "
                         "example.")
    c = tf.convert_to_tensor(context)
    if c.dtype == tf.bool or not (c.dtype.is_floating or c.dtype.is_integer):
        raise TypeError(f"{name}: the context must be numbers (floating or integer), got "
                        f"dtype {c.dtype.name}; one-hot encode labels as floats.")
    if c.shape.rank is not None and (c.shape.rank != 1 + len(model.context_shape) or any(
            got is not None and got != want
            for got, want in zip(c.shape[1:], model.context_shape))):
        raise ValueError(f"{name}: the context must have shape (N, "
                         f"{', '.join(map(str, model.context_shape))}) (one row per "
                         f"example); got shape {tuple(c.shape)}.")
    if x is not None:
        rows_x = x.shape[0] if x.shape.rank else None
        if rows_x is not None and c.shape[0] is not None and rows_x != c.shape[0]:
            raise ValueError(f"{name}: the context has {c.shape[0]} rows for {rows_x} "
                             "examples; give one context row per example.")
    c = tf.cast(c, model.flow_dtype)
    if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(c))):
        raise ValueError(f"{name}: the context holds NaN or inf.")
    return c


def data_pair(model, x, y):
    """`(x, context)` from what `fit` and `evaluate` are given: `(x, c)`, a dict
    `{"x": ..., "context": ...}`, or `x` with the context as `y`."""
    if isinstance(x, dict):
        unknown = set(x) - {"x", "context"}
        if unknown or "x" not in x:
            raise ValueError(f"{type(model).__name__}: a dict of data holds 'x' and "
                             f"'context'; got keys {sorted(x)}.")
        return x["x"], x.get("context")
    if isinstance(x, (tuple, list)) and len(x) == 2 and y is None:
        return x[0], x[1]
    return x, y

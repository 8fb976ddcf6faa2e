"""What `Flow.fit` is fed: the data checks, the rows the data-dependent start sees, and the
input pipelines (plain arrays streamed, dequantized batches)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from tfp_nice._validation import check_int
from tfp_nice.data.quantization import check_levels_data
from tfp_nice.models._context import checked_context

__all__ = ["START_ROWS", "TrainingDataError", "TrainingDataTypeError", "can_stream",
           "check_training_data", "dequantized_batches", "epoch_batches", "start_sample"]


class TrainingDataError(ValueError):
    """Data `fit` cannot train on (empty, misshapen, non-finite, batch too large)."""


class TrainingDataTypeError(TypeError):
    """Data of a dtype `fit` cannot train on (integers, half precision)."""


def epoch_batches(x, batch_size, shuffle=True):
    """A repeated `tf.data.Dataset` of the batches of array `x`, epoch after epoch.

    Each epoch is a fresh random permutation of the rows (`shuffle=True`) or
    their order (`shuffle=False`), cut into `ceil(len(x) / batch_size)` batches,
    the last one partial: what Keras's own array input gives, in one pipeline.
    Shuffling permutes a copy of `x` once per epoch (one gather, then slices),
    which is much faster than gathering every batch. tf.data's autotuning is
    off: nothing here is parallel, and with it on, freeing the iterator at the
    end of `fit` stalled for about 0.56 s in about half of the calls.
    """
    data = tf.convert_to_tensor(x)
    n = int(data.shape[0])
    num_batches = -(-n // batch_size)

    def one_epoch(_):
        rows = tf.gather(data, tf.random.shuffle(tf.range(n))) if shuffle else data
        return tf.data.Dataset.range(num_batches).map(
            lambda i: rows[i * batch_size:(i + 1) * batch_size])

    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    options.experimental_external_state_policy = (
        tf.data.experimental.ExternalStatePolicy.IGNORE)
    dataset = tf.data.Dataset.range(1).repeat().flat_map(one_epoch).prefetch(2)
    return dataset.with_options(options)


def dequantized_batches(x: np.ndarray, num_levels: int, batch_size: int, seed: int | None = None,
                        context: ArrayLike | None = None) -> tf.data.Dataset:
    """Batches of discrete data dequantized afresh every epoch: `(x + u) / num_levels`.

    A `tf.data.Dataset` for `fit(dataset, epochs=...)`: each pass (epoch) is a
    new shuffle of the rows of `x` cut into batches (the last one partial), and
    every entry gets new uniform noise `u` in `[0, 1)`, so a flow never sees
    the same real-valued copy of an image twice. `dequantize` draws the noise
    once; fresh noise each epoch is what NICE's bound
    `log P(x) >= E_u[log p((x + u) / L)] - D log L` averages over, and it keeps
    a large flow from fitting one draw of the noise.

    Args:
      x: array of whole numbers in `[0, num_levels - 1]`, rows of the model's
        event shape (flatten images first for a flat model).
      num_levels: number of discrete levels `L` (256 for 8-bit images).
      batch_size: int >= 1.
      seed: int seed of the shuffles and the noise, or `None` for fresh ones.
      context: a conditional flow's context rows (one per row of `x`, any
        numeric array, e.g. one-hot labels), shuffled with their rows and
        never dequantized: the batches are then `(x, context)` pairs, as a
        conditional `Flow.fit` takes them.

    Returns:
      A float32 `tf.data.Dataset` of `[<= batch_size, *x.shape[1:]]` batches,
      or of `(x, context)` batch pairs given a context.

    Raises:
      ValueError: for values that are not whole numbers in range (the message
        gives the first offending index), a bad `num_levels` or `batch_size`,
        or a context whose rows are not those of `x`, or hold NaN or inf.
      TypeError: for a context that is not numbers.
    """
    x = check_levels_data(x, num_levels, "dequantized_batches")
    batch_size = check_int(batch_size, "batch_size")
    noise = (tf.random.Generator.from_non_deterministic_state() if seed is None
             else tf.random.Generator.from_seed(seed))
    levels = float(num_levels)
    if context is None:
        dataset = tf.data.Dataset.from_tensor_slices(x.astype("float32"))
    else:
        dataset = tf.data.Dataset.from_tensor_slices(
            (x.astype("float32"), checked_context(context, len(x), "dequantized_batches")))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if context is None:
        return dataset.map(lambda b: (b + noise.uniform(tf.shape(b))) / levels)
    return dataset.map(lambda b, c: ((b + noise.uniform(tf.shape(b))) / levels, c))


def check_training_data(model, x, batch_size=None, validation_split=0.0):
    """Raises a clear error for arrays `model.fit` cannot train on; returns nothing.

    Checks (for numpy arrays and tensors; a `tf.data.Dataset` is the caller's
    to check): not empty, floating (not integer, not half precision),
    examples of the model's event shape, every value finite (the error names
    the first bad row), values in the first step's `input_range` (a logit step's `[0, 1]`), and
    `batch_size` no larger than the examples left after `validation_split`. Raises
    `TrainingDataError` (a `ValueError`) or `TrainingDataTypeError` (a `TypeError`).
    """
    if isinstance(x, tf.data.Dataset) or x is None:
        return
    array = np.asarray(x)
    flow = tf.as_dtype(model.flow_dtype).name
    if array.ndim == 0 or len(array) == 0:
        raise TrainingDataError(f"fit got no training examples (data of shape {array.shape}).")
    if array.dtype.name in ("float16", "bfloat16"):
        raise TrainingDataTypeError(
            f"fit does not take {array.dtype.name} data: half precision loses the "
            f"dequantization noise; pass {flow}. The flow takes {flow} under every dtype "
            f"policy (this model's is {model.dtype_policy.name!r}); a mixed-precision "
            "policy makes only the coupling networks compute in half precision.")
    if not np.issubdtype(array.dtype, np.floating):
        raise TrainingDataTypeError(f"fit needs floating data, got dtype {array.dtype}; "
                                    "dequantize integer data first (tfp_nice.data.dequantize).")
    if tuple(array.shape[1:]) != tuple(model.event_shape):
        raise TrainingDataError(f"fit needs examples of shape {tuple(model.event_shape)}, got "
                                f"data of shape {array.shape}.")
    finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise TrainingDataError(f"fit data hold NaN or inf in row {row}; remove or fill it "
                                "before training.")
    steps = getattr(model, "steps", None)
    bounds = steps[0].input_range if steps else None
    if bounds is not None:
        low, high = bounds
        flat = array.reshape(len(array), -1)
        inside = ((flat >= low) & (flat <= high)).all(axis=1)
        if not inside.all():
            row = int(np.argmin(inside))
            raise TrainingDataError(
                f"the first step, {steps[0].name!r}, needs data in [{low:g}, {high:g}] (for "
                f"a logit step: dequantized as (x + u) / levels); row {row} holds values "
                f"from {flat[row].min():g} to {flat[row].max():g}.")
    n_fit = len(array) - int(len(array) * (validation_split or 0.0))
    if batch_size is not None and batch_size > n_fit:
        raise TrainingDataError(f"batch_size {batch_size} is larger than the {n_fit} "
                                "training examples.")


START_ROWS = 4096  # examples the data-dependent start is computed from, at most


def start_sample(x, seed=0, validation_split=0.0, max_rows=START_ROWS, pairs=False):
    """The examples the data-dependent start (ActNorm, the rescaling) is computed from.

    For an array: up to `max_rows` rows drawn at random without replacement
    (seeded by `seed`) from the training rows, those `fit` keeps after
    `validation_split` (all of them when fewer), so that data sorted by class
    start from every class, not the first. For a `tf.data.Dataset` (of batches,
    or of `(x, ...)` tuples): its first batches, up to `max_rows` rows: a
    dataset orders itself, so shuffle it (`tn.dequantized_batches` does).

    With `pairs=True` (a conditional flow), `x` is a pair `(x, context)` of
    arrays or a dataset of `(x, context)` batches, and the result is the pair
    of the same rows.
    """
    if pairs:
        return _start_pairs(x, seed, validation_split, max_rows)
    if isinstance(x, tf.data.Dataset):
        parts, rows = [], 0
        for element in x:
            batch = element[0] if isinstance(element, (tuple, list)) else element
            parts.append(batch)
            rows += int(batch.shape[0])
            if rows >= max_rows:
                break
        if not parts:
            raise TrainingDataError("fit got an empty dataset: no examples to start from.")
        return tf.concat(parts, axis=0)[:max_rows]
    if isinstance(x, (tuple, list)):
        x = x[0]
    n = len(x) - int(len(x) * (validation_split or 0.0))
    if n <= max_rows:
        return x[:n]
    rows = np.sort(np.random.default_rng(seed % 2**64).choice(n, size=max_rows, replace=False))
    return tf.gather(x, rows) if isinstance(x, tf.Tensor) else np.asarray(x)[rows]


def _start_pairs(data, seed, validation_split, max_rows):
    if isinstance(data, tf.data.Dataset):
        xs, cs, rows = [], [], 0
        for element in data:
            if isinstance(element, dict):
                element = (element.get("x"), element.get("context"))
            if not isinstance(element, (tuple, list)) or len(element) < 2 \
                    or element[1] is None:
                raise TrainingDataError("a conditional flow trains on a dataset of (x, "
                                        "context) batches; this one gives no context.")
            xs.append(element[0])
            cs.append(element[1])
            rows += int(element[0].shape[0])
            if rows >= max_rows:
                break
        if not xs:
            raise TrainingDataError("fit got an empty dataset: no examples to start from.")
        return tf.concat(xs, axis=0)[:max_rows], tf.concat(cs, axis=0)[:max_rows]
    x, context = data
    n = len(x) - int(len(x) * (validation_split or 0.0))
    if n <= max_rows:
        return x[:n], context[:n]
    rows = np.sort(np.random.default_rng(seed % 2**64).choice(n, size=max_rows, replace=False))
    take = lambda a: tf.gather(a, rows) if isinstance(a, tf.Tensor) else np.asarray(a)[rows]  # noqa: E731
    return take(x), take(context)


def can_stream(model, x, y, args, kwargs):
    """Whether `fit` may feed array `x` through `epoch_batches` (plain cases only).

    Keras builds a new input pipeline twice per epoch for arrays, which costs
    as much as the training steps of a small model. One repeated pipeline
    serves the same batches; anything beyond a plain array (labels, weights,
    validation_split, steps_per_epoch, shuffle="batch", positional arguments,
    a distribution strategy) keeps Keras's own path.
    """
    plain = {"epochs", "verbose", "validation_data", "shuffle", "initial_epoch",
             "validation_steps", "validation_batch_size", "validation_freq"}
    return (isinstance(x, (np.ndarray, tf.Tensor)) and y is None and not args
            and set(kwargs) <= plain and kwargs.get("shuffle", True) in (True, False)
            and not tf.distribute.has_strategy()
            and model.distribute_strategy.num_replicas_in_sync == 1)

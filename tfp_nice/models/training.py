"""How `NICE.fit` is fed and guarded: the data checks, the input pipeline, the NaN stop."""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Iterator

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from tfp_nice import _private_api
from tfp_nice._validation import check_int
from tfp_nice.data.quantization import check_levels_data
from tfp_nice.models._context import checked_context

__all__ = ["AveragedEarlyStopping", "StopOnNonFiniteLoss", "TrainingDataError",
           "averaged_weights", "can_stream",
           "check_training_data", "dequantized_batches", "epoch_batches", "start_sample"]


class TrainingDataError(ValueError):
    """Data `fit` cannot train on (empty, misshapen, non-finite, batch too large)."""


class TrainingDataTypeError(TypeError):
    """Data of a dtype `fit` cannot train on (integers, half precision)."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training after an epoch whose loss is NaN or inf, saying what to try.

    It looks at the epoch's logs only: a per-batch check would make Keras copy
    the loss to the host after every step (`TerminateOnNaN` does that).
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            warnings.warn(
                f"{type(self.model).__name__}: the loss became {float(loss)} in epoch "
                f"{epoch + 1}; training stopped. "
                "Check the data, lower the learning rate, or bound the log-scales.",
                RuntimeWarning, stacklevel=2)


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


@contextlib.contextmanager
def averaged_weights(model: keras.Model) -> Iterator[None]:
    """Inside the block, the model holds the weights `fit` would leave if it ended now.

    A Keras optimizer built with `use_ema=True` keeps a moving average of the
    trainable weights and writes it into the model only when `fit` returns;
    during training (a callback scoring held-out data after each epoch) the
    model holds the raw weights. This puts the averages in for the block and
    the raw weights back after it, so training goes on undisturbed:

        >>> import keras, numpy as np, tfp_nice as tn
        >>> model = tn.NICE((2,), num_couplings=2, hidden_units=(8,))
        >>> model.compile(keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9))
        >>> _ = model.fit(np.random.default_rng(0).normal(size=(64, 2)).astype("float32"),
        ...               epochs=2, batch_size=16, verbose=0)
        >>> raw = model.trainable_variables[0].numpy()
        >>> with tn.averaged_weights(model):
        ...     averaged = model.trainable_variables[0].numpy()
        >>> bool(np.array_equal(model.trainable_variables[0].numpy(), raw))
        True

    (After that `fit` returned, `raw` equals `averaged`: `fit` left the
    averages in. After a further training step inside `fit`, it would not.)
    With an optimizer that keeps no averages, or one that has not taken a
    step, the block sees the model's weights as they are.

    Args:
      model: a compiled Keras model.

    Raises:
      ValueError: if the model has no optimizer (not compiled).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(f"averaged_weights needs a compiled model; {model.name!r} has no "
                         "optimizer. Call model.compile(optimizer) first.")
    variables = list(model.trainable_variables)
    if (not getattr(optimizer, "use_ema", False) or not optimizer.built
            or not _private_api.has_moving_averages(optimizer)
            or int(optimizer.iterations.numpy()) == 0):
        yield model
        return
    raw = [v.numpy() for v in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield model
    finally:
        for variable, value in zip(variables, raw):
            variable.assign(value)


class AveragedEarlyStopping(keras.callbacks.Callback):
    """Early stopping on the weights `fit` leaves: an EMA optimizer's averages.

    Keras's `EarlyStopping` judges the raw weights, and its
    `restore_best_weights` would, at the end of training, overwrite the
    averages that `fit` has just written into the model (`use_ema=True`) with
    raw ones. This callback scores the model inside `averaged_weights` on
    `x_val` after every epoch, adds the figure to the logs as
    `val_averaged_nll`, stops after `patience` epochs without a better one, and
    at the end of training leaves the weights of the best epoch in the model.
    With an optimizer that keeps no averages it is early stopping on the raw
    weights with the best ones restored.

    Example (`x_val` held out of the training data, never the test data):

        >>> import keras, numpy as np, tfp_nice as tn
        >>> rng = np.random.default_rng(0)
        >>> x, x_val = rng.normal(size=(64, 2)), rng.normal(size=(32, 2))
        >>> model = tn.NICE((2,), num_couplings=2, hidden_units=(8,))
        >>> model.compile(keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9))
        >>> stop = tn.AveragedEarlyStopping(x_val.astype("float32"), patience=3)
        >>> history = model.fit(x.astype("float32"), epochs=500, batch_size=16,
        ...                     callbacks=[stop], verbose=0).history
        >>> len(history["val_averaged_nll"]) == stop.best_epoch + 1 + 3
        True

    Args:
      x_val: validation examples (an array of the model's event shape, or a
        `tf.data.Dataset` of batches).
      patience: epochs without a lower validation NLL before training stops
        (an int >= 0).
      batch_size: batch size for scoring an array `x_val`.

    Attributes:
      best: the lowest validation NLL (nats per example) seen so far.
      best_epoch: the 0-based epoch it was seen at (`None` before the first).
      stopped_epoch: the 0-based epoch training was stopped at (0 if it ran out of
        epochs first).
    """

    def __init__(self, x_val: Any, patience: int, batch_size: int = 256) -> None:
        super().__init__()
        self.x_val = x_val
        self.patience = check_int(patience, "patience", minimum=0)
        self.batch_size = check_int(batch_size, "batch_size")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        try:
            check = getattr(self.model, "check_training_data", None)
            if check is not None:  # a conditional flow's checks its (x, context) pairs
                check(self.x_val)
            else:
                check_training_data(self.model, self.x_val)
        except (TrainingDataError, TrainingDataTypeError) as error:
            raise type(error)(f"AveragedEarlyStopping's x_val: {error}") from None
        self.best, self.stopped_epoch = math.inf, 0
        self.best_epoch: int | None = None
        self._best_weights, self._wait = None, 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        with averaged_weights(self.model):
            nll = self.model.evaluate(self.x_val, batch_size=self.batch_size, verbose=0,
                                      return_dict=True)["nll"]
            if nll < self.best:
                self.best, self.best_epoch, self._wait = nll, epoch, 0
                self._best_weights = self.model.get_weights()
            else:
                self._wait += 1
        if logs is not None:
            logs["val_averaged_nll"] = nll
        if self._wait >= max(self.patience, 1):  # patience 0: the first epoch not better
            self.model.stop_training = True
            self.stopped_epoch = epoch

    # fit wrote the last averages in just before
    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


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

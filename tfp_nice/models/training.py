"""How `Flow.fit` is guarded and judged: the NaN stop, the averaged weights and early
stopping on them. The data checks and pipelines are in `training_data` (their names are
importable from here too)."""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Iterator

import keras

from tfp_nice import _private_api
from tfp_nice._validation import check_int
from tfp_nice.models.training_data import (  # noqa: F401 - the names importable from here
    START_ROWS,
    TrainingDataError,
    TrainingDataTypeError,
    can_stream,
    check_training_data,
    dequantized_batches,
    epoch_batches,
    start_sample,
)

__all__ = ["AveragedEarlyStopping", "StopOnNonFiniteLoss", "TrainingDataError",
           "averaged_weights", "can_stream",
           "check_training_data", "dequantized_batches", "epoch_batches", "start_sample"]


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
        `tf.data.Dataset` of batches); for a conditional flow the pair
        `(x_val, c_val)` of examples and their context rows (for a posterior
        flow, `(theta_val, x_val)`), or a dataset of `(x, c)` batches.
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

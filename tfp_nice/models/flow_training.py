"""The training side of a `Flow`: the data-dependent start and Keras's `fit`, `evaluate`,
loss and metrics, for arrays, pairs with a context and datasets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import tensorflow as tf

from tfp_nice import _private_api
from tfp_nice._types import TensorLike
from tfp_nice.data.quantization import bits_per_dim
from tfp_nice.models._context import checked_context, data_pair
from tfp_nice.models.training import (
    StopOnNonFiniteLoss,
    can_stream,
    check_training_data,
    epoch_batches,
    start_sample,
)

if TYPE_CHECKING:
    from tfp_nice.steps import FlowStep

__all__ = ["FlowTraining"]


class FlowTraining(keras.Model):
    """What a `Flow` is as a Keras model it trains (a base of `Flow`; see there): the
    data-dependent start, `fit`, `evaluate`, `compile`, the loss and the metrics."""

    # what the mixin reads of the Flow it is mixed into (set in Flow.__init__, or by the
    # density mixin)
    if TYPE_CHECKING:
        steps: list[FlowStep]
        seed: int
        data_initialized: keras.Variable
        event_shape: tuple[int, ...]
        num_dims: int
        num_levels: int | None
        context_shape: tuple[int, ...] | None
        @property
        def conditional(self) -> bool: ...
        _nll_metric: keras.metrics.Mean
        _bpd_metric: keras.metrics.Mean

        def _as_input(self, x: Any, what: str = "x") -> tf.Tensor: ...
        def _as_context(self, context: Any, x: Any = None) -> tf.Tensor | None: ...
        def _embed(self, c: tf.Tensor | None) -> tf.Tensor | None: ...
        def log_prob(self, x: Any, context: Any = None) -> tf.Tensor: ...

    @property
    def needs_data_init(self) -> bool:
        """Whether `fit` will start a step from data first (a step needs it, not done yet)."""
        wants = any(step.needs_data for step in self.steps)
        return wants and int(keras.ops.convert_to_numpy(self.data_initialized)) == 0

    def initialize_from_data(self, x: TensorLike, context: TensorLike | None = None) -> None:
        """Sets the data-dependent parameters from a batch `x`, in `f`'s order.

        A loop of `adapt` over the steps: each step sets its start from its
        input `h` (an ActNorm to zero mean and unit variance, the rescaling's
        `"data"` start to the prior's spread) and maps `h` on.
        `fit` calls this once, while `data_initialized` is 0, on a random
        sample of the training data: up to 4096 rows drawn with `seed` from an
        array (less the `validation_split`), so that data sorted by class start
        from all classes; the first 4096 rows of a dataset (shuffle it). The
        flag is saved with the model, so a reloaded model is not reset. A
        conditional flow's start takes the context of the same rows.
        """
        h = self._as_input(x)
        if h.shape.rank != len(self.event_shape) + 1 or len(h) < 2:
            raise ValueError("initialize_from_data needs a batch of at least 2 examples of "
                             f"shape {self.event_shape}; got shape {tuple(h.shape)}.")
        c = self._embed(self._as_context(context, h))
        for step in self.steps:
            h = step.adapt(h, c)
        self.data_initialized.assign(1)

    # --- Keras ----------------------------------------------------------------------------

    def check_training_data(self, x: Any, batch_size: int | None = None,
                            validation_split: float = 0.0) -> None:
        """Raises a clear error for arrays `fit` cannot train on (see `models.training`);
        a conditional flow's `x` is a pair `(x, context)` or a dict of the two."""
        if self.conditional and not isinstance(x, tf.data.Dataset) and x is not None:
            x, context = self._pair(x, None)
            check_training_data(self, x, batch_size, validation_split)
            self._check_context_array(x, context)
            return
        check_training_data(self, x, batch_size, validation_split)

    def _pair(self, x, y):
        return data_pair(self, x, y)

    def _check_context_array(self, x, context):
        if context is None:
            self._as_context(None)  # the error: a context is needed
        if isinstance(context, tf.data.Dataset):
            return
        checked_context(context, len(x), "fit", self.context_shape)

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, *args: Any,
            **kwargs: Any) -> keras.callbacks.History:
        """Keras's `fit` after checks of the data and the data-dependent start if due.

        Arrays are checked first (`check_training_data`). Training stops with a
        warning naming the epoch if its loss is NaN or inf (add
        `keras.callbacks.TerminateOnNaN()` to stop at the very batch). A
        conditional flow takes `fit(x, context)`, `fit((x, context))`, a dict
        `{"x": x, "context": context}` or a dataset of `(x, context)` batches.
        """
        split = kwargs.get("validation_split", 0.0)
        data = x  # what the checks and the data start see: x, or the (x, context) pair
        if self.conditional and x is not None and not isinstance(x, tf.data.Dataset):
            data = self._pair(x, y)
            x, y = {"x": data[0], "context": data[1]}, None
        self.check_training_data(data, batch_size, split)
        if self.needs_data_init and data is not None:
            start = start_sample(data, seed=self.seed, validation_split=split,
                                 pairs=self.conditional)
            self.initialize_from_data(*(start if self.conditional else (start,)))
        callbacks = list(kwargs.pop("callbacks", None) or [])
        callbacks.append(StopOnNonFiniteLoss())
        if can_stream(self, x, y, args, kwargs):
            batch_size = batch_size or 32
            kwargs["steps_per_epoch"] = -(-len(x) // batch_size)
            x = epoch_batches(x, batch_size, kwargs.pop("shuffle", True))
            batch_size, kwargs["shuffle"] = None, False  # the pipeline shuffles itself
        elif isinstance(x, tf.data.Dataset):
            # Keras ignores `shuffle` for a dataset and warns on its default `True` every
            # call; a dataset orders itself (`tn.dequantized_batches` reshuffles each epoch).
            kwargs.setdefault("shuffle", False)
        self._build_optimizer()
        return super().fit(x, y, batch_size, *args, callbacks=callbacks, **kwargs)

    def _build_optimizer(self):
        # Without a distribution strategy Keras builds the optimizer inside the first trace
        # of its train function; creating variables there makes tf.function trace the whole
        # step twice. Built here (as Keras does under a strategy), `fit` traces once.
        if (self.optimizer is not None and not self.optimizer.built
                and _private_api.all_layers_built(self)):
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def build(self, input_shape: Any) -> None:
        if isinstance(input_shape, dict):
            input_shape = input_shape["x"]
        shape = tuple(input_shape)[1:]
        if len(shape) != len(self.event_shape) or any(
            s is not None and s != e for s, e in zip(shape, self.event_shape)
        ):
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (batch, *{self.event_shape}). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.built = True

    def call(self, inputs: Any) -> Any:
        if isinstance(inputs, dict):
            x, context = self._pair(inputs, None)
            return self.log_prob(x, context=context)
        return self.log_prob(inputs)

    def _conditional_data(self, data):
        # Keras unpacks a batch (x, c) as x and y; a conditional flow's y is its context.
        if not self.conditional:
            return data
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict) or y is None:
            return data
        return ({"x": x, "context": y}, None, weight)

    def train_step(self, data: Any) -> Any:
        return super().train_step(self._conditional_data(data))

    def test_step(self, data: Any) -> Any:
        return super().test_step(self._conditional_data(data))

    def predict_step(self, data: Any) -> Any:
        return super().predict_step(self._conditional_data(data))

    def evaluate(self, x: TensorLike = None, y: TensorLike = None, *args, **kwargs) -> Any:
        """Keras's `evaluate`; a conditional flow takes the pairs as `fit` does."""
        if self.conditional and not isinstance(x, tf.data.Dataset) and x is not None:
            x, context = self._pair(x, y)
            self._check_context_array(x, context)
            x, y = {"x": x, "context": context}, None
        return super().evaluate(x, y, *args, **kwargs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        if isinstance(input_shape, dict):
            input_shape = input_shape["x"]
        return tuple(input_shape)[:1]

    def compile(self, optimizer: Any = "adam", loss: Any = None, **kwargs) -> None:
        """Configures training; the loss is the negative log-likelihood, so none is taken."""
        if loss is not None:
            raise ValueError(
                f"{type(self).__name__} trains by maximum likelihood and takes no loss in "
                f"compile(). Received: loss={loss!r}"
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        # Keras skips compiling on load when compile() is overridden; ours only
        # refuses a loss, so the saved configuration can be replayed as it is.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                     sample_weight: Any = None, training: bool = True) -> tf.Tensor:
        nll = -y_pred
        if sample_weight is not None:
            nll = nll * tf.cast(tf.reshape(sample_weight, tf.shape(nll)), nll.dtype)
        # Keras sums the replicas' losses under tf.distribute: scale like its losses do.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        loss = tf.reduce_mean(nll) / tf.cast(replicas, nll.dtype)
        for extra in self.losses:
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype) / replicas
        return loss

    def compute_metrics(self, x: Any, y: Any, y_pred: Any,
                        sample_weight: Any = None) -> dict[str, Any]:
        nll = -y_pred
        self._nll_metric.update_state(nll, sample_weight=sample_weight)
        self._bpd_metric.update_state(
            bits_per_dim(nll, self.num_dims, self.num_levels), sample_weight=sample_weight
        )
        logs = super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3 reduces the logs across workers with reduce(MEAN, axis=0), which
            # fails on scalars (TF issue 72388); rank-1 logs reduce back to scalars.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs


"""Steps that scale each entry or each channel: Glow's ActNorm and NICE's rescaling."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice._types import TensorLike
from tfp_nice._validation import check_choice, check_flag
from tfp_nice.bijectors import ActNorm, Rescaling
from tfp_nice.steps.base import FlowStep, check_batch, spread

__all__ = ["ActNormStep", "RescalingStep", "StandardizeStep"]


class _ScalingStep(FlowStep):
    """What both share: one parameter per entry, or per channel of an `(h, w, c)` event."""

    def __init__(self, event_shape: Sequence[int], per_channel: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(event_shape, **kwargs)
        self.per_channel = check_flag(per_channel, "per_channel")
        if self.per_channel and len(self.event_shape) != 3:
            raise ValueError(f"{self.name}: per_channel needs an (h, w, c) event. Received: "
                             f"event_shape={self.event_shape}")
        self.parameter_shape = self.event_shape[-1:] if self.per_channel else self.event_shape

    def _spread_and_axes(self, h):
        """The batch's spread per parameter, and the axes it is taken over."""
        axes = (0, 1, 2) if self.per_channel else (0,)
        return spread(h, axes), list(axes)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "per_channel": self.per_channel}


@keras.saving.register_keras_serializable(package="tfp_nice")
class ActNormStep(_ScalingStep):
    """Glow's ActNorm: `y = (x + b) * exp(s)`, started from data to zero mean, unit variance.

    One `(s, b)` per entry of the event, or with `per_channel=True` one per
    channel of an `(h, w, c)` event (Glow's; its log-det is then
    `h * w * sum(s)`), started from the batch's mean and spread over the batch
    and the pixels.
    """

    INITS = ("data", "identity")

    def __init__(self, event_shape: Sequence[int], per_channel: bool = False,
                 init: str = "data", **kwargs: Any) -> None:
        """Builds the step.

        Args:
          event_shape: shape of one input.
          per_channel: one scale and shift per channel of an `(h, w, c)` event.
          init: `"data"` (Glow's start: `adapt` sets zero mean and unit variance
            from the first batch) or `"identity"` (no data-dependent start: `s = b
            = 0` until trained, for flows that see no data, such as variational
            surrogates).
          **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`).

        Raises:
          ValueError: for `per_channel` with an event that is not `(h, w, c)`, or
            an unknown `init`.
        """
        super().__init__(event_shape, per_channel, **kwargs)
        self.init = check_choice(init, self.INITS, "init")
        self.log_scale = self._flow_weight("log_scale", self.parameter_shape, "zeros")
        self.shift = self._flow_weight("shift", self.parameter_shape, "zeros")
        self.built = True

    @property
    def needs_data(self) -> bool:
        return self.init == "data"

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.init != "data":  # files written before `init` existed read as "data"
            config["init"] = self.init
        return config

    def bijector(self, context: TensorLike | None = None) -> tfp.bijectors.Bijector:
        return ActNorm(self.log_scale, self.shift, name=self.name)

    def adapt(self, h: TensorLike, context: TensorLike | None = None) -> tf.Tensor:
        h = check_batch(h, self.event_shape, self.name)
        std, axes = self._spread_and_axes(h)
        self.shift.assign(-tf.reduce_mean(h, axis=axes))
        self.log_scale.assign(-tf.math.log(std))
        return self.bijector().forward(h)


@keras.saving.register_keras_serializable(package="tfp_nice")
class StandardizeStep(ActNormStep):
    """A fixed standardisation, `y = (x - mean) / std` per entry: ActNorm's map set once by
    the data-dependent start to the batch's mean and standard deviation, then not trained.

    Unlike ActNorm's start, the spread has no additive guard, so that entries on any scale
    (a parameter of spread 1e-6) are standardised exactly; an entry constant over the batch
    keeps a scale of 1. Pass `trainable=True` to train it after the start (ActNorm then).
    """

    def __init__(self, event_shape: Sequence[int], per_channel: bool = False,
                 **kwargs: Any) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(event_shape, per_channel, **kwargs)

    def adapt(self, h: TensorLike, context: TensorLike | None = None) -> tf.Tensor:
        h = check_batch(h, self.event_shape, self.name)
        axes = [0, 1, 2] if self.per_channel else [0]
        std = tf.math.reduce_std(h, axis=axes)
        std = tf.where(std > 0, std, tf.ones_like(std))
        self.shift.assign(-tf.reduce_mean(h, axis=axes))
        self.log_scale.assign(-tf.math.log(std))
        return self.bijector().forward(h)


@keras.saving.register_keras_serializable(package="tfp_nice")
class RescalingStep(_ScalingStep):
    """NICE's diagonal rescaling `h = exp(s) * h'`, the last step of `f`.

    `init="zeros"` is NICE's start (the identity); `init="data"` lets `adapt`
    set `s = log(target_std / std(h'))`, so that the latent has the prior's
    spread (`target_std`, a float or one per parameter). With
    `per_channel=True`, one scale per channel of an `(h, w, c)` event (log-det
    `h * w * sum(s)`), for the steps of a multi-scale image flow.
    """

    INITS = ("data", "zeros")

    def __init__(self, event_shape: Sequence[int], init: str = "zeros",
                 target_std: float | ArrayLike = 1.0, per_channel: bool = False,
                 **kwargs: Any) -> None:
        """Builds the step.

        Args:
          event_shape: shape of one input.
          init: `"zeros"` (the identity) or `"data"` (the latent's spread set
            to `target_std` by `adapt`).
          target_std: a float, or one per entry (per channel with
            `per_channel`).
          per_channel: one scale per channel of an `(h, w, c)` event.
          **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`).

        Raises:
          ValueError: for an unknown `init`, a `target_std` that does not
            broadcast, or `per_channel` with an event that is not `(h, w, c)`.
        """
        super().__init__(event_shape, per_channel, **kwargs)
        self.init = check_choice(init, self.INITS, "rescaling_init")
        try:
            self.target_std = np.broadcast_to(np.asarray(target_std, np.float64),
                                              self.parameter_shape).copy()
        except ValueError:
            raise ValueError(f"{self.name}: target_std must be a float or have shape "
                             f"{self.parameter_shape}. Received: shape "
                             f"{np.shape(target_std)}") from None
        self.log_scale = self._flow_weight("log_scale", self.parameter_shape, "zeros")
        self.built = True

    @property
    def needs_data(self) -> bool:
        return self.init == "data"

    def bijector(self, context: TensorLike | None = None) -> tfp.bijectors.Bijector:
        return Rescaling(self.log_scale, name=self.name)

    def adapt(self, h: TensorLike, context: TensorLike | None = None) -> tf.Tensor:
        if self.init == "data":
            h = check_batch(h, self.event_shape, self.name)
            target = tf.constant(self.target_std, h.dtype)
            self.log_scale.assign(tf.math.log(target / self._spread_and_axes(h)[0]))
        return self.bijector().forward(h)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "init": self.init,
                "target_std": self.target_std.tolist()}

"""RealNVP's logit preprocessing of data in [0, 1], as a step."""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice._types import TensorLike
from tfp_nice.steps.base import FlowStep

tfb = tfp.bijectors

__all__ = ['LogitStep', 'check_logit_alpha']


def check_logit_alpha(alpha):
    """`None`, or a number in `[0, 0.5)` as a float (the `logit_alpha` option)."""
    if alpha is None:
        return None
    try:
        number = float(alpha)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(alpha, bool) or not 0.0 <= number < 0.5:
        raise ValueError(f"logit_alpha must be None or a number in [0, 0.5). Received: "
                         f"logit_alpha={alpha!r}")
    return number


@keras.saving.register_keras_serializable(package="tfp_nice")
class LogitStep(FlowStep):
    """The logit preprocessing of RealNVP (Dinh et al. 2016, section 4.1), the first step of `f`.

    `h = logit(alpha + (1 - 2 alpha) x)` for data `x` in `[0, 1]` (dequantized
    images): it spreads the values piled up at 0 and 1 over the real line,
    where couplings model them better. Its log-det,
    `sum(log(1 - 2 alpha) - log(p) - log(1 - p))` with `p = alpha + (1 - 2 alpha) x`,
    is part of the flow's, so `log_prob` and bits/dim stay in data space,
    comparable with models without it. It has no weights. Outside
    `(-alpha / (1 - 2 alpha), 1 + alpha / (1 - 2 alpha))` the density is zero
    and, as for TFP's sigmoid-based distributions, `log_prob` is NaN. `fit`
    refuses arrays with values outside `[0, 1]`, and `adapt` a start sample
    with such values (a dataset, when the model starts from data).
    """

    constant_log_det = False  # it depends on x
    affine = False
    input_range = (0.0, 1.0)

    def __init__(self, event_shape: Sequence[int], alpha: float = 0.05,
                 **kwargs: Any) -> None:
        super().__init__(event_shape, **kwargs)
        if alpha is None:
            raise ValueError("LogitStep needs a number in [0, 0.5) for alpha. Received: "
                             "alpha=None")
        self.alpha = check_logit_alpha(alpha)
        self.built = True

    def bijector(self, context: TensorLike | None = None) -> tfp.bijectors.Bijector:
        # Chain applies right to left: squeeze [0, 1] into [alpha, 1 - alpha], then logit.
        dtype = self.variable_dtype  # the flow's dtype, under every policy
        return tfb.Chain([tfb.Invert(tfb.Sigmoid()),
                          tfb.Shift(tf.constant(self.alpha, dtype)),
                          tfb.Scale(tf.constant(1.0 - 2.0 * self.alpha, dtype))],
                         name=self.name)

    def adapt(self, h: TensorLike, context: TensorLike | None = None) -> tf.Tensor:
        h = tf.convert_to_tensor(h)
        low, high = float(tf.reduce_min(h)), float(tf.reduce_max(h))
        if not (low >= 0.0 and high <= 1.0):
            raise ValueError(f"logit_alpha needs data in [0, 1] (dequantized as (x + u) / "
                             f"levels); the data-dependent start's sample holds values from "
                             f"{low:g} to {high:g}.")
        return self.bijector().forward(h)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}

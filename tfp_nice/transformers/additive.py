"""The additive transformer: NICE's coupling map, `y = x + m`."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfp_nice._types import TensorLike
from tfp_nice.transformers.base import Transformer

__all__ = ["Additive"]


@keras.saving.register_keras_serializable(package="tfp_nice")
class Additive(Transformer):
    """`y = x + p`, one raw parameter per entry (the shift); log-det 0.

    NICE's additive coupling (arXiv 1410.8516, section 3.2) is a coupling of
    this transformer. Volume preserving (`constant_log_det`), affine in `x`.
    """

    params_per_entry = 1
    constant_log_det = True
    affine = True

    @property
    def name(self) -> str:
        return "additive"

    def forward(self, x: TensorLike, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return x + params[..., 0], tf.zeros_like(x)

    def inverse(self, y: TensorLike, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return y - params[..., 0], tf.zeros_like(y)

    def apply_parts(self, x: tf.Tensor, parts: tuple[tf.Tensor, ...],
                    inverse: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        if not self._maps_are(Additive):
            return super().apply_parts(x, parts, inverse)
        (shift,) = parts
        return (x - shift if inverse else x + shift), tf.zeros_like(x)

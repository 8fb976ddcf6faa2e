"""The affine transformer: RealNVP's coupling map, `y = x exp(s) + t`."""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from tfp_nice._types import TensorLike
from tfp_nice.transformers.base import Transformer

__all__ = ["LOG_SCALE_LIMIT", "SCALES", "Affine", "clip_log_scale"]

SCALES = ("exp", "bounded", "sigmoid")


# |log-scale| is clipped to this per dtype, in every map that scales (Rescaling,
# ActNorm, the affine transformer): exp(40) = 2.4e17 keeps x * exp(s) finite in float32
# for |x| < 1e21, and the log-det (which uses the same clipped values) exact.
LOG_SCALE_LIMIT = {tf.float16: 8.0, tf.bfloat16: 40.0, tf.float32: 40.0, tf.float64: 300.0}


def clip_log_scale(log_scale: tf.Tensor) -> tf.Tensor:
    """Clips a log-scale tensor to `+-LOG_SCALE_LIMIT[dtype]`."""
    limit = LOG_SCALE_LIMIT.get(log_scale.dtype, 40.0)
    return tf.clip_by_value(log_scale, -limit, limit)


@keras.saving.register_keras_serializable(package="tfp_nice")
class Affine(Transformer):
    """`y = x * exp(s) + t`, two raw parameters per entry: `t`, then the raw log-scale.

    The log-scale `s` is made from the raw value `r` by `scale`:

    * `"exp"` (the default): `s = r`, used as it is (the default coupling
      networks already bound it);
    * `"bounded"`: `s = bound * tanh(r / bound)`, within `+-bound`, close to
      `r` for small values (`AffineCoupling(log_scale_bound=...)`);
    * `"sigmoid"`: Glow's `s = log(sigmoid(r + 2))`, a scale in `(0, 1)`.

    Then `s` is clipped to `+-40` in float32 (`+-300` in float64). The
    log-det of the forward map is `s` per entry (`-s` for the inverse). Zero
    raw values give the identity except under `"sigmoid"` (`sigmoid(2)`).
    """

    params_per_entry = 2
    affine = True

    def __init__(self, scale: str = "exp", bound: float | None = None) -> None:
        """Args:
          scale: `"exp"`, `"bounded"` or `"sigmoid"` (see above).
          bound: the bound of `"bounded"` (a finite float > 0; needed there and
            only there).

        Raises:
          ValueError: for another `scale`, or a `bound` missing, not positive,
            or given with another scale.
        """
        if scale not in SCALES:
            raise ValueError(f"Affine: scale must be one of {SCALES}. Received: "
                             f"scale={scale!r}")
        if scale == "bounded":
            if not (isinstance(bound, (int, float)) and not isinstance(bound, bool)
                    and math.isfinite(bound) and bound > 0):
                raise ValueError("Affine: scale='bounded' needs a finite bound > 0. "
                                 f"Received: bound={bound!r}")
            bound = float(bound)
        elif bound is not None:
            raise ValueError(f"Affine: bound shapes scale='bounded'; this one is {scale!r}. "
                             f"Received: bound={bound!r}")
        self.scale = scale
        self.bound = bound

    @property
    def name(self) -> str:
        return "affine"

    def log_scale(self, raw: tf.Tensor) -> tf.Tensor:
        """The log-scale `s` for raw values `r` (the map `scale` names, then the clip)."""
        if self.scale == "bounded":
            bound = tf.cast(self.bound, raw.dtype)
            raw = bound * tf.tanh(raw / bound)
        elif self.scale == "sigmoid":
            raw = tf.math.log_sigmoid(raw + 2.0)
        return clip_log_scale(raw)

    def forward(self, x: TensorLike, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return self._map(x, params[..., 0], params[..., 1], False)

    def inverse(self, y: TensorLike, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return self._map(y, params[..., 0], params[..., 1], True)

    def apply_parts(self, x: tf.Tensor, parts: tuple[tf.Tensor, ...],
                    inverse: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        if not self._maps_are(Affine):
            return super().apply_parts(x, parts, inverse)
        shift, raw = parts
        return self._map(x, shift, raw, inverse)

    def _map(self, x, shift, raw, inverse):
        s = self.log_scale(raw)
        if inverse:
            return (x - shift) * tf.exp(-s), -s
        return x * tf.exp(s) + shift, s

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"scale": self.scale}
        if self.bound is not None:
            config["bound"] = self.bound
        return config

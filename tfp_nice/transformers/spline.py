"""The rational-quadratic spline transformer of Neural Spline Flows (Durkan et al. 2019)."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfp_nice._types import TensorLike
from tfp_nice.transformers.base import Transformer

__all__ = ["DEFAULT_BINS", "DEFAULT_TAIL_BOUND", "Spline", "check_spline_options",
           "rational_quadratic_spline", "spline_parameter_count"]

DEFAULT_BINS = 8
DEFAULT_TAIL_BOUND = 3.0


def check_spline_options(num_bins, tail_bound, min_bin_width=1e-3, min_bin_height=1e-3,
                         min_slope=1e-3):
    """`(num_bins, tail_bound)` as int and float, or a `ValueError` naming the bad one (the
    minima checked against `num_bins` too)."""
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) \
            or num_bins < 2:
        raise ValueError(f"num_bins must be an int >= 2, got {num_bins!r}.")
    if not (isinstance(tail_bound, (int, float, np.number)) and math.isfinite(tail_bound)
            and tail_bound > 0):
        raise ValueError(f"tail_bound must be a finite number > 0, got {tail_bound!r}.")
    for label, value in (("min_bin_width", min_bin_width), ("min_bin_height", min_bin_height)):
        if not 0 <= float(value) < 1.0 / num_bins:
            raise ValueError(f"{label} must lie in [0, 1 / num_bins) = [0, "
                             f"{1.0 / num_bins:g}), got {value!r}.")
    if not 0 <= float(min_slope) < 1:
        raise ValueError(f"min_slope must lie in [0, 1), got {min_slope!r}.")
    return int(num_bins), float(tail_bound)


def spline_parameter_count(num_bins: int) -> int:
    """The raw parameters the network returns per transformed entry: `3 * num_bins - 1`
    (`num_bins` widths, `num_bins` heights, `num_bins - 1` interior knot slopes)."""
    return 3 * int(num_bins) - 1


def rational_quadratic_spline(t, widths, heights, slopes, bound, inverse=False):
    """The monotone rational-quadratic spline of Durkan et al. (2019) on `[-bound, bound]`,
    the identity outside, elementwise: returns `(g(t), log g'(t))`, or with `inverse=True`
    `(g^{-1}(t), log g'(g^{-1}(t)))` (the forward log-derivative at the result).

    `widths` and `heights` (`[..., K]`, each summing to `2 bound`) and the interior knot
    slopes (`[..., K - 1]`) broadcast against `t[..., None]`. The map is TFP's
    `tfb.RationalQuadraticSpline` (its equations, tested against it), computed in one
    pass for the value and its log-derivative: the bin is found by counting the knots
    below `t` and its parameters picked with a one-hot mask (no search, no gather), and
    the last knot is exactly `bound`. Values outside the interval are clipped into it
    before the arithmetic, so the branch `tf.where` discards stays finite and so do the
    gradients there. The inverse clamps the quadratic's discriminant at 0 (float32
    rounding can make it slightly negative at a knot, where TFP's own inverse gives NaN)
    and keeps the root in its bin.
    """
    dtype = t.dtype
    k = widths.shape[-1]
    bound = tf.cast(bound, dtype)

    def knots(sizes):  # [..., K + 1]: -B, ..., B (the last exactly B)
        inner = -bound + tf.cumsum(sizes[..., :-1], axis=-1)
        low = -bound * tf.ones_like(sizes[..., :1])
        return tf.concat([low, inner, -low], axis=-1)

    kx, ky = knots(widths), knots(heights)
    ones = tf.ones_like(slopes[..., :1])
    kd = tf.concat([ones, slopes, ones], axis=-1)
    inside = (t > -bound) & (t < bound)
    tc = tf.clip_by_value(t, -bound, bound)[..., None]
    # bin b: the number of interior knots at or below t (of x for forward, of y for inverse)
    edges = ky if inverse else kx
    b = tf.reduce_sum(tf.cast(tc >= edges[..., 1:k], tf.int32), axis=-1)
    pick = tf.one_hot(b, k, dtype=dtype)

    def at(v, shift=0):
        return tf.reduce_sum(pick * v[..., shift:shift + k], axis=-1)

    x_k, y_k, d_k, d_k1 = at(kx), at(ky), at(kd), at(kd, 1)
    w_k = at(kx, 1) - x_k
    h_k = at(ky, 1) - y_k
    s_k = h_k / w_k
    tc = tc[..., 0]
    slope_sum = d_k1 + d_k - 2.0 * s_k
    if inverse:
        rel = tc - y_k
        a = h_k * (s_k - d_k) + rel * slope_sum
        bq = h_k * d_k - rel * slope_sum
        c = -s_k * rel
        root = tf.sqrt(tf.maximum(bq * bq - 4.0 * a * c, tf.zeros([], dtype)))
        denominator = -bq - root  # < 0 in the bin (bq > 0 there)
        safe = tf.where(tf.equal(denominator, 0.0), -tf.ones([], dtype), denominator)
        xi = tf.clip_by_value(2.0 * c / safe, 0.0, 1.0)
        value = x_k + xi * w_k
    else:
        xi = (tc - x_k) / w_k
    between = xi * (1.0 - xi)
    denominator = s_k + slope_sum * between
    if not inverse:
        value = y_k + h_k * (s_k * xi * xi + d_k * between) / denominator
    log_derivative = (2.0 * tf.math.log(s_k)
                      + tf.math.log(d_k1 * xi * xi + 2.0 * s_k * between
                                    + d_k * (1.0 - xi) * (1.0 - xi))
                      - 2.0 * tf.math.log(denominator))
    return (tf.where(inside, value, t),
            tf.where(inside, log_derivative, tf.zeros([], dtype)))


@keras.saving.register_keras_serializable(package="tfp_nice")
class Spline(Transformer):
    """A monotone rational-quadratic spline per entry on `[-B, B]`, the identity outside.

    `3 K - 1` raw parameters per entry (`K = num_bins`, `B = tail_bound`): the
    bin widths, then the bin heights, then the `K - 1` interior knot slopes.
    They become

        widths  = 2 B * (min_bin_width + (1 - K * min_bin_width) * softmax(raw_w))
        heights = 2 B * (min_bin_height + (1 - K * min_bin_height) * softmax(raw_h))
        slopes  = min_slope + softplus(raw_d + log(expm1(1 - min_slope)))

    so that zero raw values give equal bins and unit slopes: the identity. The
    map is TFP's `tfb.RationalQuadraticSpline` (linear tails, slope 1 at both
    ends), computed in one pass for the value and its log-derivative by
    `rational_quadratic_spline`, whose inverse stays finite where rounding
    makes the quadratic's discriminant negative.
    """

    def __init__(self, num_bins: int = DEFAULT_BINS, tail_bound: float = DEFAULT_TAIL_BOUND,
                 min_bin_width: float = 1e-3, min_bin_height: float = 1e-3,
                 min_slope: float = 1e-3) -> None:
        """Args:
          num_bins: the bins `K` of each spline, an int >= 2.
          tail_bound: `B` > 0: the spline acts on `[-B, B]`, the identity outside.
          min_bin_width: each bin's smallest width, as a fraction of `2 B`
            (`num_bins * min_bin_width < 1`); likewise `min_bin_height`.
          min_slope: the smallest slope at an interior knot, in `[0, 1)`.

        Raises:
          ValueError: for a bad `num_bins`, `tail_bound` or minimum.
        """
        self.num_bins, self.tail_bound = check_spline_options(
            num_bins, tail_bound, min_bin_width, min_bin_height, min_slope)
        self.min_bin_width = float(min_bin_width)
        self.min_bin_height = float(min_bin_height)
        self.min_slope = float(min_slope)

    @property
    def name(self) -> str:
        return "spline"

    @property
    def params_per_entry(self) -> int:  # type: ignore[override]
        return spline_parameter_count(self.num_bins)

    def parameters(self, raw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """`(widths, heights, slopes)`, `[..., K]`, `[..., K]` and `[..., K - 1]`, for raw
        parameters `[..., 3 K - 1]` (the map above)."""
        k, dtype = self.num_bins, raw.dtype
        width = tf.cast(2.0 * self.tail_bound, dtype)

        def bins(values, minimum):
            return width * (minimum + (1.0 - k * minimum) * tf.nn.softmax(values, axis=-1))

        shift = math.log(math.expm1(1.0 - self.min_slope))  # raw 0 -> slope 1
        widths = bins(raw[..., :k], self.min_bin_width)
        heights = bins(raw[..., k:2 * k], self.min_bin_height)
        slopes = self.min_slope + tf.nn.softplus(raw[..., 2 * k:] + shift)
        return widths, heights, slopes

    def forward(self, x: TensorLike, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return rational_quadratic_spline(x, *self.parameters(params), self.tail_bound)

    def inverse(self, y: TensorLike, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, log_derivative = rational_quadratic_spline(y, *self.parameters(params),
                                                      self.tail_bound, inverse=True)
        return x, -log_derivative

    def get_config(self) -> dict[str, Any]:
        return {"num_bins": self.num_bins, "tail_bound": self.tail_bound,
                "min_bin_width": self.min_bin_width, "min_bin_height": self.min_bin_height,
                "min_slope": self.min_slope}

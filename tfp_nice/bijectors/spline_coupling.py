"""The rational-quadratic spline coupling of Neural Spline Flows (Durkan et al. 2019)."""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice._types import TensorLike
from tfp_nice.bijectors._coupling import MaskedCoupling
from tfp_nice.transformers.spline import (  # noqa: F401 - the spline's helpers, here as before
    DEFAULT_BINS,
    DEFAULT_TAIL_BOUND,
    Spline,
    check_spline_options,
    rational_quadratic_spline,
    spline_parameter_count,
)

__all__ = ["SplineCoupling", "spline_parameter_count"]


class _RationalQuadraticSpline(tfp.bijectors.RationalQuadraticSpline):
    """TFP's spline with an inverse that stays finite where rounding makes the quadratic's
    discriminant negative (it is `>= 0` in exact arithmetic) or puts the root a rounding
    error outside its bin: the inverse of `rational_quadratic_spline` (the discriminant
    clamped at 0, the bin position to `[0, 1]`). Forward map and log-det are TFP's."""

    def _inverse(self, y):
        bound = -tf.convert_to_tensor(self.range_min, y.dtype)
        return rational_quadratic_spline(y, self.bin_widths, self.bin_heights,
                                         self.knot_slopes, bound, inverse=True)[0]


class SplineCoupling(MaskedCoupling):
    """Monotone rational-quadratic spline coupling (Neural Spline Flows, arXiv 1906.04032).

    The boolean `mask` splits `x` into a conditioning part `x_A = x[mask]` and
    a transformed part `x_B = x[~mask]`. Each entry of `x_B` goes through its
    own monotone spline `g_theta` of `num_bins` rational-quadratic bins on
    `[-tail_bound, tail_bound]`, the identity outside it (linear tails, slope 1
    at both ends), its parameters `theta = spline_params_fn(x_A)`:

        forward:  y_A = x_A,   y_B = g_theta(x_B)        fldj = sum log g_theta'(x_B)
        inverse:  x_A = y_A,   x_B = g_theta^{-1}(y_B)   ildj = -fldj at x

    It is the coupling (`tfp_nice.Coupling`) of the `Spline` transformer.
    The spline is TFP's `tfb.RationalQuadraticSpline`, computed in one pass for
    the value and its log-derivative (`rational_quadratic_spline`: a third of
    TFP's graph, tested equal to it), its inverse safe against the rounding
    that can make the quadratic's discriminant negative; `spline(raw)` gives
    the TFP bijector itself.
    The network returns, per transformed entry, `3 * num_bins - 1` raw values
    (`spline_parameter_count`): the bin widths, then the bin heights, then the
    `num_bins - 1` interior knot slopes. They become

        widths  = 2 B * (min_bin_width + (1 - K * min_bin_width) * softmax(raw_w))
        heights = 2 B * (min_bin_height + (1 - K * min_bin_height) * softmax(raw_h))
        slopes  = min_slope + softplus(raw_d + log(expm1(1 - min_slope)))

    with `B = tail_bound` and `K = num_bins`, so that raw values of zero give
    equal bins and unit slopes: the identity (a zero-initialised network
    starts the coupling at the identity). Like the affine coupling, the layer
    works in either direction of a flow (its `forward` is the data -> latent
    map in `tfp_nice`'s flows).

    `spline_params_fn` sees part A as `[N, n_A]` (batch dimensions flattened),
    or as an image `[N, h, w, c_A]` for a mask that picks channels of an
    `(h, w, c)` event (`part_shapes` says which), and returns one tensor of
    `[N, *shape_B, P]`, or with each entry's `P = 3 K - 1` values side by side
    on the last axis: `[N, n_B * P]` (any part, flat order), or
    `[N, h, w, c_B * P]` for an image part.

    Examples:
        A fresh coupling (raw parameters zero) is the identity; its log-det is 0:

        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> mask = tn.partition_mask("halves", (4,))
        >>> zeros = lambda x_a: np.zeros((x_a.shape[0], 2 * 23), "float32")  # 8 bins: 23 each
        >>> b = tn.SplineCoupling(zeros, mask, num_bins=8, tail_bound=3.0)
        >>> x = np.float32([[0.5, -1.0, 2.0, 4.0]])  # 4.0 lies in the identity tail
        >>> np.allclose(b.forward(x), x), b.forward_log_det_jacobian(x, event_ndims=1).numpy()
        (True, array([0.], dtype=float32))
    """

    def __init__(self, spline_params_fn: Callable[..., Any], mask: ArrayLike,
                 num_bins: int = DEFAULT_BINS, tail_bound: float = DEFAULT_TAIL_BOUND,
                 min_bin_width: float = 1e-3, min_bin_height: float = 1e-3,
                 min_slope: float = 1e-3, validate_args: bool = False,
                 name: str = "spline_coupling", context: TensorLike | None = None) -> None:
        """Builds the bijector.

        Args:
          spline_params_fn: callable or Keras layer as described above.
          mask: boolean (or 0/1) array of the event shape; `True` marks the
            conditioning part.
          num_bins: the bins `K` of each spline, an int >= 2.
          tail_bound: `B` > 0: the spline acts on `[-B, B]`, the identity outside.
          min_bin_width: each bin's smallest width, as a fraction of `2 B`
            (`num_bins * min_bin_width < 1`); likewise `min_bin_height`.
          min_slope: the smallest slope at an interior knot, in `[0, 1)`.
          validate_args: if `True`, calls assert that the spline's parameters
            are finite.
          name: name of the bijector.
          context: `None`, or a tensor `[N, ...]` the network is also given, as
            `spline_params_fn(x_a, context=context)`.

        Raises:
          TypeError: if `spline_params_fn` is not callable.
          ValueError: for a bad mask, `num_bins`, `tail_bound` or minimum.
        """
        parameters = dict(locals())
        transformer = Spline(num_bins, tail_bound, min_bin_width, min_bin_height, min_slope)
        super().__init__(spline_params_fn, "spline_params_fn", mask, transformer,
                         validate_args, parameters, name, context)

    @property
    def spline_params_fn(self) -> Callable[..., Any]:
        return self._fn

    @property
    def num_bins(self) -> int:
        return self._transformer.num_bins

    @property
    def tail_bound(self) -> float:
        return self._transformer.tail_bound

    def spline(self, raw: tf.Tensor) -> tfp.bijectors.Bijector:
        """TFP's spline bijector (elementwise, batch shape `raw.shape[:-1]`) for raw
        parameters `raw` of shape `[..., 3 K - 1]` (its inverse made safe as described)."""
        widths, heights, slopes = self.spline_parameters(raw)
        return _RationalQuadraticSpline(widths, heights, slopes,
                                        range_min=tf.cast(-self.tail_bound, raw.dtype))

    def spline_parameters(self, raw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """`(widths, heights, slopes)` of the splines, `[..., K]`, `[..., K]` and
        `[..., K - 1]`, for raw parameters `[..., 3 K - 1]` (the map above)."""
        if self.validate_args:
            raw = tf.debugging.assert_all_finite(
                raw, f"{self.name}: the spline parameters are not finite")
        return self._transformer.parameters(raw)

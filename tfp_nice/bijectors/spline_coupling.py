"""The rational-quadratic spline coupling of Neural Spline Flows (Durkan et al. 2019)."""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.bijectors._coupling import LogDetWithResult, MaskedCoupling, sum_per_example

__all__ = ["SplineCoupling", "spline_parameter_count"]

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


def spline_parameter_count(num_bins):
    """The raw parameters the network returns per transformed entry: `3 * num_bins - 1`
    (`num_bins` widths, `num_bins` heights, `num_bins - 1` interior knot slopes)."""
    return 3 * int(num_bins) - 1


class _RationalQuadraticSpline(tfp.bijectors.RationalQuadraticSpline):
    """TFP's spline with an inverse that stays finite where rounding makes the quadratic's
    discriminant negative (it is `>= 0` in exact arithmetic) or puts the root a rounding
    error outside its bin: the inverse of `rational_quadratic_spline` (the discriminant
    clamped at 0, the bin position to `[0, 1]`). Forward map and log-det are TFP's."""

    def _inverse(self, y):
        bound = -tf.convert_to_tensor(self.range_min, y.dtype)
        return rational_quadratic_spline(y, self.bin_widths, self.bin_heights,
                                         self.knot_slopes, bound, inverse=True)[0]


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


class SplineCoupling(LogDetWithResult, MaskedCoupling):
    """Monotone rational-quadratic spline coupling (Neural Spline Flows, arXiv 1906.04032).

    The boolean `mask` splits `x` into a conditioning part `x_A = x[mask]` and
    a transformed part `x_B = x[~mask]`. Each entry of `x_B` goes through its
    own monotone spline `g_theta` of `num_bins` rational-quadratic bins on
    `[-tail_bound, tail_bound]`, the identity outside it (linear tails, slope 1
    at both ends), its parameters `theta = spline_params_fn(x_A)`:

        forward:  y_A = x_A,   y_B = g_theta(x_B)        fldj = sum log g_theta'(x_B)
        inverse:  x_A = y_A,   x_B = g_theta^{-1}(y_B)   ildj = -fldj at x

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

    def __init__(self, spline_params_fn, mask, num_bins=DEFAULT_BINS,
                 tail_bound=DEFAULT_TAIL_BOUND, min_bin_width=1e-3, min_bin_height=1e-3,
                 min_slope=1e-3, validate_args=False, name="spline_coupling", context=None):
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
        self._num_bins, self._tail_bound = check_spline_options(
            num_bins, tail_bound, min_bin_width, min_bin_height, min_slope)
        self._min_width, self._min_height = float(min_bin_width), float(min_bin_height)
        self._min_slope = float(min_slope)
        super().__init__(spline_params_fn, "spline_params_fn", mask, validate_args,
                         parameters, name, context)

    @property
    def spline_params_fn(self):
        return self._fn

    @property
    def num_bins(self):
        return self._num_bins

    @property
    def tail_bound(self):
        return self._tail_bound

    def _raw_parameters(self, x_a, x_b):
        """The network's output as `[N, *shape_b, 3 K - 1]`, or an error naming the shape."""
        out = tf.convert_to_tensor(self._call_network(x_a, x_b))
        shape_b, n_b = self._partition.shape_b, self._partition.size_b
        p = spline_parameter_count(self._num_bins)
        if out.dtype != x_b.dtype:
            raise TypeError(f"{self.name}: the spline parameters have dtype {out.dtype.name} "
                            f"for an input of dtype {x_b.dtype.name}; build the network in "
                            f"{x_b.dtype.name}.")
        shape = tuple(out.shape)
        accepted = [(n_b * p,), tuple(shape_b) + (p,)]
        if len(shape_b) > 1:
            accepted.append(tuple(shape_b[:-1]) + (shape_b[-1] * p,))
        if shape[1:] not in accepted:
            forms = " or ".join("[" + ", ".join(str(d) for d in ("batch",) + a) + "]"
                                for a in accepted)
            raise ValueError(f"{self.name}: spline_params_fn must return {forms} ({p} raw "
                             f"values per transformed entry for num_bins={self._num_bins}), "
                             f"got shape {shape}.")
        return tf.reshape(out, (-1,) + tuple(shape_b) + (p,))

    def spline(self, raw):
        """TFP's spline bijector (elementwise, batch shape `raw.shape[:-1]`) for raw
        parameters `raw` of shape `[..., 3 K - 1]` (its inverse made safe as described)."""
        widths, heights, slopes = self.spline_parameters(raw)
        return _RationalQuadraticSpline(widths, heights, slopes,
                                        range_min=tf.cast(-self._tail_bound, raw.dtype))

    def spline_parameters(self, raw):
        """`(widths, heights, slopes)` of the splines, `[..., K]`, `[..., K]` and
        `[..., K - 1]`, for raw parameters `[..., 3 K - 1]` (the map above)."""
        k, dtype = self._num_bins, raw.dtype
        if self.validate_args:
            raw = tf.debugging.assert_all_finite(
                raw, f"{self.name}: the spline parameters are not finite")
        width = tf.cast(2.0 * self._tail_bound, dtype)

        def bins(values, minimum):
            return width * (minimum + (1.0 - k * minimum) * tf.nn.softmax(values, axis=-1))

        shift = math.log(math.expm1(1.0 - self._min_slope))  # raw 0 -> slope 1
        widths = bins(raw[..., :k], self._min_width)
        heights = bins(raw[..., k:2 * k], self._min_height)
        slopes = self._min_slope + tf.nn.softplus(raw[..., 2 * k:] + shift)
        return widths, heights, slopes

    # One network call gives the spline; `forward`/`inverse` hand its log-det to TFP's
    # cache with the result (LogDetWithResult).
    def transform_part(self, x_a, x_b, inverse=False):
        widths, heights, slopes = self.spline_parameters(self._raw_parameters(x_a, x_b))
        y_b, log_det = rational_quadratic_spline(x_b, widths, heights, slopes,
                                                 self._tail_bound, inverse)
        return y_b, sum_per_example(log_det)

    def _forward_log_det_jacobian(self, x):
        return self._map(x, "x", False)[1]

    def _inverse_log_det_jacobian(self, y):
        return -self._map(y, "y", True)[1]

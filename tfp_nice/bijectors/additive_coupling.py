"""NICE's additive coupling layer."""

import tensorflow as tf

from tfp_nice.bijectors import _checks
from tfp_nice.bijectors._coupling import MaskedCoupling


__all__ = ["AdditiveCoupling"]


class AdditiveCoupling(MaskedCoupling):
    """NICE's additive coupling layer (arXiv 1410.8516, section 3.2).

    The boolean `mask` splits an event `x` into a conditioning part
    `x_A = x[mask]` and a transformed part `x_B = x[~mask]`. With the shift
    network `m = shift_fn`:

        forward:  y_A = x_A,   y_B = x_B + m(x_A)     forward_log_det_jacobian = 0
        inverse:  x_A = y_A,   x_B = y_B - m(y_A)     inverse_log_det_jacobian = 0

    The Jacobian is unit triangular, so the layer is volume preserving; its
    log-det is a zero of the batch shape of `x`. The Jacobian *matrix* still
    depends on `x` (its block `dm/dx_A`), so the bijector reports
    `is_constant_jacobian=False`, as TFP means the flag (an affine map): a
    `tfd.TransformedDistribution` over it raises `NotImplementedError` for
    `mean()`, `mode()`, `stddev()` and `covariance()`, as it does for
    `tfb.RealNVP`, instead of returning the pushed-forward base moments. The layer works the same in
    either direction of a flow: NICE uses its `forward` in the data -> latent
    map `f`; inside a `tfd.TransformedDistribution` (latent -> data) it appears
    as `tfb.Invert(AdditiveCoupling(...))` (see `tfp_nice.nice_bijector`).

    `shift_fn` sees part A as a matrix `[N, n_A]`: the batch dimensions of `x`
    flattened into `N`, and the `n_A` entries where the mask is `True` in flat
    (row-major) order. It must return the shift of part B, `[N, n_B]`, in the
    input's dtype.

    Examples:
        With the `"halves"` partition of 4 entries, part A is the first two; the
        shift network here is a plain function of part A:

        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> mask = tn.partition_mask("halves", (4,))
        >>> mask
        array([ True,  True, False, False])
        >>> b = tn.AdditiveCoupling(lambda x_a: 10.0 * x_a, mask)
        >>> x = np.float32([[1.0, 2.0, 3.0, 4.0]])
        >>> b.forward(x).numpy()
        array([[ 1.,  2., 13., 24.]], dtype=float32)
        >>> b.inverse(b.forward(x)).numpy()
        array([[1., 2., 3., 4.]], dtype=float32)
        >>> b.forward_log_det_jacobian(x, event_ndims=1).numpy()
        array([0.], dtype=float32)
    """

    def __init__(self, shift_fn, mask, validate_args=False, name="additive_coupling"):
        """Builds the bijector.

        Args:
          shift_fn: callable or Keras layer `x_A -> m(x_A)` as described above.
            The bijector holds it but creates no variables of its own.
          mask: boolean (or 0/1) array of the event shape; `True` marks the
            conditioning part. `tfp_nice.partition_mask` makes the usual ones.
          validate_args: kept for TFP's interface; there are no run-time checks
            beyond the static ones.
          name: name of the bijector.

        Raises:
          TypeError: if `shift_fn` is not callable.
          ValueError: if the mask is not boolean, is a scalar, or leaves one
            side empty.
        """
        parameters = dict(locals())
        super().__init__(shift_fn, "shift_fn", mask, validate_args, parameters, name)

    @property
    def shift_fn(self):
        """The shift network `m`."""
        return self._fn

    def _shift(self, t, what):
        t_a, t_b, shift, batch_shape = self._condition(t, what)
        shift = tf.convert_to_tensor(shift)
        self._check_part(shift, t, "shift")
        return t_a, t_b, shift, batch_shape

    def _forward(self, x):
        x_a, x_b, shift, batch_shape = self._shift(x, "x")
        return self._partition.merge(x_a, x_b + shift, batch_shape)

    def _inverse(self, y):
        y_a, y_b, shift, batch_shape = self._shift(y, "y")
        return self._partition.merge(y_a, y_b - shift, batch_shape)

    def _zero_log_det(self, t, what):
        _checks.check_floating_input(t, None, self.name)
        self._partition.check(t, self.name, what)
        return tf.zeros(self._partition.batch_shape_tensor(t), dtype=t.dtype)

    def _forward_log_det_jacobian(self, x):
        return self._zero_log_det(x, "x")

    def _inverse_log_det_jacobian(self, y):
        return self._zero_log_det(y, "y")

"""NICE's additive coupling layer."""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.bijectors import _checks
from tfp_nice.bijectors._partition import MaskPartition

tfb = tfp.bijectors

__all__ = ["AdditiveCoupling"]


class AdditiveCoupling(tfb.Bijector):
    """NICE's additive coupling layer (arXiv 1410.8516, section 3.2).

    The boolean `mask` splits an event `x` into a conditioning part
    `x_A = x[mask]` and a transformed part `x_B = x[~mask]`. With the shift
    network `m = shift_fn`:

        forward:  y_A = x_A,   y_B = x_B + m(x_A)     forward_log_det_jacobian = 0
        inverse:  x_A = y_A,   x_B = y_B - m(y_A)     inverse_log_det_jacobian = 0

    The Jacobian is unit triangular, so the layer is volume preserving; its
    log-det is a zero of the batch shape of `x`. The layer works the same in
    either direction of a flow: NICE uses its `forward` in the data -> latent
    map `f`; inside a `tfd.TransformedDistribution` (latent -> data) it appears
    as `tfb.Invert(AdditiveCoupling(...))` (see `tfp_nice.nice_bijector`).

    `shift_fn` sees part A as a matrix `[N, n_A]`: the batch dimensions of `x`
    flattened into `N`, and the `n_A` entries where the mask is `True` in flat
    (row-major) order. It must return the shift of part B, `[N, n_B]`, in the
    input's dtype.
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
        if not callable(shift_fn):
            raise TypeError(
                f"shift_fn must be a callable or a Keras layer, got {type(shift_fn).__name__}."
            )
        with tf.name_scope(name) as name:
            self._shift_fn = shift_fn
            self._partition = MaskPartition(mask)
            super().__init__(
                forward_min_event_ndims=self._partition.event_ndims,
                is_constant_jacobian=True,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @property
    def shift_fn(self):
        """The shift network `m`."""
        return self._shift_fn

    @property
    def mask(self):
        """The mask as a numpy boolean array (`True` = conditioning part)."""
        return self._partition.mask.copy()

    def _shift(self, t, what):
        _checks.check_floating_input(t, None, self.name)
        self._partition.check(t, self.name, what)
        t_a, t_b, batch_shape = self._partition.split(t)
        shift = tf.convert_to_tensor(self._shift_fn(t_a))
        if shift.dtype != t.dtype:
            raise TypeError(
                f"{self.name}: shift_fn returned dtype {shift.dtype.name} for an input "
                f"of dtype {t.dtype.name}; build the network in {t.dtype.name}."
            )
        rank, width = shift.shape.rank, shift.shape[-1] if shift.shape.rank else None
        if rank is not None and (rank != 2 or (width is not None and width != self._partition.size_b)):
            raise ValueError(
                f"{self.name}: shift_fn must return a [batch, {self._partition.size_b}] "
                f"shift for the transformed entries, got shape {tuple(shift.shape)}."
            )
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

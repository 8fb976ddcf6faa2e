"""What every masked coupling layer shares: the network, the mask, the checks."""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.bijectors import _checks, _tracking
from tfp_nice.bijectors._partition import MaskPartition


class MaskedCoupling(tfp.bijectors.Bijector):
    """Base of the coupling layers: splits by `mask`, runs the network on part A."""

    def __init__(self, fn, fn_name, mask, validate_args, parameters, name):
        if not callable(fn):
            raise TypeError(f"{fn_name} must be a callable or a Keras layer, got "
                            f"{type(fn).__name__}.")
        with tf.name_scope(name) as name:
            self._fn = fn
            self._partition = MaskPartition(mask)
            # A Keras network is built for the part it will see, so that its
            # weights exist now and TFP's variable tracking can list them.
            _tracking.build_layer(fn, (None, self._partition.size_a))
            self._keras_variables = _tracking.backing_variables(fn)
            super().__init__(
                forward_min_event_ndims=self._partition.event_ndims,
                # A coupling's Jacobian matrix depends on x (the block dm/dx_A),
                # even where its log-det is constant: not affine, so False.
                is_constant_jacobian=False,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @property
    def mask(self):
        """The mask as a numpy boolean array (`True` = conditioning part)."""
        return self._partition.mask.copy()

    def _condition(self, t, what):
        """Checks `t`, splits it; returns `(t_a, t_b, fn(t_a), batch_shape)`."""
        _checks.check_floating_input(t, None, self.name)
        self._partition.check(t, self.name, what)
        t_a, t_b, batch_shape = self._partition.split(t)
        return t_a, t_b, self._fn(t_a), batch_shape

    def _check_part(self, value, t, label):
        """Raises unless `value` is a `[batch, n_B]` tensor of `t`'s dtype."""
        n_b = self._partition.size_b
        if value.dtype != t.dtype:
            raise TypeError(
                f"{self.name}: the {label} has dtype {value.dtype.name} for an input of dtype "
                f"{t.dtype.name}; build the network in {t.dtype.name}."
            )
        rank = value.shape.rank
        width = value.shape[-1] if rank else None
        if rank is not None and (rank != 2 or (width is not None and width != n_b)):
            raise ValueError(
                f"{self.name}: the {label} must have shape [batch, {n_b}] (one value per "
                f"transformed entry), got {tuple(value.shape)}."
            )

"""NICE's diagonal scaling layer."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.bijectors import _checks, _tracking

tfb = tfp.bijectors

__all__ = ["Rescaling"]


def _is_variable(value):
    return isinstance(value, (tf.Variable, keras.Variable))


def _keep_variable(value, dtype):
    """Returns variables (TF or Keras) as they are, anything else as a Tensor.

    A Keras variable is read at every use (`tf.convert_to_tensor`), so Keras's
    autocast and stateless scopes see it as they see any Keras weight.
    """
    if _is_variable(value):
        return value
    return tf.convert_to_tensor(value, dtype=dtype)


class Rescaling(tfp.bijectors.AutoCompositeTensorBijector):
    """NICE's diagonal scaling layer, log-parameterised.

    With `s = log_scale`:

        forward:  y = x * exp(s)            forward_log_det_jacobian  =  sum(s)
        inverse:  x = y * exp(-s)           inverse_log_det_jacobian  = -sum(s)

    `forward` scales by `exp(s)`, whatever the bijector is used for. In the NICE
    paper (arXiv 1410.8516, eq. 6) the rescaling is the *last* layer of the
    data -> latent map `f`, so that `log p(x) = sum_d log p_H(f_d(x)) + sum_i s_i`.
    Inside a `tfd.TransformedDistribution` (whose bijector maps latent -> data)
    that layer therefore appears inverted; `tfp_nice.nice_bijector` does this.

    `log_scale` has the shape of the event it scales, or of its trailing
    dimensions: `(d,)` for a vector event, `(h, w, c)` for one scale per pixel
    and channel, or `(c,)` for one scale per channel of an `(h, w, c)` image.
    The bijector's `forward_min_event_ndims` is the rank of `log_scale`; applied
    to a larger event, the log-det counts each scaled entry (TFP sums over the
    extra event dimensions), so a per-channel `(c,)` scale on `(h, w, c)` images
    gives `h * w * sum(s)`. The log-det is broadcast to the batch shape of `x`.

    A zero `log_scale` is the identity (NICE's initialisation). The log-scale
    is clipped to `+-40` in float32 (`+-300` in float64) before use, in the map
    and the log-det alike, so the map stays finite for inputs up to about 1e21
    and the log-det stays exact for the values used.

    Examples:
        Scale by 2, 3 and 1; the log-det is `log 2 + log 3 + 0 = log 6`:

        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> b = tn.Rescaling(np.log([2.0, 3.0, 1.0]).astype("float32"))
        >>> x = np.float32([[1.0, 1.0, 1.0], [0.5, -1.0, 4.0]])
        >>> b.forward(x).numpy()
        array([[ 2.,  3.,  1.],
               [ 1., -3.,  4.]], dtype=float32)
        >>> b.forward_log_det_jacobian(x, event_ndims=1).numpy()  # one per example
        array([1.7917595, 1.7917595], dtype=float32)
        >>> np.allclose(b.inverse(b.forward(x)), x)
        True
    """

    def __init__(self, log_scale: tf.Tensor, validate_args: bool = False,
                 name: str = "rescaling") -> None:
        """Builds the bijector.

        Args:
          log_scale: floating Tensor, `tf.Variable` or Keras variable holding
            the log of the scale. Variables are read at every call, and
            gradients reach them. Its static rank is the bijector's
            `forward_min_event_ndims`.
          validate_args: if `True`, calls check at run time that `log_scale`
            is finite.
          name: name of the bijector.

        Raises:
          TypeError: if `log_scale` is not floating.
          ValueError: if the rank of `log_scale` is not known statically.
        """
        parameters = dict(locals(), log_scale=_tracking.trackable(log_scale))
        with tf.name_scope(name) as name:
            dtype = _checks.floating_dtype(log_scale, "Rescaling's log_scale")
            self._log_scale = _keep_variable(log_scale, dtype)
            self._keras_variables = _tracking.backing_variables(log_scale)
            self._scale_dtype = dtype
            shape = tf.TensorShape(self._log_scale.shape)
            rank = shape.rank
            if rank is None:
                raise ValueError(
                    "Rescaling's log_scale must have a static rank, got a tensor "
                    "of unknown rank."
                )
            self._scale_shape = tuple(shape)
            if any(d is None for d in self._scale_shape):
                raise ValueError(
                    "Rescaling's log_scale must have a static shape, "
                    f"got {self._scale_shape}."
                )
            super().__init__(
                forward_min_event_ndims=rank,
                is_constant_jacobian=True,
                validate_args=validate_args,
                # No dtype here: TFP would then convert inputs itself; the
                # checks below name a wrong dtype instead.
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(
            log_scale=tfp.util.ParameterProperties(
                event_ndims=lambda self, x_event_ndims=None: len(self._scale_shape)
            )
        )

    @property
    def log_scale(self) -> Any:
        """The log of the scale: the Tensor or variable it was given.

        For a Keras variable this is the `tf.Variable` behind it (the same
        storage): TFP's variable tracking (`trainable_variables`) sees
        `tf.Variable`s only, and finds a composite bijector's through this.
        """
        return _tracking.trackable(self._log_scale)

    def _clipped_log_scale(self):
        return _checks.clip_log_scale(tf.convert_to_tensor(self._log_scale))

    def _check_input(self, t, what):
        _checks.check_floating_input(t, self._scale_dtype, self.name)
        _checks.check_event_shape(t, self._scale_shape, self.name, what)

    def _forward(self, x):
        self._check_input(x, "x")
        return x * tf.exp(self._clipped_log_scale())

    def _inverse(self, y):
        self._check_input(y, "y")
        return y * tf.exp(-self._clipped_log_scale())

    def _log_det(self, t):
        total = tf.reduce_sum(self._clipped_log_scale())
        rank = len(self._scale_shape)
        shape = tf.shape(t)
        batch_shape = shape[: tf.size(shape) - rank]
        return tf.broadcast_to(total, batch_shape)

    def _forward_log_det_jacobian(self, x):
        self._check_input(x, "x")
        return self._log_det(x)

    def _inverse_log_det_jacobian(self, y):
        self._check_input(y, "y")
        return -self._log_det(y)

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args:
            return []
        # Constants are checked once, at construction; variables at each call.
        if is_init == _is_variable(self._log_scale):
            return []
        log_scale = tf.convert_to_tensor(self._log_scale)
        return [
            tf.debugging.Assert(
                tf.reduce_all(tf.math.is_finite(log_scale)),
                ["Rescaling's log_scale must be finite; got", log_scale],
            )
        ]

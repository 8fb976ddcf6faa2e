"""Glow's activation normalisation: a per-entry (or per-channel) affine map."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.bijectors import _tracking
from tfp_nice.bijectors.rescaling import Rescaling, _keep_variable

__all__ = ["ActNorm"]


class ActNorm(Rescaling):
    """Activation normalisation (Glow, arXiv 1807.03039, section 3.1).

    With `s = log_scale` and `b = shift` of the same shape:

        forward:  y = (x + b) * exp(s)        forward_log_det_jacobian  =  sum(s)
        inverse:  x = y * exp(-s) - b         inverse_log_det_jacobian  = -sum(s)

    counted per scaled entry, exactly like `Rescaling` (which it extends with
    the shift): `(d,)` parameters for vectors, `(c,)` for the channels of
    `(h, w, c)` images. The data-dependent start (zero mean, unit variance of
    `forward` on a first batch: `b = -mean(x)`, `s = -log(std(x))`) is made by
    the model that owns the variables (`tfp_nice.NICE(actnorm=True)`); the
    bijector only computes.

    Examples:
        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> b = tn.ActNorm(log_scale=np.float32([0.0, np.log(2.0)]),
        ...                shift=np.float32([1.0, -1.0]))
        >>> b.forward(np.float32([[1.0, 3.0]])).numpy()  # (x + b) * exp(s)
        array([[2., 4.]], dtype=float32)
        >>> b.forward_log_det_jacobian(np.float32([[1.0, 3.0]]), event_ndims=1).numpy()
        array([0.6931472], dtype=float32)
    """

    def __init__(self, log_scale: tf.Tensor, shift: tf.Tensor, validate_args: bool = False,
                 name: str = "actnorm") -> None:
        """Builds the bijector.

        Raises:
          TypeError: for non-floating parameters.
          ValueError: if `shift` and `log_scale` differ in shape.
        """
        super().__init__(log_scale, validate_args=validate_args, name=name)
        self._shift = _keep_variable(shift, self._scale_dtype)
        self._keras_variables = _tracking.backing_variables(log_scale, shift)
        if tuple(tf.TensorShape(self._shift.shape)) != self._scale_shape:
            raise ValueError(f"ActNorm's shift has shape {tuple(self._shift.shape)} but its "
                             f"log_scale has shape {self._scale_shape}.")
        self._parameters = dict(self._parameters,  # type: ignore[has-type]
                                shift=_tracking.trackable(shift))

    @classmethod
    def _parameter_properties(cls, dtype):
        rank = lambda self, x_event_ndims=None: len(self._scale_shape)  # noqa: E731
        return dict(log_scale=tfp.util.ParameterProperties(event_ndims=rank),
                    shift=tfp.util.ParameterProperties(event_ndims=rank))

    @property
    def shift(self) -> Any:
        """The shift `b`; for a Keras variable, the `tf.Variable` behind it."""
        return _tracking.trackable(self._shift)

    def _forward(self, x):
        return super()._forward(x + tf.convert_to_tensor(self._shift))

    def _inverse(self, y):
        return super()._inverse(y) - tf.convert_to_tensor(self._shift)

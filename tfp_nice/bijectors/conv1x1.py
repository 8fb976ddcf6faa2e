"""Glow's invertible 1x1 convolution: one LU-parameterised map of the channels at every pixel."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.bijectors import _checks
from tfp_nice.bijectors.lu_linear import LULinear

tfb = tfp.bijectors

__all__ = ["InvertibleConv1x1"]


class InvertibleConv1x1(tfp.bijectors.Bijector):
    """`y[i, j] = W x[i, j]` at every pixel of an `(h, w, c)` event (Glow, arXiv 1807.03039, 3.2).

    `W` is a `c x c` matrix held as permuted LU factors, exactly as in
    `LULinear` (`W = lu_reconstruct(L + U + diag(sign * exp(log_diag)), P)`), so

        forward:  y[i, j] = W x[i, j]           fldj =  h * w * sum(log_diag)
        inverse:  x[i, j] = W^{-1} y[i, j]      ildj = -h * w * sum(log_diag)

    and `W` stays invertible whatever the values. It is the convolution with a
    `1 x 1 x c x c` kernel `W^T`: `c^2` weights whatever the image's size, where
    `LULinear` over the flattened image would take `(h w c)^2`. Affine
    (`is_constant_jacobian=True`); the same map in both of `f`'s and `g`'s
    uses, data -> latent in NICE's `f`.

    Examples:
        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> factors = {k: v.astype("float32") if v.dtype.kind == "f" else v
        ...            for k, v in tn.lu_linear_init(3, seed=0).items()}
        >>> b = tn.InvertibleConv1x1(**factors)
        >>> x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
        >>> np.allclose(b.inverse(b.forward(x)), x, atol=1e-5)
        True
        >>> w = b.matrix().numpy()
        >>> np.allclose(b.forward(x)[0, 1, 2], w @ x[0, 1, 2], atol=1e-5)  # W at each pixel
        True
    """

    def __init__(self, lower: tf.Tensor, upper: tf.Tensor, log_diag: tf.Tensor,
                 sign: tf.Tensor, permutation: tf.Tensor | np.ndarray,
                 validate_args: bool = False, name: str = "conv1x1") -> None:
        """Builds the bijector.

        Args:
          lower: `(c, c)`; only its strict lower part is used (the unit diagonal is
            implied).
          upper: `(c, c)`; only its strict upper part is used.
          log_diag: `(c,)`, the log of the magnitude of the upper factor's diagonal.
          sign: `(c,)`, the signs of that diagonal.
          permutation: `(c,)` ints, a permutation of `range(c)`.
          validate_args: kept for TFP's interface.
          name: name of the bijector.

        Raises:
          ValueError: for factors of inconsistent shapes or a bad permutation.
          TypeError: for a non-floating `log_diag`.
        """
        parameters = dict(locals())
        channels = int(tf.TensorShape(log_diag.shape)[0])
        self._pixel_map = LULinear(lower, upper, log_diag, sign, permutation, (channels,),
                                   name=f"{name}_pixels")
        self._channels = channels
        self._keras_variables = self._pixel_map._keras_variables
        with tf.name_scope(name) as name:
            super().__init__(forward_min_event_ndims=3, is_constant_jacobian=True,
                             validate_args=validate_args, parameters=parameters, name=name)

    @property
    def channels(self) -> int:
        return self._channels

    def matrix(self) -> tf.Tensor:
        """`W`, the `c x c` map of each pixel's channels."""
        return self._pixel_map.matrix()

    def lower_upper(self) -> tf.Tensor:
        """The packed LU matrix `tf.linalg.lu_reconstruct` (and `tfb.ScaleMatvecLU`) take."""
        return self._pixel_map.lower_upper()

    def _check(self, t, what):
        _checks.check_floating_input(t, self._pixel_map._dtype_, self.name)
        if t.shape.rank is not None and (t.shape.rank < 3 or t.shape[-1] not in
                                         (None, self._channels)):
            raise ValueError(f"{self.name} expects {what} with an (h, w, {self._channels}) "
                             f"event, got shape {tuple(t.shape)}.")

    def _forward(self, x):
        self._check(x, "x")
        return self._pixel_map._forward(x)

    def _inverse(self, y):
        self._check(y, "y")
        return self._pixel_map._inverse(y)

    def _log_det(self, t, what):
        self._check(t, what)
        shape = tf.shape(t)
        pixels = tf.cast(shape[-3] * shape[-2], self._pixel_map._dtype_)
        total = tf.reduce_sum(tf.convert_to_tensor(self._pixel_map._log_diag,
                                                   self._pixel_map._dtype_))
        return tf.broadcast_to(pixels * total, shape[:-3])

    def _forward_log_det_jacobian(self, x):
        return self._log_det(x, "x")

    def _inverse_log_det_jacobian(self, y):
        return -self._log_det(y, "y")

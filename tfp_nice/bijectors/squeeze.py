"""RealNVP's squeeze: each 2x2 block of pixels becomes one pixel of four times the channels."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice._validation import check_int
from tfp_nice.bijectors import _checks

tfb = tfp.bijectors

__all__ = ["Squeeze", "squeezed_shape"]


def squeezed_shape(event_shape: Sequence[int], factor: int = 2) -> tuple[int, int, int]:
    """`(h // f, w // f, c f^2)` for an `(h, w, c)` event whose sides `f` divides.

    Raises:
      ValueError: for an event that is not `(h, w, c)` or a side `f` does not divide.
    """
    event_shape = tuple(int(d) for d in event_shape)
    if len(event_shape) != 3 or any(d % factor for d in event_shape[:2]):
        raise ValueError(f"A squeeze by {factor} needs an (h, w, c) event with h and w "
                         f"multiples of {factor}. Received: event_shape={event_shape}")
    h, w, c = event_shape
    return (h // factor, w // factor, c * factor * factor)


class Squeeze(tfp.bijectors.Bijector):
    """Space to depth (RealNVP, arXiv 1605.08803, section 3.6): `(h, w, c) -> (h/f, w/f, c f^2)`.

        forward:  y[i, j, (a f + b) c + k] = x[i f + a, j f + b, k]    log-det 0
        inverse:  the same rearrangement undone

    for `0 <= a, b < f`. It only moves entries, so its Jacobian is a
    permutation matrix (`is_constant_jacobian=True`, log-det 0). It changes the
    event shape: `forward_event_shape((h, w, c))` is `(h/f, w/f, c f^2)`. In
    NICE's `f` (data -> latent) it trades space for channels, so that a
    channel split of the result mixes neighbouring pixels.

    Examples:
        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> x = np.arange(8, dtype="float32").reshape(1, 2, 2, 2)  # one 2x2 image, 2 channels
        >>> tn.Squeeze().forward(x).numpy()
        array([[[[0., 1., 2., 3., 4., 5., 6., 7.]]]], dtype=float32)
        >>> tn.Squeeze().forward_event_shape((4, 6, 3))
        TensorShape([2, 3, 12])
    """

    def __init__(self, factor: int = 2, validate_args: bool = False,
                 name: str = "squeeze") -> None:
        """Builds the bijector.

        Args:
          factor: int >= 2, the side of the blocks.
          validate_args: kept for TFP's interface.
          name: name of the bijector.

        Raises:
          ValueError: for a `factor` below 2.
        """
        parameters = dict(locals())
        self._factor = check_int(factor, "factor", minimum=2)
        with tf.name_scope(name) as name:
            super().__init__(forward_min_event_ndims=3, is_constant_jacobian=True,
                             validate_args=validate_args, parameters=parameters, name=name)

    @property
    def factor(self) -> int:
        return self._factor

    def _forward_event_shape(self, input_shape):
        if input_shape.rank is None or any(d is None for d in input_shape[-3:]):
            return input_shape
        return tf.TensorShape(input_shape[:-3].concatenate(
            squeezed_shape(input_shape[-3:], self._factor)))

    def _inverse_event_shape(self, output_shape):
        if output_shape.rank is None or any(d is None for d in output_shape[-3:]):
            return output_shape
        h, w, c = (int(d) for d in output_shape[-3:])
        f = self._factor
        if c % (f * f):
            raise ValueError(f"{self.name}: an output of {c} channels is not a squeeze by "
                             f"{f} (not a multiple of {f * f}).")
        return tf.TensorShape(output_shape[:-3].concatenate((h * f, w * f, c // (f * f))))

    def _forward_event_shape_tensor(self, input_shape):
        f = self._factor
        return tf.concat([input_shape[:-3], input_shape[-3:-1] // f, input_shape[-1:] * f * f],
                         0)

    def _inverse_event_shape_tensor(self, output_shape):
        f = self._factor
        return tf.concat([output_shape[:-3], output_shape[-3:-1] * f,
                          output_shape[-1:] // (f * f)], 0)

    def _check(self, t, what):
        _checks.check_floating_input(t, None, self.name)
        if t.shape.rank is not None and t.shape.rank < 3:
            raise ValueError(f"{self.name} expects {what} with an (h, w, c) event, got shape "
                             f"{tuple(t.shape)}.")

    def _forward(self, x):
        self._check(x, "x")
        if x.shape.rank is not None and None not in x.shape[-3:]:
            squeezed_shape(x.shape[-3:], self._factor)  # names a bad static shape
        f = self._factor
        shape = tf.shape(x)
        batch, (h, w, c) = shape[:-3], tf.unstack(shape[-3:])
        grid = tf.reshape(x, [-1, h // f, f, w // f, f, c])
        grid = tf.transpose(grid, [0, 1, 3, 2, 4, 5])
        return tf.reshape(grid, tf.concat([batch, [h // f, w // f, c * f * f]], 0))

    def _inverse(self, y):
        self._check(y, "y")
        f = self._factor
        shape = tf.shape(y)
        batch, (h, w, c) = shape[:-3], tf.unstack(shape[-3:])
        grid = tf.reshape(y, [-1, h, w, f, f, c // (f * f)])
        grid = tf.transpose(grid, [0, 1, 3, 2, 4, 5])
        return tf.reshape(grid, tf.concat([batch, [h * f, w * f, c // (f * f)]], 0))

    def _zero(self, t):
        shape = tf.shape(t)
        return tf.zeros(shape[:-3], t.dtype)

    def _forward_log_det_jacobian(self, x):
        return self._zero(x)

    def _inverse_log_det_jacobian(self, y):
        return self._zero(y)

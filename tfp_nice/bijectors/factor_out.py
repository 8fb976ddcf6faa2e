"""RealNVP's factor-out: half the channels leave for the latent, the rest go on through a flow."""

from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.bijectors import _checks
from tfp_nice.bijectors._coupling import LogDetWithResult

tfb = tfp.bijectors

__all__ = ["FactorOut"]


class FactorOut(LogDetWithResult, tfp.bijectors.Bijector):
    """A multi-scale exit (RealNVP, arXiv 1605.08803, section 3.6): `(h, w, c) -> (D,)`.

    The first `keep` channels go on through `inner` (a bijector over
    `(h, w, keep)` events, itself of any shape out); the other `c - keep`
    channels leave for the latent as they are. With `x_go = x[..., :keep]`
    and `x_out = x[..., keep:]`:

        forward:  y = concat(flatten(x_out), flatten(inner.forward(x_go)))
                  fldj(x) = inner.fldj(x_go)
        inverse:  x_out, z = the first h w (c - keep) entries of y and the rest;
                  x = concat(inverse(inner)(z) as (h, w, keep), x_out as (h, w, c - keep))
                  on the channel axis;  ildj(y) = inner.ildj(z)

    so the output is flat, `D = h w c` entries, and the latent of a
    multi-scale flow holds every scale's exits, finest first. `forward` is
    data -> latent in NICE's `f`. Its Jacobian is `inner`'s and an identity,
    up to the order of entries: affine exactly when `inner` is
    (`is_constant_jacobian`). The result and the log-det are computed in one
    pass and cached together, so a `log_prob` runs each network of `inner`
    once.

    Examples:
        Two of four channels leave; the other two are scaled by 2:

        >>> import numpy as np
        >>> import tensorflow_probability as tfp
        >>> import tfp_nice as tn
        >>> b = tn.FactorOut(tfp.bijectors.Scale(2.0), (1, 1, 4), keep=2,
        ...                  inner_output_shape=(1, 1, 2))
        >>> x = np.float32([[[[1.0, 2.0, 3.0, 4.0]]]])
        >>> b.forward(x).numpy()  # the exits, then what went on
        array([[3., 4., 2., 4.]], dtype=float32)
        >>> b.forward_log_det_jacobian(x, event_ndims=3).numpy()  # 2 log 2
        array([1.3862944], dtype=float32)
    """

    def __init__(self, inner: tfp.bijectors.Bijector, event_shape: Sequence[int], keep: int,
                 inner_output_shape: Sequence[int], validate_args: bool = False,
                 name: str = "factor_out") -> None:
        """Builds the bijector.

        Args:
          inner: the bijector the kept channels go through, over `(h, w, keep)`
            events (its `forward_min_event_ndims` at most 3).
          event_shape: `(h, w, c)`, the shape of one input.
          keep: the number of channels that go on, `1 <= keep < c`.
          inner_output_shape: the shape of one output of `inner`, of
            `h w keep` entries.
          validate_args: kept for TFP's interface.
          name: name of the bijector.

        Raises:
          ValueError: for an event that is not `(h, w, c)`, a `keep` outside
            `[1, c)`, or an `inner_output_shape` of another size.
        """
        parameters = dict(locals())
        self._event_shape = tuple(int(d) for d in event_shape)
        if len(self._event_shape) != 3 or min(self._event_shape) < 1:
            raise ValueError(f"FactorOut needs an (h, w, c) event_shape. Received: "
                             f"event_shape={tuple(event_shape)}")
        h, w, c = self._event_shape
        if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep < c:
            raise ValueError(f"FactorOut's keep must be an int in [1, {c}) for {c} channels. "
                             f"Received: keep={keep!r}")
        self._keep = keep
        self._inner_output_shape = tuple(int(d) for d in inner_output_shape)
        if math.prod(self._inner_output_shape) != h * w * keep:
            raise ValueError(f"FactorOut: inner_output_shape {self._inner_output_shape} does "
                             f"not hold the {h * w * keep} entries of the kept channels "
                             f"({h}, {w}, {keep}).")
        self._inner = inner
        self._num_out = h * w * (c - keep)
        self._size = h * w * c
        with tf.name_scope(name) as name:
            super().__init__(forward_min_event_ndims=3, inverse_min_event_ndims=1,
                             is_constant_jacobian=inner.is_constant_jacobian,
                             validate_args=validate_args, parameters=parameters, name=name)

    @property
    def inner(self) -> tfp.bijectors.Bijector:
        """The bijector the kept channels go through."""
        return self._inner

    @property
    def keep(self) -> int:
        return self._keep

    def _forward_event_shape(self, input_shape):
        return input_shape[:-3].concatenate([self._size])

    def _inverse_event_shape(self, output_shape):
        return output_shape[:-1].concatenate(self._event_shape)

    def _forward_event_shape_tensor(self, input_shape):
        return tf.concat([input_shape[:-3], [self._size]], 0)

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.concat([output_shape[:-1], self._event_shape], 0)

    def _map(self, t, what, inverse):
        """`(t mapped, forward log-det per batch entry)` in one pass."""
        _checks.check_floating_input(t, None, self.name)
        if inverse:
            _checks.check_event_shape(t, (self._size,), self.name, what)
            shape = tf.shape(t)
            batch_shape = shape[:-1]
            flat = tf.reshape(t, [-1, self._size])
            out, z = flat[:, :self._num_out], flat[:, self._num_out:]
            z = tf.reshape(z, (-1,) + self._inner_output_shape)
            x_go = self._inner.inverse(z)
            log_det = -self._inner.inverse_log_det_jacobian(
                z, event_ndims=len(self._inner_output_shape))
            h, w, c = self._event_shape
            x = tf.concat([x_go, tf.reshape(out, (-1, h, w, c - self._keep))], axis=-1)
            return (tf.reshape(x, tf.concat([batch_shape, self._event_shape], 0)),
                    tf.reshape(log_det, batch_shape))
        _checks.check_event_shape(t, self._event_shape, self.name, what)
        shape = tf.shape(t)
        batch_shape = shape[:-3]
        grid = tf.reshape(t, (-1,) + self._event_shape)
        x_go, out = grid[..., :self._keep], grid[..., self._keep:]
        z = self._inner.forward(x_go)
        log_det = self._inner.forward_log_det_jacobian(x_go, event_ndims=3)
        y = tf.concat([tf.reshape(out, [-1, self._num_out]),
                       tf.reshape(z, [-1, self._size - self._num_out])], axis=-1)
        return (tf.reshape(y, tf.concat([batch_shape, [self._size]], 0)),
                tf.reshape(log_det, batch_shape))

    def _forward_log_det_jacobian(self, x):
        return self._map(x, "x", False)[1]

    def _inverse_log_det_jacobian(self, y):
        return -self._map(y, "y", True)[1]

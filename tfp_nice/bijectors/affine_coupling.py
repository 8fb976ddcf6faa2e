"""RealNVP's affine coupling layer (Dinh et al. 2016), NICE's coupling with a scale."""

import tensorflow as tf
from tensorflow_probability.python.internal import cache_util

from tfp_nice.bijectors import _checks
from tfp_nice.bijectors._coupling import MaskedCoupling


__all__ = ["AffineCoupling"]


class AffineCoupling(MaskedCoupling):
    """Affine coupling layer (RealNVP, arXiv 1605.08803, eq. 7).

    The boolean `mask` splits `x` into a conditioning part `x_A = x[mask]` and
    a transformed part `x_B = x[~mask]`. With `(t, s) = shift_and_log_scale_fn(x_A)`:

        forward:  y_A = x_A,   y_B = x_B * exp(s) + t        fldj =  sum(s)
        inverse:  x_A = y_A,   x_B = (y_B - t) * exp(-s)     ildj = -sum(s)

    `forward` is the data -> latent direction when used in NICE's `f`, and the
    latent -> data direction inside `tfd.TransformedDistribution`, like
    `AdditiveCoupling`. With `s = 0` it is NICE's additive coupling.

    The log-scale must stay bounded for training to be stable.
    `tfp_nice.CouplingMLP(..., affine=True)` returns `s = scale * tanh(raw)`
    with a learned per-entry `scale`; `log_scale_bound=b` bounds any network
    further as `s = b * tanh(s_raw / b)` (close to the identity for small
    values; applied before the log-det, so the log-det stays exact). Whatever
    the network, `s` is finally clipped to `+-40` in float32 (`+-300` in
    float64), like `Rescaling`'s.

    `shift_and_log_scale_fn` sees part A as `[N, n_A]` (batch dimensions
    flattened) and returns either a pair `(t, s)` of `[N, n_B]` tensors or one
    `[N, 2 n_B]` tensor holding `t` then `s`.

    Examples:
        Part B is scaled by `exp(s)` and shifted by `t`, both functions of part A;
        the log-det is `sum(s)`:

        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> mask = tn.partition_mask("halves", (4,))
        >>> b = tn.AffineCoupling(lambda x_a: (x_a, 0.5 * x_a), mask)  # t = x_A, s = x_A / 2
        >>> x = np.float32([[1.0, 2.0, 1.0, 1.0]])
        >>> np.round(b.forward(x).numpy(), 4)  # x_B * exp(s) + t
        array([[1.    , 2.    , 2.6487, 4.7183]], dtype=float32)
        >>> b.forward_log_det_jacobian(x, event_ndims=1).numpy()  # 0.5 + 1.0
        array([1.5], dtype=float32)
    """

    def __init__(self, shift_and_log_scale_fn, mask, log_scale_bound=None,
                 validate_args=False, name="affine_coupling"):
        """Builds the bijector.

        Args:
          shift_and_log_scale_fn: callable or Keras layer as described above.
          mask: boolean (or 0/1) array of the event shape; `True` marks the
            conditioning part.
          log_scale_bound: `None`, or a float > 0 bounding `|s|` softly.
          validate_args: if `True`, calls assert that `s` is finite.
          name: name of the bijector.

        Raises:
          TypeError: if `shift_and_log_scale_fn` is not callable.
          ValueError: for a bad mask or a non-positive `log_scale_bound`.
        """
        parameters = dict(locals())
        if log_scale_bound is not None and not float(log_scale_bound) > 0:
            raise ValueError(f"log_scale_bound must be > 0, got {log_scale_bound!r}.")
        self._bound = None if log_scale_bound is None else float(log_scale_bound)
        super().__init__(shift_and_log_scale_fn, "shift_and_log_scale_fn", mask,
                         validate_args, parameters, name)

    @property
    def shift_and_log_scale_fn(self):
        return self._fn

    def _shift_and_log_scale(self, t, what):
        t_a, t_b, out, batch_shape = self._condition(t, what)
        n_b = self._partition.size_b
        if isinstance(out, (tuple, list)):
            if len(out) != 2:
                raise ValueError(f"{self.name}: shift_and_log_scale_fn must return (shift, "
                                 f"log_scale), got {len(out)} values.")
            shift, log_scale = (tf.convert_to_tensor(o) for o in out)
        else:
            out = tf.convert_to_tensor(out)
            if out.shape.rank != 2 or (out.shape[-1] is not None and out.shape[-1] != 2 * n_b):
                raise ValueError(f"{self.name}: shift_and_log_scale_fn must return a "
                                 f"[batch, {2 * n_b}] tensor or a pair, got shape "
                                 f"{tuple(out.shape)}.")
            shift, log_scale = out[:, :n_b], out[:, n_b:]
        self._check_part(shift, t, "shift")
        self._check_part(log_scale, t, "log_scale")
        if self._bound is not None:
            bound = tf.cast(self._bound, log_scale.dtype)
            log_scale = bound * tf.tanh(log_scale / bound)
        log_scale = _checks.clip_log_scale(log_scale)
        if self.validate_args:
            log_scale = tf.debugging.assert_all_finite(
                log_scale, f"{self.name}: the log-scale is not finite")
        return t_a, t_b, shift, log_scale, batch_shape

    # The network gives the shift and the log-scale in one call, so `forward` and `inverse`
    # hand TFP's cache the log-det along with their result (as `tfb.FFJORD` does): a
    # `log_prob` or a `sample` with its log-det runs each coupling's network once, not
    # twice. Without it, an affine flow cost twice an additive one to train.
    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse")

    def _augmented_forward(self, x):
        x_a, x_b, shift, log_scale, batch_shape = self._shift_and_log_scale(x, "x")
        y = self._partition.merge(x_a, x_b * tf.exp(log_scale) + shift, batch_shape)
        fldj = tf.reshape(tf.reduce_sum(log_scale, axis=-1), batch_shape)
        return y, {"fldj": fldj, "ildj": -fldj}

    def _augmented_inverse(self, y):
        y_a, y_b, shift, log_scale, batch_shape = self._shift_and_log_scale(y, "y")
        x = self._partition.merge(y_a, (y_b - shift) * tf.exp(-log_scale), batch_shape)
        ildj = -tf.reshape(tf.reduce_sum(log_scale, axis=-1), batch_shape)
        return x, {"ildj": ildj, "fldj": -ildj}

    def _forward(self, x):
        return self._augmented_forward(x)[0]

    def _inverse(self, y):
        return self._augmented_inverse(y)[0]

    def _forward_log_det_jacobian(self, x):
        *_, log_scale, batch_shape = self._shift_and_log_scale(x, "x")
        return tf.reshape(tf.reduce_sum(log_scale, axis=-1), batch_shape)

    def _inverse_log_det_jacobian(self, y):
        *_, log_scale, batch_shape = self._shift_and_log_scale(y, "y")
        return -tf.reshape(tf.reduce_sum(log_scale, axis=-1), batch_shape)

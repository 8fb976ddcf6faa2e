"""An invertible linear map of the flattened event, LU-parameterised (Glow's 1x1 conv)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.bijectors import _checks, _tracking
from tfp_nice.bijectors.rescaling import _is_variable

tfb = tfp.bijectors

__all__ = ["LULinear", "lu_linear_init"]


def lu_linear_init(size: int, seed: int) -> dict[str, np.ndarray]:
    """Glow's start: the LU factors of a random rotation, as numpy arrays.

    Returns a dict with `lower`, `upper` (strict parts), `log_diag`, `sign`
    and `permutation` for `LULinear`.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(size, size)))
    lu, perm = tf.linalg.lu(tf.constant(q, tf.float64))
    lu = lu.numpy()
    diag = np.diag(lu)
    return {"lower": np.tril(lu, -1), "upper": np.triu(lu, 1),
            "log_diag": np.log(np.abs(diag)), "sign": np.sign(diag),
            "permutation": perm.numpy().astype(np.int32)}


class LULinear(tfp.bijectors.Bijector):
    """`y = W x` on the flattened event, with `W` held as permuted LU factors.

    `W = lu_reconstruct(L + U + diag(sign * exp(log_diag)), permutation)`
    (`tf.linalg.lu_reconstruct`), `L` strictly lower and `U` strictly upper
    triangular (their other entries are ignored), so

        forward:  y = W x                 fldj = sum(log_diag)
        inverse:  x = W^{-1} y (two triangular solves)   ildj = -sum(log_diag)

    `W` stays invertible whatever the values (the diagonal of `U` is
    `sign * exp(log_diag)`, never zero). Events of any shape are flattened in
    row-major order. The bijector holds the tensors or variables it is given
    (`sign` and `permutation` may be non-trainable variables, read at each call).

    Examples:
        Glow's start, a random rotation (`lu_linear_init`), has `|det W| = 1`:

        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> factors = {k: v.astype("float32") if v.dtype.kind == "f" else v
        ...            for k, v in tn.lu_linear_init(3, seed=0).items()}
        >>> b = tn.LULinear(**factors, event_shape=(3,))
        >>> x = np.float32([[1.0, 2.0, 3.0]])
        >>> np.allclose(b.inverse(b.forward(x)), x, atol=1e-5)
        True
        >>> round(float(b.forward_log_det_jacobian(x, event_ndims=1)[0]), 5)
        0.0
        >>> w = b.forward(np.eye(3, dtype="float32")).numpy().T  # the matrix W
        >>> np.allclose(w @ w.T, np.eye(3), atol=1e-5)
        True
    """

    def __init__(self, lower: tf.Tensor, upper: tf.Tensor, log_diag: tf.Tensor,
                 sign: tf.Tensor, permutation: tf.Tensor | np.ndarray,
                 event_shape: Sequence[int],
                 validate_args: bool = False, name: str = "lu_linear") -> None:
        parameters = dict(locals())
        self._event_shape = tuple(int(d) for d in event_shape)
        size = int(np.prod(self._event_shape))
        dtype = _checks.floating_dtype(log_diag, "LULinear's log_diag")
        for value, what, shape in ((lower, "lower", (size, size)), (upper, "upper", (size, size)),
                                   (log_diag, "log_diag", (size,)), (sign, "sign", (size,)),
                                   (permutation, "permutation", (size,))):
            if tuple(value.shape) != shape:
                raise ValueError(f"LULinear's {what} must have shape {shape} for event shape "
                                 f"{self._event_shape}, got {tuple(value.shape)}.")
        if not _is_variable(permutation):
            perm = np.asarray(permutation)
            if not np.array_equal(np.sort(perm), np.arange(size)):
                raise ValueError("LULinear's permutation is not a permutation of "
                                 f"range({size}).")
        self._lower, self._upper, self._log_diag = lower, upper, log_diag
        self._sign, self._perm = sign, permutation
        self._strict_lower = tf.constant(np.tril(np.ones((size, size)), -1), dtype)
        self._strict_upper = tf.constant(np.triu(np.ones((size, size)), 1), dtype)
        self._size, self._dtype_ = size, dtype
        self._keras_variables = _tracking.backing_variables(
            lower, upper, log_diag, sign, permutation)
        with tf.name_scope(name) as name:
            super().__init__(forward_min_event_ndims=len(self._event_shape),
                             is_constant_jacobian=True, validate_args=validate_args,
                             parameters=parameters, name=name)

    def lower_upper(self) -> tf.Tensor:
        """The packed LU matrix `tf.linalg.lu_reconstruct` takes."""
        lower = tf.convert_to_tensor(self._lower, self._dtype_) * self._strict_lower
        upper = tf.convert_to_tensor(self._upper, self._dtype_) * self._strict_upper
        sign = tf.cast(tf.convert_to_tensor(self._sign), self._dtype_)
        diag = sign * tf.exp(tf.convert_to_tensor(self._log_diag, self._dtype_))
        return lower + upper + tf.linalg.diag(diag)

    def _permutation(self):
        return tf.cast(tf.convert_to_tensor(self._perm), tf.int32)

    def matrix(self) -> tf.Tensor:
        """`W` itself."""
        return tf.linalg.lu_reconstruct(self.lower_upper(), self._permutation())

    def _flat(self, t, what):
        _checks.check_floating_input(t, self._dtype_, self.name)
        _checks.check_event_shape(t, self._event_shape, self.name, what)
        shape = tf.shape(t)
        return tf.reshape(t, [-1, self._size]), shape[: tf.size(shape) - len(self._event_shape)]

    def _unflat(self, flat, batch_shape):
        return tf.reshape(flat, tf.concat([batch_shape, self._event_shape], 0))

    def _forward(self, x):
        flat, batch_shape = self._flat(x, "x")
        return self._unflat(tf.matmul(flat, self.matrix(), transpose_b=True), batch_shape)

    def _inverse(self, y):
        flat, batch_shape = self._flat(y, "y")
        solved = tf.linalg.lu_solve(self.lower_upper(), self._permutation(), tf.transpose(flat))
        return self._unflat(tf.transpose(solved), batch_shape)

    def _log_det(self, t, what):
        _, batch_shape = self._flat(t, what)
        total = tf.reduce_sum(tf.convert_to_tensor(self._log_diag, self._dtype_))
        return tf.broadcast_to(total, batch_shape)

    def _forward_log_det_jacobian(self, x):
        return self._log_det(x, "x")

    def _inverse_log_det_jacobian(self, y):
        return -self._log_det(y, "y")

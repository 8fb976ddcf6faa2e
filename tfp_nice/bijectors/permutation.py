"""Fixed permutations of an event's entries, for any event rank."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice.bijectors import _checks, _tracking
from tfp_nice.bijectors.rescaling import _is_variable

tfb = tfp.bijectors

__all__ = ["Permutation", "random_permutation", "reverse_permutation"]


def reverse_permutation(size: int) -> np.ndarray:
    """The permutation that reverses `size` entries."""
    return np.arange(size)[::-1].copy()


def random_permutation(size: int, seed: int | None) -> np.ndarray:
    """A fixed random permutation of `size` entries from an int `seed`."""
    return np.random.default_rng(seed).permutation(size)


class Permutation(tfp.bijectors.Bijector):
    """Reorders the entries of each event: `forward(x).flat[i] = x.flat[permutation[i]]`.

        forward:  y_flat = x_flat[permutation]      log-det 0 (volume preserving)
        inverse:  x_flat = y_flat[argsort(permutation)]

    Events of any shape are flattened in row-major order, permuted, and put
    back into `event_shape`. The direction does not matter for its meaning:
    placed between couplings it lets every entry meet every other.

    Examples:
        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> b = tn.Permutation(tn.reverse_permutation(4), event_shape=(4,))
        >>> b.forward(np.float32([[1.0, 2.0, 3.0, 4.0]])).numpy()
        array([[4., 3., 2., 1.]], dtype=float32)
        >>> b = tn.Permutation([2, 0, 1, 3], event_shape=(2, 2))  # events of any shape
        >>> b.forward(np.float32([[[1.0, 2.0], [3.0, 4.0]]])).numpy()
        array([[[3., 1.],
                [2., 4.]]], dtype=float32)
    """

    def __init__(self, permutation: ArrayLike, event_shape: Sequence[int],
                 validate_args: bool = False, name: str = "permutation") -> None:
        """Builds the bijector.

        Args:
          permutation: a permutation of `range(prod(event_shape))`: an array,
            or an integer (Keras or TF) variable holding one, read at each call
            (a model saves its permutations so).
          event_shape: the event shape, e.g. `(d,)` or `(h, w, c)`.

        Raises:
          ValueError: if `permutation` is not a permutation of the flat indices.
        """
        parameters = dict(locals())
        self._event_shape = tuple(int(d) for d in event_shape)
        size = int(np.prod(self._event_shape))
        if tuple(np.shape(permutation)) != (size,):
            raise ValueError(
                f"permutation must be a permutation of range({size}) for event shape "
                f"{self._event_shape}; got an array of shape {tuple(np.shape(permutation))}."
            )
        if _is_variable(permutation):
            self._perm = permutation
        else:
            perm = np.asarray(permutation)
            if not np.array_equal(np.sort(perm), np.arange(size)):
                raise ValueError(f"permutation must be a permutation of range({size}); "
                                 f"got {perm.tolist()}.")
            self._perm = tf.constant(perm.astype(np.int32))
        self._size = size
        self._keras_variables = _tracking.backing_variables(permutation)
        with tf.name_scope(name) as name:
            super().__init__(forward_min_event_ndims=len(self._event_shape),
                             is_constant_jacobian=True, validate_args=validate_args,
                             parameters=parameters, name=name)

    @property
    def permutation(self) -> np.ndarray:
        """The permutation, as a numpy array."""
        return np.asarray(tf.convert_to_tensor(self._perm))

    def _index(self, inverse):
        perm = tf.cast(tf.convert_to_tensor(self._perm), tf.int32)
        return tf.math.invert_permutation(perm) if inverse else perm

    def _apply(self, t, index, what):
        _checks.check_floating_input(t, None, self.name)
        _checks.check_event_shape(t, self._event_shape, self.name, what)
        k = len(self._event_shape)
        shape = tf.shape(t)
        batch_shape = shape[: tf.size(shape) - k]
        flat = tf.gather(tf.reshape(t, [-1, self._size]), index, axis=1)
        return tf.reshape(flat, tf.concat([batch_shape, self._event_shape], 0))

    def _forward(self, x):
        return self._apply(x, self._index(False), "x")

    def _inverse(self, y):
        return self._apply(y, self._index(True), "y")

    def _zero(self, t):
        shape = tf.shape(t)
        return tf.zeros(shape[: tf.size(shape) - len(self._event_shape)], t.dtype)

    def _forward_log_det_jacobian(self, x):
        return self._zero(x)

    def _inverse_log_det_jacobian(self, y):
        return self._zero(y)

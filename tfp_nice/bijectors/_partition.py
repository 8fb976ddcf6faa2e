"""Splitting an event into its masked parts and putting it back together."""

import numpy as np
import tensorflow as tf

from tfp_nice.bijectors import _checks
from tfp_nice.bijectors.masks import check_mask


class MaskPartition:
    """Gathers the two sides of a mask as flat vectors and scatters them back.

    Computed once from the mask: the flat indices of part A (`True`) and of
    part B (`False`), and the permutation that undoes `concat([A, B])`.
    """

    def __init__(self, mask):
        self.mask = check_mask(mask)
        self.event_shape = tuple(self.mask.shape)
        self.event_ndims = self.mask.ndim
        flat = self.mask.reshape(-1)
        self.size = flat.size
        self.index_a = np.flatnonzero(flat).astype(np.int32)
        self.index_b = np.flatnonzero(~flat).astype(np.int32)
        order = np.concatenate([self.index_a, self.index_b])
        self._undo = np.argsort(order).astype(np.int32)
        self.size_a = self.index_a.size
        self.size_b = self.index_b.size

    def check(self, x, name, what="x"):
        _checks.check_event_shape(x, self.event_shape, name, what)

    def batch_shape_tensor(self, x):
        shape = tf.shape(x)
        return shape[: tf.size(shape) - self.event_ndims]

    def split(self, x):
        """Returns `(x_a, x_b, batch_shape)`.

        `x_a` and `x_b` are matrices `[N, size_of_part]`, the batch dimensions
        of `x` flattened into `N` (so networks always see one batch axis).
        """
        batch_shape = self.batch_shape_tensor(x)
        flat = tf.reshape(x, [-1, self.size])
        return (tf.gather(flat, self.index_a, axis=1),
                tf.gather(flat, self.index_b, axis=1),
                batch_shape)

    def merge(self, x_a, x_b, batch_shape):
        """Inverse of `split`."""
        flat = tf.gather(tf.concat([x_a, x_b], axis=1), self._undo, axis=1)
        return tf.reshape(flat, tf.concat([batch_shape, self.event_shape], 0))

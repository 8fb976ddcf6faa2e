"""Splitting an event into its masked parts and putting it back together.

Part A is always the masked entries in flat (row-major) order and part B the
rest, whichever way the split is computed, so a network sees its inputs in the
same order on every path. The `layout`, chosen once from the mask, is one of:

* ``"channel"``: an `(h, w, c)` event whose mask picks the same channels (last
  axis) at every pixel, such as the `"channel"` partition. The parts keep their
  natural shapes, `(h, w, c_a)` and `(h, w, c_b)`, so a convolution can take
  them; they are a slice (or a gather) of the last axis and merge by a
  concatenation.
* ``"runs"``: the flat mask repeats a period of `p` entries that is one run of
  one side followed by one run of the other (halves, or any such mask with runs
  of unequal length). Reshaping to `[N, size // p, p]` and slicing the last
  axis splits it; concatenating on that axis merges.
* ``"transpose"``: periodic runs of equal length (NICE's odd/even interleave):
  a transpose of `[N, size // p, 2, p // 2]` and an unstack split it in one op
  each.
* ``"gather"``: any other mask (a checkerboard, a custom mask): one `tf.gather`
  per part and one to merge.

The last three give flat parts, `[N, n_a]` and `[N, n_b]`. The gathers are the
slow path: on a CPU their gradients scatter. On the MNIST model the
reshape/transpose path is what makes `fit` keep up with TFP's `RealNVP` (see
`benchmarks/`). Consecutive couplings over one partition (or its complement)
split once and merge once when they run as one `CouplingBlock`.
"""

import numpy as np
import tensorflow as tf

from tfp_nice._types import TensorLike
from tfp_nice.bijectors import _checks
from tfp_nice.bijectors.masks import check_mask


def _channel_mask(mask):
    """The mask of the channels if an `(h, w, c)` mask picks the same channels at every
    pixel, else None."""
    if mask.ndim != 3:
        return None
    channels = mask.reshape(-1, mask.shape[-1])
    return channels[0].copy() if (channels == channels[0]).all() else None


def _is_range(index):
    return index.size > 0 and np.array_equal(index, np.arange(index[0], index[0] + index.size))


def _runs_layout(flat):
    """Returns `(period, first_is_a, first_len)` if `flat` is periodic runs, else None."""
    size = flat.size
    for period in range(2, size + 1):
        if size % period:
            continue
        rows = flat.reshape(-1, period)
        if not (rows == rows[0]).all():
            continue
        pattern = rows[0]
        first_len = int(np.argmax(pattern != pattern[0]))  # pattern has both sides
        if (pattern[first_len:] == pattern[first_len]).all():
            return period, bool(pattern[0]), first_len
        return None  # the smallest period is not two runs; longer ones are not either
    return None


class MaskPartition:
    """Splits an event into parts A (`mask`) and B (`~mask`) and merges them back.

    Computed once from the mask: the flat indices of each part (for the gather
    path and for reference), the layout used to split (see the module doc) and
    the shape of each part after the batch axis, `shape_a` and `shape_b`:
    `(h, w, c_a)` and `(h, w, c_b)` for the channel layout, `(n_a,)` and
    `(n_b,)` for the others.
    """

    def __init__(self, mask):
        self.mask = check_mask(mask)
        self.event_shape = tuple(self.mask.shape)
        self.event_ndims = self.mask.ndim
        flat = self.mask.reshape(-1)
        self.size = flat.size
        self.index_a = np.flatnonzero(flat).astype(np.int32)
        self.index_b = np.flatnonzero(~flat).astype(np.int32)
        self.size_a = self.index_a.size
        self.size_b = self.index_b.size
        order = np.concatenate([self.index_a, self.index_b])
        self._undo = np.argsort(order).astype(np.int32)
        self.shape_a, self.shape_b = (self.size_a,), (self.size_b,)
        channels = _channel_mask(self.mask)
        runs = _runs_layout(flat)
        if channels is not None:
            self.layout = "channel"
            self._channels_a = np.flatnonzero(channels).astype(np.int32)
            self._channels_b = np.flatnonzero(~channels).astype(np.int32)
            self.shape_a = self.event_shape[:-1] + (self._channels_a.size,)
            self.shape_b = self.event_shape[:-1] + (self._channels_b.size,)
            # A then B along the last axis is a concatenation when each is one run.
            self._slices = _is_range(self._channels_a) and _is_range(self._channels_b)
            self._a_first = bool(channels[0])
            self._undo_channels = np.argsort(
                np.concatenate([self._channels_a, self._channels_b])).astype(np.int32)
        elif runs is None:
            self.layout = "gather"
        else:
            self._period, self._a_first, self._first_len = runs
            self._rows = self.size // self._period
            self.layout = ("transpose" if self._rows > 1 and 2 * self._first_len == self._period
                           else "runs")

    def check(self, x: TensorLike, name: str, what: str = "x"):
        _checks.check_event_shape(x, self.event_shape, name, what)

    def batch_shape_tensor(self, x: TensorLike):
        shape = tf.shape(x)
        return shape[: tf.size(shape) - self.event_ndims]

    def split(self, x: TensorLike):
        """Returns `(x_a, x_b, batch_shape)`.

        `x_a` and `x_b` are `[N, *shape_a]` and `[N, *shape_b]`, the batch
        dimensions of `x` flattened into `N` (so networks always see one batch
        axis); in flat order, each holds its entries in their flat order in the
        event.
        """
        batch_shape = self.batch_shape_tensor(x)
        if self.layout == "channel":
            grid = tf.reshape(x, (-1,) + self.event_shape)
            if self._slices:
                c_first = (self._channels_a if self._a_first else self._channels_b).size
                first, second = grid[..., :c_first], grid[..., c_first:]
                return ((first, second, batch_shape) if self._a_first
                        else (second, first, batch_shape))
            return (tf.gather(grid, self._channels_a, axis=-1),
                    tf.gather(grid, self._channels_b, axis=-1), batch_shape)
        flat = tf.reshape(x, [-1, self.size])
        if self.layout == "gather":
            return (tf.gather(flat, self.index_a, axis=1),
                    tf.gather(flat, self.index_b, axis=1),
                    batch_shape)
        rows, period, first_len = self._rows, self._period, self._first_len
        if self.layout == "transpose":
            parts = tf.transpose(tf.reshape(flat, [-1, rows, 2, first_len]), [0, 2, 1, 3])
            # unstack, not two slices: its gradient is one stack, not two scatters.
            first, second = tf.unstack(tf.reshape(parts, [-1, 2, rows * first_len]), 2, axis=1)
        else:
            grid = tf.reshape(flat, [-1, rows, period])
            first = tf.reshape(grid[:, :, :first_len], [-1, rows * first_len])
            second = tf.reshape(grid[:, :, first_len:], [-1, rows * (period - first_len)])
        return (first, second, batch_shape) if self._a_first else (second, first, batch_shape)

    def merge(self, x_a: tf.Tensor, x_b: tf.Tensor, batch_shape):
        """Inverse of `split`."""
        shape = tf.concat([batch_shape, self.event_shape], 0)
        if self.layout == "channel":
            if self._slices:
                grid = tf.concat([x_a, x_b] if self._a_first else [x_b, x_a], axis=-1)
            else:
                grid = tf.gather(tf.concat([x_a, x_b], -1), self._undo_channels, axis=-1)
            return tf.reshape(grid, shape)
        if self.layout == "gather":
            flat = tf.gather(tf.concat([x_a, x_b], axis=1), self._undo, axis=1)
            return tf.reshape(flat, shape)
        first, second = (x_a, x_b) if self._a_first else (x_b, x_a)
        rows, period, first_len = self._rows, self._period, self._first_len
        if self.layout == "transpose":
            parts = tf.reshape(tf.stack([first, second], axis=1), [-1, 2, rows, first_len])
            return tf.reshape(tf.transpose(parts, [0, 2, 1, 3]), shape)
        grid = tf.concat([tf.reshape(first, [-1, rows, first_len]),
                          tf.reshape(second, [-1, rows, period - first_len])], axis=2)
        return tf.reshape(grid, shape)

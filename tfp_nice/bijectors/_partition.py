"""Splitting an event into its masked parts and putting it back together.

Part A is always the masked entries in flat (row-major) order and part B the
rest, whichever way the split is computed, so a network sees its inputs in the
same order on every path. The `layout`, chosen once from the mask, is one of:

* ``"runs"``: the flat mask repeats a period of `p` entries that is one run of
  one side followed by one run of the other (halves, or any such mask with runs
  of unequal length). Reshaping to `[N, size // p, p]` and slicing the last
  axis splits it; concatenating on that axis merges.
* ``"transpose"``: periodic runs of equal length (NICE's odd/even interleave,
  channel halves): a transpose of `[N, size // p, 2, p // 2]` and an unstack
  split it in one op each.
* ``"gather"``: any other mask (a checkerboard, a custom mask): one `tf.gather`
  per part and one to merge.

The gathers are the slow path: on a CPU their gradients scatter. On the MNIST
model the reshape/transpose path is what makes `fit` keep up with TFP's
`RealNVP` (see `benchmarks/`).

Inside a `tf.function` and outside any gradient tape (serving, sampling,
scoring), `split` of a tensor that `merge` just built (the next coupling of a
chain, with this mask or its complement) returns the parts `merge` was given:
the values are the same, and the rearrangement between consecutive couplings
is not computed at all. (Under a tape it is, so that a gradient with respect to
a coupling's output flows through the next coupling.) Grappler removes it on its own
only when the batch size is known at tracing; in a graph traced for any batch
size (a SavedModel's signatures, `input_signature=[TensorSpec([None, ...])]`)
it ran, and the exported `log_prob` of a small model took 1.3x the in-process
time at batch 1024.
"""

import numpy as np
import tensorflow as tf

from tfp_nice.bijectors import _checks
from tfp_nice.bijectors.masks import check_mask


# The tensors `merge` built, per graph: {tensor ref: (mask key, part A, part B, batch
# shape)}, kept on the graph itself so that they go with it (a global table keyed on
# the graph would keep every graph alive: its tensors refer to it). Eager tensors are
# not recorded.
_ATTR = "_tfp_nice_merged"


def _record_merge(y, mask, x_a, x_b, batch_shape):
    if not tf.executing_eagerly() and hasattr(y, "graph"):
        if not hasattr(y.graph, _ATTR):
            setattr(y.graph, _ATTR, {})
        getattr(y.graph, _ATTR)[y.ref()] = (_key(mask), x_a, x_b, batch_shape)
    return y


def _merged(x):
    """What `merge` built `x` from, or None (eager tensors, anything else)."""
    if tf.executing_eagerly() or not hasattr(x, "graph"):
        return None
    return getattr(x.graph, _ATTR, {}).get(x.ref())


def _tape_may_record():
    """Whether a gradient tape is active here (True when TensorFlow cannot say).

    Under a tape the parts are not taken: a gradient with respect to the merged
    tensor itself (watched by the user) must flow through the next coupling.
    """
    try:
        from tensorflow.python.eager import record
    except ImportError:  # pragma: no cover - a TensorFlow without the module
        return True
    return record.could_possibly_record()


def _merged_parts(x, mask):
    """`(x_a, x_b)` for `mask` if `merge` built `x` from parts of `mask` or of `~mask`
    and no gradient tape is recording."""
    found = _merged(x)
    if found is None or _tape_may_record():
        return None
    merged_mask, x_a, x_b, _ = found
    if merged_mask == _key(mask):
        return x_a, x_b
    if merged_mask == _key(~mask):
        return x_b, x_a
    return None


def _key(mask):
    return mask.shape, mask.tobytes()


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
    """Splits an event into flat parts A (`mask`) and B (`~mask`) and merges them back.

    Computed once from the mask: the flat indices of each part (for the gather
    path and for reference) and the layout used to split (see the module doc).
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
        runs = _runs_layout(flat)
        if runs is None:
            self.layout = "gather"
        else:
            self._period, self._a_first, self._first_len = runs
            self._rows = self.size // self._period
            self.layout = ("transpose" if self._rows > 1 and 2 * self._first_len == self._period
                           else "runs")

    def check(self, x, name, what="x"):
        _checks.check_event_shape(x, self.event_shape, name, what)

    def batch_shape_tensor(self, x):
        found = _merged(x)
        if found is not None:  # not tf.shape(x): that would need x computed
            return found[3]
        shape = tf.shape(x)
        return shape[: tf.size(shape) - self.event_ndims]

    def split(self, x):
        """Returns `(x_a, x_b, batch_shape)`.

        `x_a` and `x_b` are matrices `[N, size_of_part]`, the batch dimensions
        of `x` flattened into `N` (so networks always see one batch axis), each
        in the flat order of its entries in the event.
        """
        batch_shape = self.batch_shape_tensor(x)
        parts = _merged_parts(x, self.mask)
        if parts is not None:
            return (*parts, batch_shape)
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

    def merge(self, x_a, x_b, batch_shape):
        """Inverse of `split`."""
        return _record_merge(self._merge(x_a, x_b, batch_shape), self.mask, x_a, x_b,
                             batch_shape)

    def _merge(self, x_a, x_b, batch_shape):
        shape = tf.concat([batch_shape, self.event_shape], 0)
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

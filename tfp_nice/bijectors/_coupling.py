"""What every masked coupling layer shares: the network, the mask, the checks."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice import _private_api
from tfp_nice.bijectors import _checks, _tracking
from tfp_nice.bijectors._partition import MaskPartition


class MaskedCoupling(tfp.bijectors.Bijector):
    """Base of the coupling layers: splits by `mask`, runs the network on part A.

    A subclass says how part B changes given the network's output on part A in
    `transform_part`; splitting and merging are this class's, so that a
    `CouplingBlock` can run several couplings on parts split once.
    """

    def __init__(self, fn, fn_name, mask, validate_args, parameters, name, context=None):
        if not callable(fn):
            raise TypeError(f"{fn_name} must be a callable or a Keras layer, got "
                            f"{type(fn).__name__}.")
        with tf.name_scope(name) as name:
            self._fn = fn
            self._context = None if context is None else tf.convert_to_tensor(context)
            self._partition = MaskPartition(mask)
            # A Keras network is built for the part it will see, so that its
            # weights exist now and TFP's variable tracking can list them.
            _tracking.build_layer(fn, (None,) + self._partition.shape_a)
            self._keras_variables = _tracking.backing_variables(fn)
            super().__init__(
                forward_min_event_ndims=self._partition.event_ndims,
                # A coupling's Jacobian matrix depends on x (the block dm/dx_A),
                # even where its log-det is constant: not affine, so False.
                is_constant_jacobian=False,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @property
    def mask(self):
        """The mask as a numpy boolean array (`True` = conditioning part)."""
        return self._partition.mask.copy()

    @property
    def context(self):
        """The context the network is given with part A (`fn(x_a, context=c)`), or `None`."""
        return self._context

    @property
    def part_shapes(self):
        """`(shape_a, shape_b)`: the shapes of the two parts after the batch axis.

        `(h, w, c_a)` and `(h, w, c_b)` for a mask that picks channels of an
        image (the network sees part A as an image); `(n_a,)` and `(n_b,)`
        otherwise.
        """
        return self._partition.shape_a, self._partition.shape_b

    # A coupling with a constant log-det (additive) says so, so that the log-det of a
    # block of them needs no network call.
    constant_log_det = False

    def transform_part(self, x_a, x_b, inverse=False):
        """Returns `(y_b, log_det)`: part B mapped given part A, and the forward log-det.

        `x_a` and `x_b` are `[N, *shape_a]` and `[N, *shape_b]` (see
        `part_shapes`); `log_det` is the forward map's log-det per example
        (`[N]`), or `None` where it is 0. With `inverse=True`, `x_b` is the
        output's part B and `y_b` the input's; `log_det` is still the
        forward one, at that input.
        """
        raise NotImplementedError

    def _call_network(self, t_a, like):
        """The network on part A; a network under a mixed-precision Keras policy (it
        computes in half precision) hands its outputs back in `like`'s dtype."""
        if self._context is None:
            out = self._fn(t_a)
        else:
            out = self._fn(t_a, context=self._context)
        policy = getattr(self._fn, "dtype_policy", None)
        if policy is not None and policy.compute_dtype != policy.variable_dtype:
            out = tf.nest.map_structure(lambda o: tf.cast(o, like.dtype), out)
        return out

    def _check_input(self, t, what):
        _checks.check_floating_input(t, None, self.name)
        self._partition.check(t, self.name, what)

    def _part(self, value, t, label):
        """`value` as a `[batch, *shape_b]` tensor of `t`'s dtype, or an error.

        A flat `[batch, n_b]` value for an image part is taken in flat order
        and reshaped, so a network that returns vectors serves any mask.
        """
        value = tf.convert_to_tensor(value)
        shape_b, n_b = self._partition.shape_b, self._partition.size_b
        if value.dtype != t.dtype:
            raise TypeError(
                f"{self.name}: the {label} has dtype {value.dtype.name} for an input of dtype "
                f"{t.dtype.name}; build the network in {t.dtype.name}."
            )
        rank = value.shape.rank
        if len(shape_b) > 1 and rank == 2 and value.shape[-1] in (None, n_b):
            return tf.reshape(value, (-1,) + tuple(shape_b))
        if rank is not None and (rank != 1 + len(shape_b) or any(
                got is not None and got != want for got, want in zip(value.shape[1:], shape_b))):
            expected = ", ".join(str(d) for d in ("batch",) + tuple(shape_b))
            flat = f" or [batch, {n_b}]" if len(shape_b) > 1 else ""
            raise ValueError(
                f"{self.name}: the {label} must have shape [{expected}]{flat} (one value per "
                f"transformed entry), got {tuple(value.shape)}."
            )
        return value

    def _map(self, t, what, inverse):
        """Returns `(t mapped, forward log-det of shape batch, or None)`."""
        self._check_input(t, what)
        t_a, t_b, batch_shape = self._partition.split(t)
        u_b, log_det = self.transform_part(t_a, t_b, inverse)
        out = self._partition.merge(t_a, u_b, batch_shape)
        return out, None if log_det is None else tf.reshape(log_det, batch_shape)

    def _forward(self, x):
        return self._map(x, "x", False)[0]

    def _inverse(self, y):
        return self._map(y, "y", True)[0]


class LogDetWithResult:
    """For bijectors whose `_map(t, what, inverse)` gives the result and the forward log-det
    in one pass: both go to TFP's cache at once (as `tfb.FFJORD` does), so a `log_prob`
    or a `sample` with its log-det runs each network once, not twice. Put it before the
    bijector base class."""

    _cache = _private_api.log_det_with_result_cache("_augmented_forward",
                                                    "_augmented_inverse")

    def _augmented_forward(self, x):
        y, fldj = self._map(x, "x", False)
        return y, {"fldj": fldj, "ildj": -fldj}

    def _augmented_inverse(self, y):
        x, fldj = self._map(y, "y", True)
        return x, {"ildj": -fldj, "fldj": fldj}

    def _forward(self, x):
        return self._augmented_forward(x)[0]

    def _inverse(self, y):
        return self._augmented_inverse(y)[0]


def sum_per_example(t):
    """Sums a `[N, ...]` tensor over everything but its first axis."""
    return tf.reduce_sum(tf.reshape(t, [tf.shape(t)[0], -1]), axis=-1)


def same_or_complement(mask, reference):
    """`True` if `mask` equals `reference`, `False` if it is its complement, else None."""
    if mask.shape != reference.shape:
        return None
    if np.array_equal(mask, reference):
        return True
    if np.array_equal(mask, ~reference):
        return False
    return None

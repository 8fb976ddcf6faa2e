"""What every masked coupling layer shares: the network, the mask, the checks."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice import _private_api, transformers
from tfp_nice._types import TensorLike
from tfp_nice.bijectors import _checks, _tracking
from tfp_nice.bijectors._partition import MaskPartition
from tfp_nice.transformers import Transformer


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


class MaskedCoupling(LogDetWithResult, tfp.bijectors.Bijector):
    """Base of the coupling layers: splits by `mask`, runs the network on part A, and
    applies the transformer to part B given the network's output.

    What part B undergoes is the transformer's (`tfp_nice.transformers`); what
    computes its parameters is the network's; splitting and merging are this
    class's, so that a `CouplingBlock` can run several couplings on parts split
    once.
    """

    # The network's outputs are read as these parameters, in this order, when it
    # returns one tensor per parameter (error messages name them).
    parameter_labels: tuple[str, ...] = ()

    def __init__(self, fn, fn_name, mask, transformer, validate_args, parameters, name,
                 context=None):
        if not callable(fn):
            raise TypeError(f"{fn_name} must be a callable or a Keras layer, got "
                            f"{type(fn).__name__}.")
        with tf.name_scope(name) as name:
            self._fn = fn
            self._fn_name = fn_name
            self._transformer = transformers.get(transformer)
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
    def transformer(self) -> Transformer:
        """The elementwise map part B undergoes (a `tfp_nice.Transformer`)."""
        return self._transformer

    @property
    def constant_log_det(self) -> bool:
        """Whether the log-det is the same at every input (the transformer's says)."""
        return self._transformer.constant_log_det

    @property
    def mask(self) -> np.ndarray:
        """The mask as a numpy boolean array (`True` = conditioning part)."""
        return self._partition.mask.copy()

    @property
    def context(self) -> tf.Tensor | None:
        """The context the network is given with part A (`fn(x_a, context=c)`), or `None`."""
        return self._context

    @property
    def part_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """`(shape_a, shape_b)`: the shapes of the two parts after the batch axis.

        `(h, w, c_a)` and `(h, w, c_b)` for a mask that picks channels of an
        image (the network sees part A as an image); `(n_a,)` and `(n_b,)`
        otherwise.
        """
        return self._partition.shape_a, self._partition.shape_b

    def transform_part(self, x_a: tf.Tensor, x_b: tf.Tensor,
                       inverse: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns `(y_b, log_det)`: part B mapped given part A, and the forward log-det.

        `x_a` and `x_b` are `[N, *shape_a]` and `[N, *shape_b]` (see
        `part_shapes`); `log_det` is the forward map's log-det per example
        (`[N]`). With `inverse=True`, `x_b` is the output's part B and `y_b`
        the input's; `log_det` is still the forward one, at that input.
        """
        params = self._raw_parameters(x_a, x_b)
        if isinstance(params, tuple):  # one tensor per parameter: no stacking
            y_b, log_det = self._transformer.apply_parts(x_b, params, inverse)
        elif inverse:
            y_b, log_det = self._transformer.inverse(x_b, params)
        else:
            y_b, log_det = self._transformer.forward(x_b, params)
        log_det = sum_per_example(log_det)
        return y_b, -log_det if inverse else log_det

    def parameters_given(self, x_a: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
        """The transformer's parameters for part B, `[N, *shape_b, params_per_entry]`,
        from the network's output on part A (`like`: part B, for its dtype)."""
        return _stacked(self._raw_parameters(x_a, like))

    def read_parameters(self, out: Any, like: tf.Tensor) -> tf.Tensor:
        """The network's output `out` as `[N, *shape_b, P]` (`P` the transformer's
        `params_per_entry`), or an error naming the shapes it takes: a tuple of `P`
        tensors of part B's shape (`[N, *shape_b]`, or flat `[N, n_b]`), or one tensor of
        `[N, *shape_b, P]`, of `[N, n_b * P]` (each entry's `P` values side by side, flat
        order), or for an image part `[N, h, w, c_b * P]`; with `P = 1` also
        `[N, *shape_b]`."""
        return _stacked(self._read(out, like))

    def _raw_parameters(self, x_a, like):
        """The network's parameters for part B: a tuple of `P` tensors of part B's shape
        when it gives one per parameter, else one `[N, *shape_b, P]` tensor. Kept apart
        when they come apart: stacking them on a last axis and slicing them back cost an
        affine coupling of 392 entries 2 ms a batch of 256, forward and backward."""
        params = self._read(self._call_network(x_a, like), like)
        if self.validate_args:
            message = f"{self.name}: the network's parameters are not finite"
            params = tf.nest.map_structure(
                lambda p: tf.debugging.assert_all_finite(p, message), params)
        return params

    def _read(self, out, like):
        """`read_parameters` without the stacking: a tuple of part-B-shaped tensors, or
        one `[N, *shape_b, P]` tensor."""
        p = self._transformer.params_per_entry
        labels = self.parameter_labels or tuple(f"parameter {i}" for i in range(p))
        if isinstance(out, (tuple, list)):
            if len(out) != p:
                raise ValueError(f"{self.name}: {self._fn_name} returned {len(out)} values; "
                                 f"the {self._transformer!r} transformer takes {p} per entry.")
            return tuple(self._part(v, like, label) for v, label in zip(out, labels))
        out = tf.convert_to_tensor(out)
        shape_b, n_b = self._partition.shape_b, self._partition.size_b
        if p == 1 and out.shape.rank != len(shape_b) + 2:
            return (self._part(out, like, labels[0]),)
        if out.dtype != like.dtype:
            raise TypeError(f"{self.name}: the network's output has dtype {out.dtype.name} "
                            f"for an input of dtype {like.dtype.name}; build the network in "
                            f"{like.dtype.name}.")
        accepted = [(n_b * p,), tuple(shape_b) + (p,)]
        if len(shape_b) > 1:
            accepted.append(tuple(shape_b[:-1]) + (shape_b[-1] * p,))
        if tuple(out.shape[1:]) not in accepted:
            forms = " or ".join("[" + ", ".join(str(d) for d in ("batch",) + a) + "]"
                                for a in accepted)
            raise ValueError(f"{self.name}: {self._fn_name} must return {forms} ({p} raw "
                             f"values per transformed entry for {self._transformer!r}), got "
                             f"shape {tuple(out.shape)}.")
        return tf.reshape(out, (-1,) + tuple(shape_b) + (p,))

    def constant_log_det_value(self, dtype: Any) -> tf.Tensor:
        """A constant-log-det coupling's forward log-det per example (a scalar), from the
        transformer at zero input and parameters: no network call."""
        shape_b = tuple(self._partition.shape_b)
        p = self._transformer.params_per_entry
        _, log_det = self._transformer.forward(tf.zeros((1,) + shape_b, dtype),
                                               tf.zeros((1,) + shape_b + (p,), dtype))
        return tf.reduce_sum(log_det)

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
        """Returns `(t mapped, forward log-det of shape batch)`."""
        self._check_input(t, what)
        t_a, t_b, batch_shape = self._partition.split(t)
        u_b, log_det = self.transform_part(t_a, t_b, inverse)
        out = self._partition.merge(t_a, u_b, batch_shape)
        return out, tf.reshape(log_det, batch_shape)

    def _constant_log_det(self, t, what):
        self._check_input(t, what)
        value = self.constant_log_det_value(t.dtype)
        return tf.broadcast_to(value, self._partition.batch_shape_tensor(t))

    def _forward_log_det_jacobian(self, x):
        if self.constant_log_det:  # no network call
            return self._constant_log_det(x, "x")
        return self._map(x, "x", False)[1]

    def _inverse_log_det_jacobian(self, y):
        if self.constant_log_det:
            return -self._constant_log_det(y, "y")
        return -self._map(y, "y", True)[1]


class Coupling(MaskedCoupling):
    """A coupling layer of any transformer: part B mapped elementwise given part A.

    The boolean `mask` splits `x` into a conditioning part `x_A = x[mask]` and
    a transformed part `x_B = x[~mask]`. With `theta = params_fn(x_A)` and the
    transformer `t` (`tfp_nice.Additive`, `Affine`, `Spline`, or one's own):

        forward:  y_A = x_A,   y_B = t(x_B; theta)         fldj =  sum log |t'(x_B)|
        inverse:  x_A = y_A,   x_B = t^{-1}(y_B; theta)    ildj = -fldj at x

    computed in one pass (the log-det goes to TFP's cache with the result).
    `forward` is the data -> latent direction in NICE's `f` (and latent ->
    data inside a `tfd.TransformedDistribution` that is given it directly).
    The Jacobian matrix depends on `x`, so `is_constant_jacobian=False`.

    `params_fn` sees part A as `[N, n_A]` (batch dimensions flattened), or as
    an image `[N, h, w, c_A]` for a mask that picks channels of an `(h, w, c)`
    event (`part_shapes` says which), and returns the transformer's
    `P = params_per_entry` parameters per entry of part B: a tuple of `P`
    tensors of part B's shape, or one tensor of `[N, *shape_B, P]`,
    `[N, n_B * P]` (each entry's `P` values side by side) or, for an image
    part, `[N, h, w, c_B * P]`.

    Examples:
        NICE's additive coupling is `Coupling` of the additive transformer:

        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> mask = tn.partition_mask("halves", (4,))
        >>> b = tn.Coupling(lambda x_a: 10.0 * x_a, mask, tn.Additive())
        >>> b.forward(np.float32([[1.0, 2.0, 3.0, 4.0]])).numpy()
        array([[ 1.,  2., 13., 24.]], dtype=float32)
    """

    def __init__(self, params_fn: Callable[..., Any], mask: ArrayLike,
                 transformer: str | Transformer, validate_args: bool = False,
                 name: str = "coupling", context: TensorLike | None = None) -> None:
        """Builds the bijector.

        Args:
          params_fn: callable or Keras layer as described above.
          mask: boolean (or 0/1) array of the event shape; `True` marks the
            conditioning part.
          transformer: a `tfp_nice.Transformer`, or a built-in's name
            (`"additive"`, `"affine"`, `"spline"`, with default options).
          validate_args: if `True`, calls assert that the parameters are finite.
          name: name of the bijector.
          context: `None`, or a tensor `[N, ...]` the network is also given, as
            `params_fn(x_a, context=context)`.

        Raises:
          TypeError: if `params_fn` is not callable or `transformer` is not a
            transformer.
          ValueError: for a bad mask or an unknown transformer name.
        """
        parameters = dict(locals())
        super().__init__(params_fn, "params_fn", mask, transformer, validate_args,
                         parameters, name, context)

    @property
    def params_fn(self) -> Callable[..., Any]:
        """The network that gives the transformer's parameters from part A."""
        return self._fn


def _stacked(params):
    """Parameters as one `[N, *shape_b, P]` tensor (a tuple of parts stacked last)."""
    return tf.stack(params, -1) if isinstance(params, tuple) else params


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

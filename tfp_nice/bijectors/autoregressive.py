"""The autoregressive bijector: every entry mapped by a transformer given the entries before it."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice import transformers
from tfp_nice._types import TensorLike
from tfp_nice.bijectors import _checks, _tracking
from tfp_nice.bijectors._coupling import LogDetWithResult
from tfp_nice.transformers import Transformer

__all__ = ["Autoregressive"]


class Autoregressive(LogDetWithResult, tfp.bijectors.Bijector):
    """An autoregressive map of any transformer (MAF, IAF, autoregressive splines).

    With `theta = params_fn(u)` autoregressive in `u` (its entry `i` depends on
    the entries before `i` in some order only: a `tfp_nice.MADE`) and the
    transformer `t`:

    * `inverse=False` (a MAF step; Papamakarios et al. 2017):
      `forward: y = t(x; theta(x))`, one pass; `inverse` solves
      `x = t^{-1}(y; theta(x))` entry by entry (`D` passes);
    * `inverse=True` (an IAF step; Kingma et al. 2016): the same map the other
      way round, `inverse: x = t(y; theta(y))` in one pass, `forward` entry by
      entry.

    In a flow, `forward` is `f` (data -> latent): a MAF step gives the density
    in one pass and samples entry by entry, an IAF step samples in one pass.
    The entry-by-entry direction runs `D` network passes in a `tf.while_loop`
    (after pass `k` the first `k` entries in the order are exact), so it works
    in a `tf.function` and a SavedModel. The log-det is the sum of the
    transformer's elementwise log-dets (the Jacobian is triangular in the
    order), computed with the result in one pass and cached with it.

    `params_fn(u)` is given `u` flattened to `[N, D]` (and `context=c` for a
    conditional step) and returns `[N, D, P]`, `[N, D * P]` (each entry's `P`
    values side by side) or, with `P = 1`, `[N, D]`, where `P` is the
    transformer's `params_per_entry`.

    Examples:
        A MAF step of the affine transformer over a fresh MADE is the identity:

        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> made = tn.MADE(3, params_per_entry=2, hidden_units=(8,))
        >>> b = tn.Autoregressive(made, "affine", (3,))
        >>> b.forward(np.float32([[1.0, 2.0, 3.0]])).numpy()
        array([[1., 2., 3.]], dtype=float32)
    """

    def __init__(self, params_fn: Callable[..., Any], transformer: str | Transformer,
                 event_shape: Sequence[int], inverse: bool = False,
                 validate_args: bool = False, name: str = "autoregressive",
                 context: TensorLike | None = None) -> None:
        """Builds the bijector.

        Args:
          params_fn: callable or Keras layer, as above.
          transformer: a `tfp_nice.Transformer`, or a built-in's name.
          event_shape: the shape of one event (flattened to `D` entries for
            `params_fn`).
          inverse: `False` for a MAF (forward in one pass), `True` for an IAF
            (inverse in one pass).
          validate_args: if `True`, calls assert that the parameters are finite.
          name: name of the bijector.
          context: `None`, or a tensor `[N, ...]` given to `params_fn` as
            `params_fn(u, context=context)`.

        Raises:
          TypeError: if `params_fn` is not callable or `transformer` is not a
            transformer.
          ValueError: for an empty or non-positive `event_shape`.
        """
        parameters = dict(locals())
        if not callable(params_fn):
            raise TypeError(f"params_fn must be a callable or a Keras layer, got "
                            f"{type(params_fn).__name__}.")
        event_shape = tuple(int(d) for d in event_shape)
        if not event_shape or any(d < 1 for d in event_shape):
            raise ValueError(f"{name}: event_shape must be positive ints. Received: "
                             f"event_shape={event_shape}")
        with tf.name_scope(name) as name:
            self._fn = params_fn
            self._transformer = transformers.get(transformer)
            self._event_shape_tuple = event_shape
            self._size = math.prod(event_shape)
            self._inverse_kind = bool(inverse)
            self._context = None if context is None else tf.convert_to_tensor(context)
            _tracking.build_layer(params_fn, (None, self._size))
            self._keras_variables = _tracking.backing_variables(params_fn)
            super().__init__(forward_min_event_ndims=len(event_shape),
                             is_constant_jacobian=False, validate_args=validate_args,
                             parameters=parameters, name=name)

    @property
    def transformer(self) -> Transformer:
        """The elementwise map each entry undergoes (a `tfp_nice.Transformer`)."""
        return self._transformer

    @property
    def params_fn(self) -> Callable[..., Any]:
        """The autoregressive network that gives the transformer's parameters."""
        return self._fn

    @property
    def inverse_autoregressive(self) -> bool:
        """`True` for an IAF (inverse in one pass), `False` for a MAF (forward in one)."""
        return self._inverse_kind

    @property
    def constant_log_det(self) -> bool:
        """Whether the log-det is the same at every input (the transformer's says)."""
        return self._transformer.constant_log_det

    @property
    def context(self) -> tf.Tensor | None:
        """The context the network is given (`params_fn(u, context=c)`), or `None`."""
        return self._context

    def parameters_given(self, u: tf.Tensor) -> tf.Tensor:
        """The transformer's parameters `[N, D, P]` from the network on `u` (`[N, D]`)."""
        out = self._fn(u) if self._context is None else self._fn(u, context=self._context)
        out = tf.convert_to_tensor(out)
        policy = getattr(self._fn, "dtype_policy", None)
        if policy is not None and policy.compute_dtype != policy.variable_dtype:
            out = tf.cast(out, u.dtype)
        if out.dtype != u.dtype:
            raise TypeError(f"{self.name}: the network's output has dtype {out.dtype.name} "
                            f"for an input of dtype {u.dtype.name}; build the network in "
                            f"{u.dtype.name}.")
        d, p = self._size, self._transformer.params_per_entry
        accepted = [(d, p), (d * p,)] + ([(d,)] if p == 1 else [])
        if tuple(out.shape[1:]) not in accepted:
            forms = " or ".join("[batch, " + ", ".join(map(str, a)) + "]" for a in accepted)
            raise ValueError(f"{self.name}: the network must return {forms} ({p} raw values "
                             f"per entry for {self._transformer!r}), got shape "
                             f"{tuple(out.shape)}.")
        params = tf.reshape(out, (-1, d, p))
        if self.validate_args:
            params = tf.debugging.assert_all_finite(
                params, f"{self.name}: the network's parameters are not finite")
        return params

    def _flat(self, t, what):
        _checks.check_floating_input(t, None, self.name)
        _checks.check_event_shape(t, self._event_shape_tuple, self.name, what)
        k = len(self._event_shape_tuple)
        batch_shape = tf.shape(t)[:tf.rank(t) - k]
        return tf.reshape(t, (-1, self._size)), batch_shape

    def _one_pass(self, u, apply):
        """`apply(u, theta(u))` summed: `(value, sum of the log-dets)`."""
        value, log_det = apply(u, self.parameters_given(u))
        return value, tf.reduce_sum(log_det, -1)

    def _solve(self, target, apply):
        """`u` with `u = apply(target, theta(u))`, by `D` passes from zero; the last pass's
        parameters are exact (each entry's depend on the entries before it only)."""

        def body(i, u, log_det):
            value, elementwise = apply(target, self.parameters_given(u))
            return i + 1, value, tf.reduce_sum(elementwise, -1)

        start = (tf.constant(0), tf.zeros_like(target), tf.zeros_like(target[:, 0]))
        _, u, log_det = tf.while_loop(lambda i, u, log_det: i < self._size, body, start,
                                      maximum_iterations=self._size)
        return u, log_det

    def _map(self, t, what, inverse):
        """`(t mapped, forward log-det of shape batch)`."""
        flat, batch_shape = self._flat(t, what)
        t_forward, t_inverse = self._transformer.forward, self._transformer.inverse
        if not self._inverse_kind:
            if not inverse:  # y = t(x; theta(x))
                out, fldj = self._one_pass(flat, t_forward)
            else:  # x = t^{-1}(y; theta(x)); the inverse's log-det is -fldj
                out, ildj = self._solve(flat, t_inverse)
                fldj = -ildj
        elif not inverse:  # y = t^{-1}(x; theta(y))
            out, fldj = self._solve(flat, t_inverse)
        else:  # x = t(y; theta(y)); its log-det is the inverse's
            out, ildj = self._one_pass(flat, t_forward)
            fldj = -ildj
        return tf.reshape(out, tf.shape(t)), tf.reshape(fldj, batch_shape)

    def _constant(self, t, what):
        _, batch_shape = self._flat(t, what)
        p = self._transformer.params_per_entry
        _, log_det = self._transformer.forward(tf.zeros((1, self._size), t.dtype),
                                               tf.zeros((1, self._size, p), t.dtype))
        value = tf.reduce_sum(log_det)
        value = -value if self._inverse_kind else value
        return tf.broadcast_to(value, batch_shape)

    def _forward_log_det_jacobian(self, x):
        if self.constant_log_det:  # no network call
            return self._constant(x, "x")
        return self._map(x, "x", False)[1]

    def _inverse_log_det_jacobian(self, y):
        if self.constant_log_det:
            return -self._constant(y, "y")
        return -self._map(y, "y", True)[1]

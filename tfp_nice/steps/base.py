"""Flow steps: Keras layers that own one step's weights and hand out its bijector.

A flow is a list of steps in the order NICE's `f` (data -> latent) applies them.
Each step owns its weights (Keras variables or sublayers, so `model.fit`, `.keras`
saving and `summary()` see them), and every step has the same two methods:
`bijector(context=None)` returns its pure bijector over them (whose `forward` is
the step's part of `f`), and `adapt(h, context=None)` sets any data-dependent
start from the step's input `h` (Keras's `Normalization.adapt` is the naming
precedent) and returns `h` mapped through the step. A conditional step binds
the context rows it is given; an unconditional one ignores them, so whatever
walks the steps passes the flow's context to each and never asks which kind a
step is. Steps that need no start just map.

The flow's own weights are read without Keras's autocast: under a
mixed-precision policy only the coupling networks compute in half precision.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice._types import TensorLike

__all__ = ["FlowStep", "check_batch", "check_chain", "check_context_shape",
           "context_shape_of", "spread", "under_policy", "walk"]

tfb = tfp.bijectors

_EPS = 1e-8  # guards entries that are constant in the batch (std 0)


def spread(h, axes=(0,)):
    """Standard deviation of a batch over `axes` (the batch axis; with the pixel axes too for
    one value per channel)."""
    return tf.sqrt(tf.math.reduce_variance(h, axis=list(axes)) + tf.constant(_EPS, h.dtype))


def check_batch(h, event_shape, name):
    h = tf.convert_to_tensor(h)
    if h.shape.rank != len(event_shape) + 1 or tuple(h.shape[1:]) != tuple(event_shape) \
            or h.shape[0] is not None and h.shape[0] < 2:
        raise ValueError(f"{name}.adapt needs a batch of at least 2 examples of shape "
                         f"{tuple(event_shape)}. Received: shape={tuple(h.shape)}")
    return h


class FlowStep(keras.layers.Layer):
    """Base of the steps: `bijector(context=None)` for `f`'s direction (data -> latent),
    `adapt(h, context=None)` to start from data.

    A step says what a model needs to know about it, so that the model asks the
    steps instead of its own flags:

    * `event_shape`, the shape of one input, and `output_event_shape`, the
      shape of one output (the same, unless the step reshapes, as a squeeze);
    * `needs_data`: whether `adapt` sets weights from data (ActNorm, the
      rescaling's data start), which `fit` then does once before training;
    * `constant_log_det`: whether the log-determinant is the same at every
      input (what an exact `entropy` needs);
    * `affine`: whether the step is an affine map (TFP's
      `is_constant_jacobian`, which lets TFP push the prior's moments through);
    * `input_range`: `None`, or the `(low, high)` the inputs must lie in
      (the logit step's `[0, 1]`), which `fit` checks on arrays when the step
      comes first;
    * `substeps`: the steps it holds and runs itself (a factor-out's), which
      whatever walks the whole flow (name checks) also visits;
    * `context_shape`: `None`, or the shape of one row of the context a
      conditional step is given.

    The protocol, the same for every step: `bijector(context=None)` and
    `adapt(h, context=None)`. A conditional step needs the context rows
    `(N, *context_shape)` and binds them; an unconditional step ignores the
    context it is given. A subclass of your own writes these two methods
    (`adapt` defaults to mapping `h`); it works in conditional and
    unconditional flows alike. A subclass written for tfp_nice 0.1.0, whose
    `bijector(self)` or `adapt(self, h)` takes no context, is wrapped once
    when the class is defined so that it takes and ignores one (with a
    `DeprecationWarning`).
    """

    constant_log_det = True
    affine = True
    input_range: tuple[float, float] | None = None

    def __init__(self, event_shape: Sequence[int], **kwargs: Any) -> None:
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.event_shape = tuple(int(d) for d in event_shape)
        if not self.event_shape or any(d < 1 for d in self.event_shape):
            raise ValueError(f"{type(self).__name__} needs an event_shape of positive ints. "
                             f"Received: event_shape={tuple(event_shape)}")
        self.num_dims = int(np.prod(self.event_shape))

    @property
    def output_event_shape(self) -> tuple[int, ...]:
        """The shape of one output of the step (of `f`'s direction)."""
        return self.event_shape

    @property
    def needs_data(self) -> bool:
        """Whether `adapt` sets any weight from data."""
        return False

    @property
    def context_shape(self) -> tuple[int, ...] | None:
        """The shape of one context row this step is conditioned on; `None` if it is not."""
        return None

    @property
    def substeps(self) -> list[FlowStep]:
        """The steps this step holds and runs on part of its input (none for most)."""
        return []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method in ("bijector", "adapt"):
            own = cls.__dict__.get(method)
            if own is not None and "context" not in inspect.signature(own).parameters:
                warnings.warn(f"{cls.__name__}.{method} takes no context=; every step's "
                              f"{method} takes context=None (ignored by an unconditional "
                              "step). It is wrapped to take and ignore one.",
                              DeprecationWarning, stacklevel=2)
                setattr(cls, method, _ignoring_context(own))

    def bijector(self, context: tf.Tensor | None = None) -> tfp.bijectors.Bijector:
        """The step's bijector over its current weights; `forward` is data -> latent.

        A conditional step binds `context` (rows `(N, *context_shape)`); an
        unconditional one ignores it."""
        raise NotImplementedError

    def adapt(self, h: ArrayLike, context: tf.Tensor | None = None) -> tf.Tensor:
        """Sets any data-dependent start from a batch `h` (given its `context` rows, for a
        conditional step); returns `h` mapped by the step."""
        return self.bijector(context).forward(h)

    def call(self, h: TensorLike, context: TensorLike | None = None) -> Any:
        return self.bijector(context).forward(h)

    def _context_given(self, context):
        """The context a step binds: `context` for a conditional step (an error without
        one), `None` for an unconditional step, which ignores it."""
        if self.context_shape is None:
            return None
        if context is None:
            raise ValueError(f"{self.name} is conditional (context_shape="
                             f"{self.context_shape}) and needs a context.")
        return context

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)[:1] + tuple(self.output_event_shape)

    def _flow_weight(self, name, shape, initializer, dtype=None, trainable=True):
        return self.add_weight(name=name, shape=shape, initializer=initializer, dtype=dtype,
                               trainable=trainable, autocast=False)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "event_shape": list(self.event_shape)}


def with_keras_objects(config, keys):
    """`config` with its entries at `keys` deserialized where they are Keras configs
    (a step's network and transformer), for `from_config`."""
    config = dict(config)
    for key in keys:
        if isinstance(config.get(key), dict):
            config[key] = keras.saving.deserialize_keras_object(config[key])
    return config


def under_policy(policy, factory, *args):
    """Calls `factory` with Keras's global dtype policy set to `policy`, then restores it,
    so that the layers it makes without a `dtype` compute as the step does."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        return factory(*args)
    finally:
        keras.config.set_dtype_policy(before)


def check_chain(steps: Sequence[FlowStep], name: str) -> list[FlowStep]:
    """`steps` as a list, or an error naming what is wrong: no steps, a step that is not a
    `FlowStep`, shapes that do not chain, repeated names."""
    steps = list(steps)
    if not steps:
        raise ValueError(f"{name} needs at least one step. Received: steps=[]")
    for k, step in enumerate(steps):
        if not isinstance(step, FlowStep):
            raise TypeError(f"{name}: step {k} is a {type(step).__name__}, not a "
                            "tfp_nice step (a FlowStep such as CouplingStep).")
    for before, after in zip(steps, steps[1:]):
        if tuple(before.output_event_shape) != tuple(after.event_shape):
            raise ValueError(
                f"{name}: step {before.name!r} returns events of shape "
                f"{tuple(before.output_event_shape)}, but the next step, {after.name!r}, "
                f"takes events of shape {tuple(after.event_shape)}.")
    names = [step.name for step in walk(steps)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{name}: step names must be unique (they name the bijectors); "
                         f"{', '.join(map(repr, repeated))} repeat.")
    return steps


def walk(steps: Sequence[FlowStep]):
    """Every step of `steps` and, after a step that holds steps of its own (a factor-out),
    those, depth first."""
    for step in steps:
        yield step
        yield from walk(step.substeps)


def check_context_shape(context_shape, name):
    """`context_shape` as a tuple of positive ints, `None` as `None`, or a clear error."""
    if context_shape is None:
        return None
    try:
        shape = tuple(int(d) for d in context_shape)
        ok = shape and all(d >= 1 and d == e for d, e in zip(shape, context_shape))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name}: context_shape must be a non-empty tuple of positive ints "
                         f"(the shape of one context row). Received: "
                         f"context_shape={context_shape!r}")
    return shape


def context_shape_of(steps, name, own=None):
    """The one context shape of the conditional steps among `steps` (walked with their
    substeps) and `own`, `None` if there are none; a `ValueError` if they disagree."""
    shapes = {tuple(step.context_shape): step.name for step in walk(steps)
              if step.context_shape is not None}
    if own is not None:
        shapes.setdefault(tuple(own), name)
    if len(shapes) > 1:
        listed = ", ".join(f"{n!r} {s}" for s, n in shapes.items())
        raise ValueError(f"{name}: the conditional steps take contexts of different shapes "
                         f"({listed}); a flow has one context.")
    return next(iter(shapes), None)


def _ignoring_context(method):
    """`method(self, *args)` as `method(self, *args, context=None)`, the context ignored
    (given by keyword, or positionally after the method's own arguments)."""
    arity = len(inspect.signature(method).parameters) - 1  # without self

    @functools.wraps(method)
    def wrapped(self, *args, context: TensorLike | None = None):
        return method(self, *args[:arity])
    return wrapped

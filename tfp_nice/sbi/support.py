"""A prior's support as a flow step: the prior's default event-space bijector, over flat
parameter rows, and a way to save it with Keras.

A posterior flow lives in the unconstrained space; the last map of `g` (latent -> data) is
the prior's `experimental_default_event_space_bijector`, so every sample lies in the prior's
support and `log_prob` is the density there (the bijector's log-det included). Parameters
are flat rows: a prior whose event is a structure (a joint distribution's dict or list of
parts) has its parts flattened and concatenated in `tf.nest.flatten` order
(`flatten_parameters` and `unflatten_parameters` convert)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.steps.base import FlowStep, check_batch

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["FlatSupport", "SupportStep", "bijector_config", "bijector_from_config",
           "flatten_parameters", "parameter_layout", "part_support", "prior_support", "unflatten_parameters"]


# --- a bijector's config ----------------------------------------------------------------

def _encode(value: Any, where: str) -> Any:
    if isinstance(value, tfb.Bijector):
        return bijector_config(value, where)
    if isinstance(value, (list, tuple)) and any(isinstance(v, tfb.Bijector) for v in value):
        return {"__list__": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict) and any(isinstance(v, tfb.Bijector) for v in value.values()):
        return {"__dict__": {k: _encode(v, f"{where}.{k}") for k, v in value.items()}}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, tf.DType):
        return {"__dtype__": value.name}
    if isinstance(value, tf.TensorShape):
        return {"__shape__": value.as_list()}
    if isinstance(value, (tf.Variable, keras.Variable)):
        raise NotImplementedError(f"{where} is a variable; a support with trainable "
                                  "parameters cannot be saved.")
    if isinstance(value, (int, float, np.ndarray, np.generic, tf.Tensor, list, tuple)):
        array = np.asarray(value)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                         or array.dtype == bool):
            raise NotImplementedError(f"{where} = {value!r} is not a number or an array.")
        return {"__array__": array.tolist(), "dtype": array.dtype.name}
    raise NotImplementedError(f"{where} = {value!r} cannot be saved.")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            return np.asarray(value["__array__"], dtype=value["dtype"])
        if "__dtype__" in value:
            return tf.as_dtype(value["__dtype__"])
        if "__shape__" in value:
            return tf.TensorShape(value["__shape__"])
        if "__list__" in value:
            return [_decode(v) for v in value["__list__"]]
        if "__dict__" in value:
            return {k: _decode(v) for k, v in value["__dict__"].items()}
        if "class_name" in value:
            return bijector_from_config(value)
    return value


def bijector_config(bijector: tfp.bijectors.Bijector, where: str = "the bijector") -> dict[str, Any]:
    """A JSON-ready record of a TFP bijector built from public `tfb` classes and constant
    parameters (numbers, arrays, other such bijectors), which `bijector_from_config`
    rebuilds; `NotImplementedError` naming the part that cannot be recorded otherwise."""
    cls = type(bijector)
    if getattr(tfb, cls.__name__, None) is not cls:
        raise NotImplementedError(f"{where} is a {cls.__name__}, which is not a public "
                                  "tfp.bijectors class.")
    params = {key: _encode(value, f"{where}.{key}")
              for key, value in bijector.parameters.items()
              if key not in ("name", "validate_args", "parameters")}
    return {"class_name": cls.__name__, "parameters": params}


def bijector_from_config(config: dict[str, Any]) -> tfp.bijectors.Bijector:
    """The bijector `bijector_config` recorded."""
    cls = getattr(tfb, config["class_name"], None)
    if not (isinstance(cls, type) and issubclass(cls, tfb.Bijector)):
        raise ValueError(f"{config['class_name']!r} is not a tfp.bijectors class.")
    return cls(**{key: _decode(value) for key, value in config["parameters"].items()})


# --- the prior's parts as flat rows -----------------------------------------------------

def _is_structured(prior):
    return not isinstance(prior.event_shape, tf.TensorShape)


def _split_rows(rows, shapes, structure):
    """Flat rows `(..., D)` as parts of `shapes`, packed as `structure` (`None`: one part)."""
    parts = tf.split(rows, [math.prod(s) for s in shapes], axis=-1)
    parts = [tf.reshape(p, tf.concat([tf.shape(p)[:-1], s], 0)) for p, s in zip(parts, shapes)]
    return parts[0] if structure is None else tf.nest.pack_sequence_as(structure, parts)


def parameter_layout(prior: tfp.distributions.Distribution) -> list[tuple[int, ...]]:
    """The event shapes of the prior's parts, in `tf.nest.flatten` order (one part for a
    prior with a single event)."""
    shapes = tf.nest.flatten(prior.event_shape) if _is_structured(prior) else [
        prior.event_shape]
    layout = []
    for shape in shapes:
        shape = tf.TensorShape(shape)
        if not shape.is_fully_defined():
            raise ValueError(f"the prior's event shape {prior.event_shape} is not fully known.")
        layout.append(tuple(int(d) for d in shape))
    return layout


def flatten_parameters(prior: tfp.distributions.Distribution, theta: Any) -> np.ndarray:
    """Parameters in the prior's structure (a dict or list of arrays with a leading batch
    axis, or one array) as flat rows `(N, D)`, parts in `tf.nest.flatten` order."""
    layout = parameter_layout(prior)
    parts = tf.nest.flatten(theta) if _is_structured(prior) else [theta]
    if len(parts) != len(layout):
        raise ValueError(f"the prior has {len(layout)} parts, but the parameters hold "
                         f"{len(parts)}.")
    rows = []
    for part, shape in zip(parts, layout):
        part = np.asarray(part)
        if tuple(part.shape[1:]) != shape:
            raise ValueError(f"a part of the parameters has shape {part.shape}; the prior's "
                             f"part needs (N, *{shape}).")
        rows.append(part.reshape(len(part), -1))
    return np.concatenate(rows, axis=1)


def unflatten_parameters(prior: tfp.distributions.Distribution, rows: Any) -> Any:
    """Flat rows `(..., D)` back in the prior's structure."""
    return _split_rows(tf.convert_to_tensor(rows), parameter_layout(prior),
                       prior.event_shape if _is_structured(prior) else None)


def part_support(dist: tfp.distributions.Distribution) -> tfp.bijectors.Bijector:
    """A distribution's default event-space bijector, with `tfd.Sample` and
    `tfd.Independent` over a distribution whose bijector acts entry by entry replaced by
    that bijector (the same map and log-det over the event, but a public class that
    `bijector_config` can record)."""
    bijector = dist.experimental_default_event_space_bijector()
    inner = dist
    while isinstance(inner, (tfd.Sample, tfd.Independent)):
        inner = inner.distribution
    if inner is not dist and bijector is not None:
        elementwise = inner.experimental_default_event_space_bijector()
        if (elementwise is not None and elementwise.forward_min_event_ndims == 0
                and getattr(tfb, type(elementwise).__name__, None) is type(elementwise)):
            return elementwise
    return bijector


def prior_support(prior: tfp.distributions.Distribution) -> tfp.bijectors.Bijector:
    """The prior's default event-space bijector, made a constant one where the prior is a
    joint distribution whose parts' supports do not depend on one another (so that it can
    be saved); else the joint distribution's own."""
    bijector = prior.experimental_default_event_space_bijector()
    if bijector is None:
        raise ValueError(f"the prior {prior.name!r} has no default event-space bijector, so "
                         "its support is unknown; give a prior that has one.")
    if not isinstance(prior, tfd.JointDistribution):
        return bijector
    found = []
    for seed in ((1, 2), (3, 4)):
        dists, _ = prior.sample_distributions(seed=seed)
        parts = tf.nest.map_structure(
            part_support, dists, check_types=False) if isinstance(dists, dict) else [
            part_support(d) for d in dists]
        try:
            config = tf.nest.map_structure(bijector_config, parts)
        except NotImplementedError:
            return bijector
        found.append((parts, config))
    if found[0][1] != found[1][1]:
        return bijector  # a part's support depends on another part's value
    parts = found[0][0]
    if isinstance(parts, dict):  # in the prior's event order
        parts = {key: parts[key] for key in prior.event_shape}
    elif isinstance(prior.event_shape, tuple) and not isinstance(parts, tuple):
        parts = tuple(parts)
    return tfb.JointMap(parts)


class FlatSupport(tfp.bijectors.Bijector):
    """A prior's event-space bijector over flat rows: unconstrained rows `(N, D_u)` to
    parameter rows `(N, D)`, the parts split, reshaped, mapped and concatenated."""

    def __init__(self, bijector: tfp.bijectors.Bijector, layout: Sequence[Sequence[int]],
                 structure: Any = None, name: str = "flat_support") -> None:
        parameters = dict(locals())
        self._bijector = bijector
        self._layout = [tuple(int(d) for d in s) for s in layout]
        self._structure = structure  # None: one part
        shapes = [tf.TensorShape(s) for s in self._layout]
        event = shapes[0] if structure is None else tf.nest.pack_sequence_as(structure, shapes)
        inner = bijector.inverse_event_shape(event)
        self._unconstrained = [tuple(int(d) for d in s) for s in (
            [inner] if structure is None else tf.nest.flatten(inner))]
        self._ndims = [len(s) for s in self._unconstrained]
        super().__init__(forward_min_event_ndims=1, validate_args=False,
                         is_constant_jacobian=bool(bijector.is_constant_jacobian),
                         parameters=parameters, name=name)

    @property
    def unconstrained_size(self) -> int:
        return sum(math.prod(s) for s in self._unconstrained)

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self._layout)

    def _split(self, rows, shapes):
        return _split_rows(rows, shapes, self._structure)

    def _join(self, parts, shapes):
        flat = [parts] if self._structure is None else tf.nest.flatten(parts)
        rows = [tf.reshape(p, tf.concat([tf.shape(p)[:tf.rank(p) - len(s)], [-1]], 0))
                for p, s in zip(flat, shapes)]
        return tf.concat(rows, axis=-1) if len(rows) > 1 else rows[0]

    def _ndims_structure(self, ndims):
        return ndims[0] if self._structure is None else tf.nest.pack_sequence_as(
            self._structure, ndims)

    def _forward(self, u):
        return self._join(self._bijector.forward(self._split(u, self._unconstrained)),
                          self._layout)

    def _inverse(self, theta):
        return self._join(self._bijector.inverse(self._split(theta, self._layout)),
                          self._unconstrained)

    def _forward_log_det_jacobian(self, u):
        return self._bijector.forward_log_det_jacobian(
            self._split(u, self._unconstrained), self._ndims_structure(self._ndims))

    def _inverse_log_det_jacobian(self, theta):
        return self._bijector.inverse_log_det_jacobian(
            self._split(theta, self._layout),
            self._ndims_structure([len(s) for s in self._layout]))

    def _forward_event_shape(self, shape):
        return tf.TensorShape([self.size])

    def _inverse_event_shape(self, shape):
        return tf.TensorShape([self.unconstrained_size])

    def _forward_event_shape_tensor(self, shape):
        return tf.constant([self.size], tf.int32)

    def _inverse_event_shape_tensor(self, shape):
        return tf.constant([self.unconstrained_size], tf.int32)


def _structure_config(structure):
    if structure is None:
        return None
    if isinstance(structure, dict):
        return {"dict": list(structure)}
    return {"list": len(structure)}


def _structure_from_config(config):
    if config is None:
        return None
    if "dict" in config:
        return {key: None for key in config["dict"]}
    return [None] * int(config["list"])


@keras.saving.register_keras_serializable(package="tfp_nice")
class SupportStep(FlowStep):
    """The prior's support as the first step of `f` (data -> latent): parameter rows in
    the support to unconstrained rows, by the inverse of the prior's event-space bijector.

    Its `bijector()` (`f`'s direction) inverts that bijector over flat rows
    (`FlatSupport`), so the generator ends in the bijector itself: a flow so built samples only inside the support and its `log_prob` includes the
    bijector's log-det. Saved with Keras when the bijector is made of public
    `tfp.bijectors` classes with constant parameters (`bijector_config`); a prior whose
    supports depend on one another works, trains and exports, but cannot be saved to
    `.keras`.
    """

    def __init__(self, bijector: tfp.bijectors.Bijector | dict[str, Any],
                 layout: Sequence[Sequence[int]], structure: Any = None,
                 **kwargs: Any) -> None:
        """Builds the step.

        Args:
          bijector: the prior's event-space bijector (unconstrained -> support, in the
            prior's structure), or its `bijector_config` record.
          layout: the event shapes of the prior's parts, in `tf.nest.flatten` order.
          structure: `None` for a prior with one event, else a dict or list with the
            prior's parts (only its keys or length are used).
          **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`).
        """
        if isinstance(bijector, dict):
            bijector = bijector_from_config(bijector)
        flat = FlatSupport(bijector, layout, structure)
        kwargs.setdefault("name", "support")
        super().__init__((flat.size,), **kwargs)
        self.support = bijector
        self.layout = [tuple(s) for s in flat._layout]
        self.structure = structure
        self._flat = flat
        self.built = True

    @property
    def output_event_shape(self) -> tuple[int, ...]:
        return (self._flat.unconstrained_size,)

    def bijector(self, context: tf.Tensor | None = None) -> tfp.bijectors.Bijector:
        return tfb.Invert(self._flat, name=self.name)  # f: the support -> unconstrained

    def adapt(self, h: Any, context: tf.Tensor | None = None) -> tf.Tensor:
        h = check_batch(h, self.event_shape, self.name)
        return self._flat.inverse(h)

    def get_config(self) -> dict[str, Any]:
        try:
            support = bijector_config(self.support, "the prior's support bijector")
        except NotImplementedError as err:
            raise NotImplementedError(
                f"{self.name}: {err} Such a posterior works and exports (`export`), but "
                "cannot be saved to .keras.") from None
        config = super().get_config()
        config.pop("event_shape", None)
        return {**config, "bijector": support, "layout": [list(s) for s in self.layout],
                "structure": _structure_config(self.structure)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SupportStep:
        config = dict(config)
        config["structure"] = _structure_from_config(config.get("structure"))
        return cls(**config)

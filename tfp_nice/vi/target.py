"""What a variational surrogate needs to know of its target: its parts, its support, its
dtype and its (unnormalized) log-density.

A target is a pinned joint distribution (`model.experimental_pin(y=...)`: dicts, lists,
named parts), any `tfd.Distribution`, or a distribution-like object with `event_shape`,
`dtype`, an event-space bijector (`experimental_default_event_space_bijector()`, or an
Inference Gym model's `default_event_space_bijector`) and a log-density
(`unnormalized_log_prob` or `log_prob`)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.sbi.support import bijector_config, part_support, prior_support

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["target_dtype", "target_layout", "target_log_prob_fn", "target_structure",
           "target_support"]


def _what(target: Any) -> str:
    return getattr(target, "name", None) or type(target).__name__


def target_structure(target: Any) -> Any:
    """`None` for a target with one event, else its event structure (a dict or list)."""
    shape = getattr(target, "event_shape", None)
    if shape is None:
        raise TypeError(f"the target {_what(target)!r} has no event_shape; give a pinned "
                        "joint distribution, a tfd.Distribution, or an object with "
                        "event_shape, dtype, an event-space bijector and a log-density.")
    if isinstance(shape, tf.TensorShape) or (isinstance(shape, (list, tuple)) and all(
            isinstance(d, (int, np.integer)) for d in shape)):
        return None
    return shape


def target_layout(target: Any) -> list[tuple[int, ...]]:
    """The event shapes of the target's parts, in `tf.nest.flatten` order."""
    structure = target_structure(target)
    shapes = [target.event_shape] if structure is None else tf.nest.flatten(structure)
    layout = []
    for shape in shapes:
        shape = tf.TensorShape(shape)
        if not shape.is_fully_defined():
            raise ValueError(f"the target {_what(target)!r} has a part of event shape "
                             f"{shape}, which is not fully known.")
        layout.append(tuple(int(d) for d in shape))
    return layout


def target_dtype(target: Any) -> tf.DType:
    """The one floating dtype of all the target's parts."""
    dtypes = {tf.as_dtype(d) for d in tf.nest.flatten(target.dtype)}
    if len(dtypes) != 1:
        raise ValueError(f"the target {_what(target)!r} mixes dtypes {sorted(d.name for d in dtypes)}; "
                         "a surrogate flow has one dtype.")
    dtype = dtypes.pop()
    if not dtype.is_floating:
        raise ValueError(f"the target {_what(target)!r} has dtype {dtype.name}; a surrogate "
                         "flow needs continuous (floating) parameters.")
    return dtype


def target_log_prob_fn(target: Any) -> Callable[[Any], tf.Tensor]:
    """The target's unnormalized log-density of a value in its structure."""
    fn = getattr(target, "unnormalized_log_prob", None) or getattr(target, "log_prob", None)
    if not callable(fn):
        raise TypeError(f"the target {_what(target)!r} has neither unnormalized_log_prob "
                        "nor log_prob.")
    return fn


def _pinned_parts(target):
    """A pinned joint distribution's parts' bijectors, where they do not depend on other
    parts' values (checked at two draws); `None` otherwise."""
    shape = target.event_shape
    if not isinstance(shape, dict):
        return None
    found = []
    for seed in ((1, 2), (3, 4)):
        try:
            dists, _ = target.distribution.sample_distributions(seed=seed, **target.pins)
        except (TypeError, ValueError):
            return None
        if hasattr(dists, "_asdict"):
            dists = dists._asdict()
        if not isinstance(dists, dict) or not all(key in dists for key in shape):
            return None
        parts = {key: part_support(dists[key]) for key in shape}
        try:
            config = {key: bijector_config(b) for key, b in parts.items()}
        except NotImplementedError:
            return None
        found.append((parts, config))
    return found[0][0] if found[0][1] == found[1][1] else None


def target_support(target: Any) -> tfp.bijectors.Bijector:
    """The target's event-space bijector (unconstrained -> its support, in its structure),
    made of constant public bijectors where the parts' supports do not depend on one
    another, so that a surrogate over it can be saved."""
    if isinstance(target, tfd.Distribution):
        return prior_support(target)
    if hasattr(target, "pins") and hasattr(target, "distribution"):  # a pinned joint
        parts = _pinned_parts(target)
        if parts is not None:
            return tfb.JointMap(parts)
    make = getattr(target, "experimental_default_event_space_bijector", None)
    bijector = make() if callable(make) else getattr(target, "default_event_space_bijector",
                                                     None)
    if bijector is None:
        raise ValueError(f"the target {_what(target)!r} has no default event-space "
                         "bijector, so its support is unknown.")
    if not isinstance(bijector, tfb.Bijector):  # an Inference Gym model's: one per part
        bijector = tfb.JointMap(bijector)
    return bijector

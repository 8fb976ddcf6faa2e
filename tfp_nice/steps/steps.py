"""Flow steps: Keras layers that own one step's weights and hand out its bijector.

A flow is a list of steps in the order NICE's `f` (data -> latent) applies them.
Each step owns its weights (Keras variables or sublayers, so `model.fit`, `.keras`
saving and `summary()` see them), returns its pure bijector over them with
`bijector()` (whose `forward` is the step's part of `f`), and has `adapt(h)`,
which sets any data-dependent start from the step's input `h` (Keras's
`Normalization.adapt` is the naming precedent) and returns `h` mapped through
the step. Steps that need no start just map.

The flow's own weights are read without Keras's autocast: under a
mixed-precision policy only the coupling networks compute in half precision.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice._validation import check_choice, check_int
from tfp_nice.bijectors import (
    COUPLINGS,
    ActNorm,
    LULinear,
    Permutation,
    Rescaling,
    Squeeze,
    check_mask,
    lu_linear_init,
    squeezed_shape,
)
from tfp_nice.bijectors._partition import MaskPartition
from tfp_nice.networks import CouplingMLP

__all__ = ["ActNormStep", "CouplingStep", "FlowStep", "LULinearStep", "LogitStep",
           "PermutationStep", "RescalingStep", "SqueezeStep", "check_logit_alpha"]

tfb = tfp.bijectors

_EPS = 1e-8  # guards entries that are constant in the batch (std 0)


def _spread(h):
    """Per-entry standard deviation of a batch, over its first axis."""
    return tf.sqrt(tf.math.reduce_variance(h, axis=0) + tf.constant(_EPS, h.dtype))


def _check_batch(h, event_shape, name):
    h = tf.convert_to_tensor(h)
    if h.shape.rank != len(event_shape) + 1 or tuple(h.shape[1:]) != tuple(event_shape) \
            or h.shape[0] is not None and h.shape[0] < 2:
        raise ValueError(f"{name}.adapt needs a batch of at least 2 examples of shape "
                         f"{tuple(event_shape)}. Received: shape={tuple(h.shape)}")
    return h


class FlowStep(keras.layers.Layer):
    """Base of the steps: `bijector()` for `f`'s direction, `adapt(h)` to start from data.

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
      comes first.
    """

    constant_log_det = True
    affine = True
    input_range = None

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

    def bijector(self) -> tfb.Bijector:
        """The step's bijector over its current weights; `forward` is data -> latent."""
        raise NotImplementedError

    def adapt(self, h: ArrayLike) -> tf.Tensor:
        """Sets any data-dependent start from a batch `h`; returns `h` mapped by the step."""
        return self.bijector().forward(h)

    def call(self, h):
        return self.bijector().forward(h)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:1] + tuple(self.output_event_shape)

    def _flow_weight(self, name, shape, initializer, dtype=None, trainable=True):
        return self.add_weight(name=name, shape=shape, initializer=initializer, dtype=dtype,
                               trainable=trainable, autocast=False)

    def get_config(self):
        return {**super().get_config(), "event_shape": list(self.event_shape)}


def _under_policy(policy, factory, *args):
    """Calls `factory` with Keras's global dtype policy set to `policy`, then restores it,
    so that the layers it makes without a `dtype` compute as the step does."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        return factory(*args)
    finally:
        keras.config.set_dtype_policy(before)


@keras.saving.register_keras_serializable(package="tfp_nice")
class CouplingStep(FlowStep):
    """An additive (NICE) or affine (RealNVP) coupling whose network this step owns.

    `mask` (`True` = conditioning part A) splits the event; the network maps
    part A to what changes part B: its shift (`coupling="additive"`), or its
    shift and log-scale (`"affine"`, a pair or one tensor holding both on its
    last axis). Part A arrives in the shape the mask gives it: a mask that
    picks channels of an `(h, w, c)` event (the `"channel"` partition) gives
    an image `(h, w, c_a)`, so a `keras.layers.Conv2D` stack can be the
    network; any other mask gives a flat vector of its `n_a` entries.

    Under a mixed-precision policy the network computes in half precision and
    its outputs come back to the flow's dtype (float32) before they are used.
    """

    constant_log_det = property(lambda self: self.coupling == "additive")
    affine = False

    def __init__(self, event_shape: Sequence[int], mask: ArrayLike,
                 hidden_units: Sequence[int] | None = None, coupling: str = "additive",
                 activation: str | Callable = "relu",
                 network: keras.layers.Layer | Callable[[tuple, tuple], keras.layers.Layer]
                 | None = None, **kwargs: Any) -> None:
        """Builds the step and its network's weights.

        Args:
          event_shape: shape of one input.
          mask: boolean array of `event_shape`, `True` = conditioning part.
          hidden_units: widths of the default network's hidden layers (a
            `CouplingMLP` whose last layer starts at zero, so a fresh step is
            the identity); leave `None` when giving `network`.
          coupling: `"additive"` or `"affine"`.
          activation: the default network's activation.
          network: instead of the default network, a Keras layer, or a factory
            `network(part_shape, output_shape) -> keras layer`, called with the
            shape of part A and the shape the network must return (part B's,
            with twice its last axis for an affine coupling; both without the
            batch axis), under the step's dtype policy (layers it makes without
            a `dtype` take the step's). Start its last layer at zero to start
            at the identity.
          **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`).

        Raises:
          ValueError: for a bad mask or coupling, or neither or both of
            `hidden_units` and `network`.
          TypeError: for a `network` that is not a Keras layer or a callable
            that returns one.
        """
        super().__init__(event_shape, **kwargs)
        self.mask = check_mask(mask, self.event_shape)
        self.coupling = check_choice(coupling, tuple(COUPLINGS), "coupling")
        partition = MaskPartition(self.mask)
        self.part_shape, part_b = partition.shape_a, partition.shape_b
        self.network_output_shape = (part_b if coupling == "additive"
                                     else part_b[:-1] + (2 * part_b[-1],))
        if (hidden_units is None) == (network is None):
            raise ValueError(f"{self.name}: give hidden_units (for the default CouplingMLP) "
                             "or network, not both. Received: hidden_units="
                             f"{hidden_units!r}, network={network!r}")
        self.hidden_units = None if hidden_units is None else tuple(int(u) for u in
                                                                     hidden_units)
        if network is None:
            network = CouplingMLP(self.hidden_units, int((~self.mask).sum()),
                                  activation=activation, affine=coupling == "affine",
                                  output_shape=part_b if len(part_b) > 1 else None,
                                  dtype=self.dtype_policy, name="network")
        elif not isinstance(network, keras.layers.Layer):
            if not callable(network):
                raise TypeError(f"{self.name}: network must be a Keras layer or a factory "
                                f"(part_shape, output_shape) -> layer. Received: {network!r}")
            made = _under_policy(self.dtype_policy, network, self.part_shape,
                                 self.network_output_shape)
            if not isinstance(made, keras.layers.Layer):
                raise TypeError(f"{self.name}: the network factory must return a Keras "
                                f"layer; it returned {type(made).__name__}.")
            network = made
        self.network = network
        if not self.network.built:
            self.network.build((None,) + tuple(self.part_shape))
        inputs = getattr(network, "inputs", None) or []
        allowed = (self.variable_dtype, self.compute_dtype)  # mixed: the network's half
        wrong = [t.dtype for t in inputs if t.dtype not in allowed]
        if wrong:  # a functional model casts its inputs to its Input's dtype
            raise ValueError(
                f"{self.name}: the network's keras.Input has dtype {wrong[0]}, so it would "
                f"round the {self.variable_dtype} part it is given; make it "
                f"keras.Input(..., dtype={self.variable_dtype!r}) or leave the Input out "
                "(the step builds the network for its part).")
        self.built = True

    def bijector(self):
        return COUPLINGS[self.coupling](self.network, self.mask, name=self.name)

    def get_config(self):
        config = {**super().get_config(), "mask": self.mask.tolist(),
                  "coupling": self.coupling}
        if self.hidden_units is not None:  # the default network, rebuilt from its sizes
            return {**config, "hidden_units": list(self.hidden_units),
                    "activation": keras.activations.serialize(self.network.activation)}
        return {**config, "network": keras.saving.serialize_keras_object(self.network)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("network"), dict):
            config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfp_nice")
class ActNormStep(FlowStep):
    """Glow's ActNorm: `y = (x + b) * exp(s)`, started from data to zero mean, unit variance."""

    needs_data = True

    def __init__(self, event_shape, **kwargs):
        super().__init__(event_shape, **kwargs)
        self.log_scale = self._flow_weight("log_scale", self.event_shape, "zeros")
        self.shift = self._flow_weight("shift", self.event_shape, "zeros")
        self.built = True

    def bijector(self):
        return ActNorm(self.log_scale, self.shift, name=self.name)

    def adapt(self, h):
        h = _check_batch(h, self.event_shape, self.name)
        self.shift.assign(-tf.reduce_mean(h, axis=0))
        self.log_scale.assign(-tf.math.log(_spread(h)))
        return self.bijector().forward(h)


@keras.saving.register_keras_serializable(package="tfp_nice")
class PermutationStep(FlowStep):
    """A fixed reordering of the flattened event, saved with the model."""

    def __init__(self, event_shape: Sequence[int], permutation: ArrayLike,
                 **kwargs: Any) -> None:
        super().__init__(event_shape, **kwargs)
        perm = np.asarray(permutation, dtype=np.int32)
        if perm.shape != (self.num_dims,) or not np.array_equal(np.sort(perm),
                                                                np.arange(self.num_dims)):
            raise ValueError(f"permutation must be a permutation of range({self.num_dims}). "
                             f"Received: permutation={perm.tolist()}")
        self.permutation = self._flow_weight(
            "permutation", (self.num_dims,), keras.initializers.Constant(perm), dtype="int32",
            trainable=False)
        self.built = True

    def bijector(self):
        return Permutation(self.permutation, self.event_shape, name=self.name)

    def get_config(self):
        return {**super().get_config(),
                "permutation": keras.ops.convert_to_numpy(self.permutation).tolist()}


@keras.saving.register_keras_serializable(package="tfp_nice")
class LULinearStep(FlowStep):
    """A learned invertible linear map in permuted LU form, started at a random rotation."""

    TRAINABLE = ("lower", "upper", "log_diag")

    def __init__(self, event_shape: Sequence[int], seed: int = 0, **kwargs: Any) -> None:
        super().__init__(event_shape, **kwargs)
        self.seed = int(seed)
        init = lu_linear_init(self.num_dims, self.seed)
        for key in ("lower", "upper", "log_diag", "sign", "permutation"):
            setattr(self, key, self._flow_weight(
                key, init[key].shape, keras.initializers.Constant(init[key]),
                dtype="int32" if key == "permutation" else None,
                trainable=key in self.TRAINABLE))
        self.built = True

    def bijector(self):
        return LULinear(self.lower, self.upper, self.log_diag, self.sign, self.permutation,
                        self.event_shape, name=self.name)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfp_nice")
class RescalingStep(FlowStep):
    """NICE's diagonal rescaling `h = exp(s) * h'`, the last step of `f`.

    `init="zeros"` is NICE's start (the identity); `init="data"` lets `adapt`
    set `s = log(target_std / std(h'))`, so that the latent has the prior's
    spread (`target_std`, a float or one per entry).
    """

    INITS = ("data", "zeros")

    def __init__(self, event_shape: Sequence[int], init: str = "zeros",
                 target_std: float | ArrayLike = 1.0, **kwargs: Any) -> None:
        super().__init__(event_shape, **kwargs)
        self.init = check_choice(init, self.INITS, "rescaling_init")
        self.target_std = np.broadcast_to(np.asarray(target_std, np.float64),
                                          self.event_shape).copy()
        self.log_scale = self._flow_weight("log_scale", self.event_shape, "zeros")
        self.built = True

    @property
    def needs_data(self):
        return self.init == "data"

    def bijector(self):
        return Rescaling(self.log_scale, name=self.name)

    def adapt(self, h):
        if self.init == "data":
            h = _check_batch(h, self.event_shape, self.name)
            target = tf.constant(self.target_std, h.dtype)
            self.log_scale.assign(tf.math.log(target / _spread(h)))
        return self.bijector().forward(h)

    def get_config(self):
        return {**super().get_config(), "init": self.init,
                "target_std": self.target_std.tolist()}


def check_logit_alpha(alpha):
    """`None`, or a number in `[0, 0.5)` as a float (the `logit_alpha` option)."""
    if alpha is None:
        return None
    try:
        number = float(alpha)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(alpha, bool) or not 0.0 <= number < 0.5:
        raise ValueError(f"logit_alpha must be None or a number in [0, 0.5). Received: "
                         f"logit_alpha={alpha!r}")
    return number


@keras.saving.register_keras_serializable(package="tfp_nice")
class LogitStep(FlowStep):
    """The logit preprocessing of RealNVP (Dinh et al. 2016, section 4.1), the first step of `f`.

    `h = logit(alpha + (1 - 2 alpha) x)` for data `x` in `[0, 1]` (dequantized
    images): it spreads the values piled up at 0 and 1 over the real line,
    where couplings model them better. Its log-det,
    `sum(log(1 - 2 alpha) - log(p) - log(1 - p))` with `p = alpha + (1 - 2 alpha) x`,
    is part of the flow's, so `log_prob` and bits/dim stay in data space,
    comparable with models without it. It has no weights. Outside
    `(-alpha / (1 - 2 alpha), 1 + alpha / (1 - 2 alpha))` the density is zero
    and, as for TFP's sigmoid-based distributions, `log_prob` is NaN. `fit`
    refuses arrays with values outside `[0, 1]`, and `adapt` a start sample
    with such values (a dataset, when the model starts from data).
    """

    constant_log_det = False  # it depends on x
    affine = False
    input_range = (0.0, 1.0)

    def __init__(self, event_shape: Sequence[int], alpha: float = 0.05,
                 **kwargs: Any) -> None:
        super().__init__(event_shape, **kwargs)
        if alpha is None:
            raise ValueError("LogitStep needs a number in [0, 0.5) for alpha. Received: "
                             "alpha=None")
        self.alpha = check_logit_alpha(alpha)
        self.built = True

    def bijector(self):
        # Chain applies right to left: squeeze [0, 1] into [alpha, 1 - alpha], then logit.
        dtype = self.variable_dtype  # the flow's dtype, under every policy
        return tfb.Chain([tfb.Invert(tfb.Sigmoid()),
                          tfb.Shift(tf.constant(self.alpha, dtype)),
                          tfb.Scale(tf.constant(1.0 - 2.0 * self.alpha, dtype))],
                         name=self.name)

    def adapt(self, h):
        h = tf.convert_to_tensor(h)
        low, high = float(tf.reduce_min(h)), float(tf.reduce_max(h))
        if not (low >= 0.0 and high <= 1.0):
            raise ValueError(f"logit_alpha needs data in [0, 1] (dequantized as (x + u) / "
                             f"levels); the data-dependent start's sample holds values from "
                             f"{low:g} to {high:g}.")
        return self.bijector().forward(h)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="tfp_nice")
class SqueezeStep(FlowStep):
    """RealNVP's squeeze, `(h, w, c) -> (h/f, w/f, c f^2)`: a step that changes the shape.

    It has no weights; after it, the next step's `event_shape` is this step's
    `output_event_shape`, and a channel split of it mixes neighbouring pixels.
    """

    def __init__(self, event_shape: Sequence[int], factor: int = 2, **kwargs: Any) -> None:
        super().__init__(event_shape, **kwargs)
        self.factor = check_int(factor, "factor", minimum=2)
        self._output_shape = squeezed_shape(self.event_shape, self.factor)
        self.built = True

    @property
    def output_event_shape(self):
        return self._output_shape

    def bijector(self):
        return Squeeze(self.factor, name=self.name)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}

"""The coupling step: an additive, affine or spline coupling and the network it owns."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import keras
from numpy.typing import ArrayLike

from tfp_nice._validation import check_choice
from tfp_nice.bijectors import COUPLINGS, check_mask
from tfp_nice.bijectors.spline_coupling import (DEFAULT_BINS, DEFAULT_TAIL_BOUND,
                                                check_spline_options, spline_parameter_count)
from tfp_nice.bijectors._partition import MaskPartition
from tfp_nice.networks import SCALES, CouplingConvNet, CouplingMLP
from tfp_nice.steps.base import FlowStep, check_context_shape, under_policy

__all__ = ["CouplingStep"]


@keras.saving.register_keras_serializable(package="tfp_nice")
class CouplingStep(FlowStep):
    """An additive (NICE), affine (RealNVP) or spline coupling whose network this step owns.

    `mask` (`True` = conditioning part A) splits the event; the network maps
    part A to what changes part B: its shift (`coupling="additive"`), its
    shift and log-scale (`"affine"`, a pair or one tensor holding both on its
    last axis), or the `3 * num_bins - 1` raw parameters per entry of part B
    of a monotone rational-quadratic spline on `[-tail_bound, tail_bound]`,
    the identity outside (`"spline"`, Neural Spline Flows; see
    `SplineCoupling`). Part A arrives in the shape the mask gives it: a mask that
    picks channels of an `(h, w, c)` event (the `"channel"` partition) gives
    an image `(h, w, c_a)`, so a `keras.layers.Conv2D` stack can be the
    network; any other mask gives a flat vector of its `n_a` entries.

    The network is one of: a `CouplingMLP` of `hidden_units` (any mask), a
    `CouplingConvNet` of `hidden_channels` (Glow's `3x3 -> 1x1 -> 3x3`, for a
    channel mask), or the user's `network`. For the first two, `scale` picks
    the affine log-scale: `"bounded"` (`scale * tanh(raw)`, a learned bound)
    or `"sigmoid"` (Glow's `log(sigmoid(raw + 2))`).

    Under a mixed-precision policy the network computes in half precision and
    its outputs come back to the flow's dtype (float32) before they are used.

    With `context_shape`, the step is conditional: `bijector(context=c)` binds
    the network to context rows `c` of shape `(N, *context_shape)`, which it
    is given beside part A (`network(x_a, context=c)`): the default dense
    network concatenates the flattened context to part A, the convolutional
    one broadcasts it over the image as constant feature maps. A network of
    your own must take the `context=` keyword.
    """

    constant_log_det = property(lambda self: self.coupling == "additive")
    affine = False

    def __init__(self, event_shape: Sequence[int], mask: ArrayLike,
                 hidden_units: Sequence[int] | None = None, coupling: str = "additive",
                 activation: str | Callable = "relu",
                 network: keras.layers.Layer | Callable[[tuple, tuple], keras.layers.Layer]
                 | None = None, hidden_channels: Sequence[int] | None = None,
                 scale: str = "bounded", context_shape: Sequence[int] | None = None,
                 num_bins: int | None = None, tail_bound: float | None = None,
                 **kwargs: Any) -> None:
        """Builds the step and its network's weights.

        Args:
          event_shape: shape of one input.
          mask: boolean array of `event_shape`, `True` = conditioning part.
          hidden_units: widths of the hidden layers of a default dense network
            (a `CouplingMLP` whose last layer starts at zero, so a fresh step is
            the identity).
          coupling: `"additive"`, `"affine"` or `"spline"`.
          activation: the default network's activation.
          network: instead of a default network, a Keras layer, or a factory
            `network(part_shape, output_shape) -> keras layer`, called with the
            shape of part A and the shape the network must return (part B's,
            with twice its last axis for an affine coupling, `3 * num_bins - 1`
            times for a spline; both without the batch axis), under the step's
            dtype policy (layers it makes without a `dtype` take the step's).
            Start its last layer at zero to start at the identity.
          hidden_channels: widths of the hidden convolutions of a default
            convolutional network (a `CouplingConvNet`, last layer at zero),
            for a mask that picks channels of an `(h, w, c)` event.
          scale: the default networks' affine log-scale, `"bounded"` or
            `"sigmoid"`.
          context_shape: `None` (unconditional), or the shape of one context
            row the coupling is conditioned on (see above).
          num_bins: a spline coupling's bins per entry (default 8).
          tail_bound: a spline coupling's `B`: the splines act on `[-B, B]`
            and are the identity outside (default 3.0).
          **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`).

        Raises:
          ValueError: for a bad mask, coupling or scale, `num_bins` or
            `tail_bound` for a coupling that is not a spline, not exactly one of
            `hidden_units`, `hidden_channels` and `network`, or
            `hidden_channels` with a mask that does not pick channels.
          TypeError: for a `network` that is not a Keras layer or a callable
            that returns one.
        """
        super().__init__(event_shape, **kwargs)
        self.mask = check_mask(mask, self.event_shape)
        self.coupling = check_choice(coupling, tuple(COUPLINGS), "coupling")
        self.scale = check_choice(scale, SCALES, "scale")
        if self.coupling == "spline":
            if self.scale != "bounded":
                raise ValueError(f"{self.name}: scale={self.scale!r} shapes an affine "
                                 "coupling's log-scale; a spline coupling has none.")
            self.num_bins, self.tail_bound = check_spline_options(
                DEFAULT_BINS if num_bins is None else num_bins,
                DEFAULT_TAIL_BOUND if tail_bound is None else tail_bound)
        elif num_bins is not None or tail_bound is not None:
            raise ValueError(f"{self.name}: num_bins and tail_bound shape a spline coupling; "
                             f"this one is {self.coupling!r}. Received: num_bins={num_bins!r}, "
                             f"tail_bound={tail_bound!r}")
        self._context_shape = check_context_shape(context_shape, self.name)
        units = None if self._context_shape is None else math.prod(self._context_shape)
        partition = MaskPartition(self.mask)
        self.part_shape, part_b = partition.shape_a, partition.shape_b
        widths = {"additive": 1, "affine": 2}
        per_entry = widths.get(self.coupling) or spline_parameter_count(self.num_bins)
        self.network_output_shape = part_b[:-1] + (per_entry * part_b[-1],)
        given = [k for k, v in (("hidden_units", hidden_units),
                                ("hidden_channels", hidden_channels),
                                ("network", network)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"{self.name}: give one of hidden_units (a dense CouplingMLP), "
                             "hidden_channels (a convolutional CouplingConvNet) or network. "
                             f"Received: hidden_units={hidden_units!r}, hidden_channels="
                             f"{hidden_channels!r}, network={network!r}")
        if network is not None and self.scale != "bounded":
            raise ValueError(f"{self.name}: scale={self.scale!r} shapes the log-scale of the "
                             "default networks; a network of your own returns its own.")
        self.hidden_units = None if hidden_units is None else tuple(int(u) for u in
                                                                     hidden_units)
        self.hidden_channels = None if hidden_channels is None else tuple(
            int(u) for u in hidden_channels)
        if hidden_units is not None:
            spline = self.coupling == "spline"
            network = CouplingMLP(self.hidden_units, int((~self.mask).sum()) * (
                                      per_entry if spline else 1),
                                  activation=activation, affine=coupling == "affine",
                                  output_shape=(self.network_output_shape if spline else part_b)
                                  if len(part_b) > 1 else None,
                                  scale=self.scale, context_units=units,
                                  dtype=self.dtype_policy, name="network")
        elif hidden_channels is not None:
            if partition.layout != "channel":
                raise ValueError(f"{self.name}: hidden_channels makes a convolutional network, "
                                 "which needs a mask that picks channels of an (h, w, c) "
                                 "event (partition_mask('channel', ...)); use hidden_units "
                                 "for this mask.")
            channels = part_b[-1] * (per_entry if self.coupling == "spline" else 1)
            network = CouplingConvNet(self.hidden_channels, channels, activation=activation,
                                      affine=coupling == "affine", scale=self.scale,
                                      context_units=units, dtype=self.dtype_policy,
                                      name="network")
        elif not isinstance(network, keras.layers.Layer):
            if not callable(network):
                raise TypeError(f"{self.name}: network must be a Keras layer or a factory "
                                f"(part_shape, output_shape) -> layer. Received: {network!r}")
            made = under_policy(self.dtype_policy, network, self.part_shape,
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

    @property
    def context_shape(self):
        return self._context_shape

    def bijector(self, context=None):
        """The coupling over the current weights; a conditional step's bound to `context`,
        rows of shape `(N, *context_shape)` (an unconditional step ignores it)."""
        options = self._spline_options()
        if self._context_shape is None:
            return COUPLINGS[self.coupling](self.network, self.mask, name=self.name,
                                            **options)
        if context is None:
            raise ValueError(f"{self.name} is conditional (context_shape="
                             f"{self._context_shape}) and needs a context.")
        return COUPLINGS[self.coupling](self.network, self.mask, name=self.name,
                                        context=context, **options)

    def _spline_options(self):
        if self.coupling != "spline":
            return {}
        return {"num_bins": self.num_bins, "tail_bound": self.tail_bound}

    def adapt(self, h, context=None):
        return self.bijector(context).forward(h)

    def call(self, h, context=None):
        return self.bijector(context).forward(h)

    def get_config(self):
        config = {**super().get_config(), "mask": self.mask.tolist(),
                  "coupling": self.coupling, **self._spline_options()}
        if self._context_shape is not None:
            config["context_shape"] = list(self._context_shape)
        sizes = {"hidden_units": self.hidden_units, "hidden_channels": self.hidden_channels}
        for key, value in sizes.items():  # a default network, rebuilt from its sizes
            if value is not None:
                return {**config, key: list(value), "scale": self.scale,
                        "activation": keras.activations.serialize(self.network.activation)}
        return {**config, "network": keras.saving.serialize_keras_object(self.network)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("network"), dict):
            config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)

"""The coupling step: an additive, affine or spline coupling and the network it owns."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice import transformers
from tfp_nice._types import TensorLike
from tfp_nice._validation import check_choice
from tfp_nice.bijectors import check_mask, coupling_bijector
from tfp_nice.bijectors._partition import MaskPartition
from tfp_nice.networks import SCALES, CouplingConvNet, CouplingMLP
from tfp_nice.steps.base import (FlowStep, check_context_shape, under_policy,
                                 with_keras_objects)
from tfp_nice.transformers import Additive, Affine, Spline, Transformer

__all__ = ["CouplingStep", "coupling_steps"]


@keras.saving.register_keras_serializable(package="tfp_nice")
class CouplingStep(FlowStep):
    """A coupling of any transformer (additive, affine, spline, one's own) and its network.

    `mask` (`True` = conditioning part A) splits the event; the network (the
    conditioner) maps part A to the parameters of the transformer part B
    undergoes entry by entry (`transformer=`, a `tfp_nice.Transformer` or a
    built-in's name; `coupling=` is its older name and keeps working): NICE's
    shift (`"additive"`), RealNVP's shift and log-scale (`"affine"`), the
    `3 * num_bins - 1` raw parameters of a monotone rational-quadratic spline
    on `[-tail_bound, tail_bound]`, the identity outside (`"spline"`, Neural
    Spline Flows), or the `params_per_entry` parameters of a transformer of
    your own. Part A arrives in the shape the mask gives it: a mask that
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

    affine = False

    def __init__(self, event_shape: Sequence[int], mask: ArrayLike,
                 hidden_units: Sequence[int] | None = None, coupling: str | None = None,
                 activation: str | Callable = "relu",
                 network: keras.layers.Layer | Callable[[tuple, tuple], keras.layers.Layer]
                 | None = None, hidden_channels: Sequence[int] | None = None,
                 scale: str = "bounded", context_shape: Sequence[int] | None = None,
                 num_bins: int | None = None, tail_bound: float | None = None,
                 transformer: str | Transformer | None = None, **kwargs: Any) -> None:
        """Builds the step and its network's weights.

        Args:
          event_shape: shape of one input.
          mask: boolean array of `event_shape`, `True` = conditioning part.
          hidden_units: widths of the hidden layers of a default dense network
            (a `CouplingMLP` whose last layer starts at zero, so a fresh step is
            the identity).
          coupling: `"additive"`, `"affine"` or `"spline"` (the older name of
            `transformer`; give one of the two, `"additive"` if neither).
          activation: the default network's activation.
          network: instead of a default network, a Keras layer, or a factory
            `network(part_shape, output_shape) -> keras layer`, called with the
            shape of part A and the shape the network must return (part B's
            with `params_per_entry` times its last axis: twice for affine, the
            shifts then the log-scales; `3 * num_bins - 1` times for a spline
            and any other transformer, each entry's values side by side; both
            without the batch axis), under the step's
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
          transformer: a `tfp_nice.Transformer` (`tn.Affine("sigmoid")`,
            `tn.Spline(num_bins=5)`, one's own) or a built-in's name. A default
            network gives it `params_per_entry` raw values per entry of part B
            (for `Affine()`, the `(shift, log_scale)` pair `scale` shapes).
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
        self.transformer = _resolve_transformer(self.name, coupling, transformer, num_bins,
                                                tail_bound)
        self.scale = check_choice(scale, SCALES, "scale")
        # the default networks shape an affine log-scale themselves (a learned bound, or
        # Glow's sigmoid): they return (shift, log_scale) for Affine's plain scale
        paired = isinstance(self.transformer, Affine) and self.transformer.scale == "exp"
        if self.scale != "bounded" and not paired and not isinstance(self.transformer,
                                                                       Additive):
            raise ValueError(f"{self.name}: scale={self.scale!r} shapes an affine "
                             f"coupling's log-scale; a {self.coupling} coupling has none.")
        self._context_shape = check_context_shape(context_shape, self.name)
        units = None if self._context_shape is None else math.prod(self._context_shape)
        partition = MaskPartition(self.mask)
        self.part_shape, part_b = partition.shape_a, partition.shape_b
        per_entry = self.transformer.params_per_entry
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
        outputs = 1 if paired else per_entry  # per entry, or per entry of each of the pair
        if hidden_units is not None:
            network = CouplingMLP(hidden_units, int((~self.mask).sum()) * outputs,
                                  activation=activation, affine=paired,
                                  output_shape=part_b[:-1] + (outputs * part_b[-1],)
                                  if len(part_b) > 1 else None,
                                  scale=self.scale, context_units=units,
                                  dtype=self.dtype_policy, name="network")
        elif hidden_channels is not None:
            if partition.layout != "channel":
                raise ValueError(f"{self.name}: hidden_channels makes a convolutional network, "
                                 "which needs a mask that picks channels of an (h, w, c) "
                                 "event (partition_mask('channel', ...)); use hidden_units "
                                 "for this mask.")
            network = CouplingConvNet(hidden_channels, part_b[-1] * outputs,
                                      activation=activation, affine=paired, scale=self.scale,
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
    def context_shape(self) -> tuple[int, ...] | None:
        return self._context_shape

    @property
    def coupling(self) -> str:
        """The transformer's name: `"additive"`, `"affine"`, `"spline"`, or a custom one's."""
        return self.transformer.name

    @property
    def constant_log_det(self) -> bool:  # type: ignore[override]
        return self.transformer.constant_log_det

    @property
    def num_bins(self) -> int | None:
        """A spline transformer's bins (`None` for other transformers)."""
        return getattr(self.transformer, "num_bins", None)

    @property
    def tail_bound(self) -> float | None:
        """A spline transformer's bound `B` (`None` for other transformers)."""
        return getattr(self.transformer, "tail_bound", None)

    def bijector(self, context: TensorLike | None = None) -> tfp.bijectors.Bijector:
        """The coupling over the current weights; a conditional step's bound to `context`,
        rows of shape `(N, *context_shape)` (an unconditional step ignores it)."""
        context = self._context_given(context)
        return coupling_bijector(self.transformer, self.network, self.mask, self.name,
                                 context=context)

    def adapt(self, h: TensorLike, context: TensorLike | None = None) -> tf.Tensor:
        return self.bijector(context).forward(h)

    def call(self, h: TensorLike, context: TensorLike | None = None) -> Any:
        return self.bijector(context).forward(h)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "mask": self.mask.tolist(),
                  **_transformer_config(self.transformer)}
        if self._context_shape is not None:
            config["context_shape"] = list(self._context_shape)
        sizes = {"hidden_units": self.hidden_units, "hidden_channels": self.hidden_channels}
        for key, value in sizes.items():  # a default network, rebuilt from its sizes
            if value is not None:
                return {**config, key: list(value), "scale": self.scale,
                        "activation": keras.activations.serialize(self.network.activation)}
        return {**config, "network": keras.saving.serialize_keras_object(self.network)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return cls(**with_keras_objects(config, ("network", "transformer")))


def _resolve_transformer(name, coupling, transformer, num_bins, tail_bound):
    """The step's transformer from `coupling=` or `transformer=` (a name or an instance)
    and a spline's `num_bins`/`tail_bound`, or a clear error."""
    if coupling is not None and transformer is not None:
        raise ValueError(f"{name}: give coupling or transformer, not both (coupling is "
                         f"transformer's older name). Received: coupling={coupling!r}, "
                         f"transformer={transformer!r}")
    chosen = transformer if transformer is not None else coupling or "additive"
    options = {k: v for k, v in (("num_bins", num_bins), ("tail_bound", tail_bound))
               if v is not None}
    if chosen == "spline":
        return Spline(**options)
    resolved = transformers.get(chosen)
    if options:
        raise ValueError(f"{name}: num_bins and tail_bound shape a spline coupling given by "
                         f"name; this one is {resolved!r}. Received: num_bins={num_bins!r}, "
                         f"tail_bound={tail_bound!r}")
    return resolved


def _transformer_config(transformer):
    """A built-in with the options a name gives (`coupling`, a spline's bins and bound), as
    files have always held it; any other transformer as a Keras object."""
    defaults = {"additive": Additive(), "affine": Affine()}
    if defaults.get(transformer.name) == transformer:
        return {"coupling": transformer.name}
    if isinstance(transformer, Spline) and transformer == Spline(
            transformer.num_bins, transformer.tail_bound):
        return {"coupling": "spline", "num_bins": transformer.num_bins,
                "tail_bound": transformer.tail_bound}
    return {"transformer": keras.saving.serialize_keras_object(transformer)}


def coupling_steps(event_shape: Sequence[int], num_steps: int = 5,
                   transformer: str | Transformer = "affine",
                   hidden_units: Sequence[int] = (50, 50),
                   context_shape: Sequence[int] | None = None, seed: int = 0,
                   dtype: Any = None, name: str = "coupling",
                   **step_kwargs: Any) -> list[FlowStep]:
    """The steps of a coupling flow over vectors, for `tn.Flow`: `num_steps` couplings of
    `transformer` whose halves alternate, and a fixed random permutation (from `seed`)
    after every second coupling when the event has more than 2 entries, so that every
    entry is conditioned on every other one somewhere in the flow (the layout `sbi` and
    nflows use for their coupling flows). `context_shape` makes every coupling conditional;
    `step_kwargs` go to each `CouplingStep`.

    Examples:
        >>> import tfp_nice as tn
        >>> [s.name for s in tn.coupling_steps((3,), num_steps=3, hidden_units=(8,))]
        ['coupling_0', 'coupling_1', 'coupling_permutation_1', 'coupling_2']
    """
    from tfp_nice.bijectors import partition_mask, random_permutation
    from tfp_nice.steps.permutation import PermutationStep

    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1. Received: num_steps={num_steps!r}")
    event_shape = tuple(int(d) for d in event_shape)
    size = math.prod(event_shape)
    if len(event_shape) != 1 or size < 2:
        raise ValueError("coupling_steps builds a flow over vectors of at least 2 entries "
                         "(one half is conditioned on the other); received event_shape="
                         f"{event_shape}. For one entry use autoregressive_steps.")
    mask = partition_mask("halves", event_shape)
    steps: list[FlowStep] = []
    for k in range(num_steps):
        steps.append(CouplingStep(event_shape, mask if k % 2 == 0 else ~mask,
                                  hidden_units=hidden_units, transformer=transformer,
                                  context_shape=context_shape, name=f"{name}_{k}",
                                  dtype=dtype, **step_kwargs))
        if size > 2 and k % 2 == 1 and k < num_steps - 1:
            steps.append(PermutationStep(event_shape, random_permutation(size, seed + k),
                                         name=f"{name}_permutation_{k}", dtype=dtype))
    return steps

"""The autoregressive step (MAF or IAF) and the builder of a stack of them."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice import transformers
from tfp_nice._types import TensorLike
from tfp_nice.bijectors.autoregressive import Autoregressive
from tfp_nice.networks.made import MADE, check_order
from tfp_nice.steps.base import (FlowStep, check_context_shape, under_policy,
                                 with_keras_objects)
from tfp_nice.steps.scaling import ActNormStep
from tfp_nice.transformers import Transformer

__all__ = ["AutoregressiveStep", "autoregressive_steps"]

DEFAULT_HIDDEN_UNITS = (50, 50)


@keras.saving.register_keras_serializable(package="tfp_nice")
class AutoregressiveStep(FlowStep):
    """A MAF or IAF step: every entry mapped by a transformer given the entries before it.

    The network (a `tfp_nice.MADE` of `hidden_units` by default) gives each
    entry the transformer's parameters from the entries that come before it in
    `order`; the transformer (`"affine"` by default: MAF's and IAF's shift and
    log-scale; `"additive"`, `"spline"` for an autoregressive neural spline
    flow, or a `tfp_nice.Transformer` of your own) maps the entry.

    * `inverse=False`, a MAF step: `f` (data -> latent) runs in one pass, so
      the density and training are one network pass per step; sampling runs
      entry by entry (`D` passes).
    * `inverse=True`, an IAF step: sampling (`f^{-1}`) runs in one pass, and so
      does the density of the flow's own samples; the density of given data
      runs entry by entry.

    With `context_shape`, the step is conditional: the context reaches every
    hidden layer of the MADE, and `bijector(context=c)` binds rows
    `(N, *context_shape)`.
    """

    affine = False

    def __init__(self, event_shape: Sequence[int], transformer: str | Transformer = "affine",
                 hidden_units: Sequence[int] | None = None,
                 order: str | ArrayLike = "natural", inverse: bool = False,
                 context_shape: Sequence[int] | None = None,
                 network: keras.layers.Layer | Callable[[int, int], keras.layers.Layer]
                 | None = None, activation: str | Callable = "relu", residual: bool = False,
                 seed: int | None = None, partial: bool = False, **kwargs: Any) -> None:
        """Builds the step and its network's weights.

        Args:
          event_shape: shape of one input (any rank; the network sees it flat).
          transformer: a `tfp_nice.Transformer` or a built-in's name.
          hidden_units: widths of the default MADE's hidden layers (default
            `(50, 50)`; each at least `D - 1` wide).
          order: the default MADE's input order: `"natural"`, `"reversed"`,
            `"random"` (from `seed`) or a permutation of `range(D)`.
          inverse: `False` for a MAF step, `True` for an IAF step.
          context_shape: `None`, or the shape of one context row.
          network: instead of a MADE, a Keras layer mapping `(N, D)` (and
            `context=`, for a conditional step) to `(N, D, P)`, autoregressive
            in some order, or a factory `network(D, P) -> layer`.
          activation: the default MADE's activation.
          residual: skip connections in the default MADE.
          seed: the random order's seed.
          partial: let the default MADE's hidden layers be narrower than
            `D - 1` (each entry then sees at most the first `min(hidden_units)`
            entries of the order; see `MADE`).
          **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`).

        Raises:
          ValueError: for an order that is not a permutation, hidden layers
            narrower than the degrees need, both `hidden_units` and `network`,
            or a network whose output does not hold `P` values per entry.
          TypeError: for a `network` that is not a Keras layer or a factory.
        """
        super().__init__(event_shape, **kwargs)
        self.transformer = transformers.get(transformer)
        self.inverse = bool(inverse)
        self._context_shape = check_context_shape(context_shape, self.name)
        units = None if self._context_shape is None else math.prod(self._context_shape)
        p = self.transformer.params_per_entry
        if network is not None and hidden_units is not None:
            raise ValueError(f"{self.name}: give hidden_units (a MADE) or network, not both. "
                             f"Received: hidden_units={hidden_units!r}, network={network!r}")
        self.hidden_units = None
        if network is None:
            self.hidden_units = tuple(int(u) for u in (hidden_units or DEFAULT_HIDDEN_UNITS))
            network = MADE(self.num_dims, p, self.hidden_units,
                           order=check_order(order, self.num_dims, seed, self.name),
                           activation=activation, residual=residual, context_units=units,
                           partial=partial, dtype=self.dtype_policy, name="network")
        elif not isinstance(network, keras.layers.Layer):
            if not callable(network):
                raise TypeError(f"{self.name}: network must be a Keras layer or a factory "
                                f"(D, params_per_entry) -> layer. Received: {network!r}")
            made = under_policy(self.dtype_policy, network, self.num_dims, p)
            if not isinstance(made, keras.layers.Layer):
                raise TypeError(f"{self.name}: the network factory must return a Keras "
                                f"layer; it returned {type(made).__name__}.")
            network = made
        self.network = network
        if not self.network.built:
            self.network.build((None, self.num_dims))
        self._check_network()
        self.built = True

    def _check_network(self):
        """A network of the wrong output shape fails here, with the shapes it may return."""
        x = tf.zeros((2, self.num_dims), self.variable_dtype)
        c = None if self._context_shape is None else tf.zeros(
            (2,) + self._context_shape, self.variable_dtype)
        self.bijector(c).parameters_given(x)

    @property
    def context_shape(self) -> tuple[int, ...] | None:
        return self._context_shape

    @property
    def constant_log_det(self) -> bool:  # type: ignore[override]
        return self.transformer.constant_log_det

    @property
    def order(self) -> np.ndarray | None:
        """The default MADE's order (`None` for a network of your own)."""
        return getattr(self.network, "order", None) if self.hidden_units else None

    def bijector(self, context: TensorLike | None = None) -> tfp.bijectors.Bijector:
        """The autoregressive bijector over the current weights; a conditional step's bound
        to `context`, rows `(N, *context_shape)` (an unconditional step ignores it)."""
        context = self._context_given(context)
        return Autoregressive(self.network, self.transformer, self.event_shape,
                              inverse=self.inverse, name=self.name, context=context)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "inverse": self.inverse,
                  "transformer": keras.saving.serialize_keras_object(self.transformer)}
        if self._context_shape is not None:
            config["context_shape"] = list(self._context_shape)
        if self.hidden_units is not None:
            return {**config, "hidden_units": list(self.hidden_units),
                    "order": self.network.order.tolist(), "residual": self.network.residual,
                    "partial": self.network.partial,
                    "activation": keras.activations.serialize(self.network.activation)}
        return {**config, "network": keras.saving.serialize_keras_object(self.network)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return cls(**with_keras_objects(config, ("network", "transformer")))


def autoregressive_steps(event_shape: Sequence[int], num_steps: int = 5,
                         transformer: str | Transformer = "affine",
                         hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS,
                         inverse: bool = False, orders: str = "alternate",
                         actnorm: bool = False, residual: bool = False,
                         activation: str | Callable = "relu",
                         context_shape: Sequence[int] | None = None, seed: int = 0,
                         dtype: Any = None, partial: bool = False,
                         name: str = "maf") -> list[FlowStep]:
    """The steps of a MAF (`inverse=False`) or an IAF (`inverse=True`) for `tn.Flow`.

    `num_steps` autoregressive steps of `transformer` over MADEs of
    `hidden_units`; between them the order changes, so that every entry is
    conditioned on every other one somewhere in the flow: `"alternate"`
    (natural, reversed, natural, ...: the reversal nflows and `sbi` put between
    steps) or `"random"` (each step's drawn from `seed`). With `actnorm`, an
    `ActNormStep` (data-started) comes before each step. `activation` and
    `residual` shape every MADE (`sbi`'s MAF uses `"tanh"`). `context_shape` makes
    every step conditional.

    Examples:
        >>> import tfp_nice as tn
        >>> steps = tn.autoregressive_steps((4,), num_steps=3, hidden_units=(16,))
        >>> [s.order.tolist() for s in steps]
        [[0, 1, 2, 3], [3, 2, 1, 0], [0, 1, 2, 3]]
        >>> flow = tn.Flow(steps)
    """
    if orders not in ("alternate", "random"):
        raise ValueError(f"orders must be 'alternate' or 'random'. Received: orders={orders!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1. Received: num_steps={num_steps!r}")
    rng = np.random.default_rng(seed)
    size = math.prod(int(d) for d in event_shape)
    steps: list[FlowStep] = []
    for k in range(num_steps):
        if actnorm:
            steps.append(ActNormStep(event_shape, name=f"{name}_actnorm_{k}", dtype=dtype))
        order = rng.permutation(size) if orders == "random" else (
            "natural" if k % 2 == 0 else "reversed")
        steps.append(AutoregressiveStep(event_shape, transformer=transformer,
                                        hidden_units=hidden_units, order=order,
                                        inverse=inverse, context_shape=context_shape,
                                        residual=residual, activation=activation,
                                        partial=partial, name=f"{name}_{k}", dtype=dtype))
    return steps

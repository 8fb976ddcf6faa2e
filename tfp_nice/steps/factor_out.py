"""The factor-out step: half the channels leave for the latent, the rest go on through steps."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice._types import TensorLike
from tfp_nice._validation import check_flag, check_int
from tfp_nice.bijectors import FactorOut, fuse_couplings
from tfp_nice.steps.base import (
    FlowStep,
    check_batch,
    check_chain,
    check_context_shape,
    context_shape_of,
)
from tfp_nice.steps.coupling import CouplingStep

tfb = tfp.bijectors

__all__ = ["FactorOutStep"]


def _chain(bijectors, name):
    bijectors = fuse_couplings(bijectors)
    if len(bijectors) == 1:
        return bijectors[0]
    return tfb.Chain(bijectors[::-1], name=name)  # Chain applies its list right to left


@keras.saving.register_keras_serializable(package="tfp_nice")
class FactorOutStep(FlowStep):
    """A scale of a multi-scale flow (RealNVP, Glow): some channels exit, the rest go on.

    Over an `(h, w, c)` event, the first `keep` channels (`c // 2` by default)
    go on through `steps` (their own list of steps, in `f`'s order, over
    `(h, w, keep)` events: a squeeze and the next scale's steps, another
    `FactorOutStep` last for a third scale); the other channels exit to the
    latent as they are. The output is flat, `(h w c,)`: the exits, then what
    `steps` returned (see `FactorOut`). The flow's latent therefore holds every
    scale's exits, and its prior (standard normal, say) models them.

    With `learned_prior=True` (Glow's learned prior), the exits are first
    standardised given the channels that go on: an affine coupling whose
    network (one zero-initialised 3x3 convolution on the kept channels, so the
    step starts as the plain exit) gives their shift and log-scale, i.e. the
    exits' density is a normal whose mean and spread depend on the kept half.

    It runs its steps' `adapt` on the kept channels, so a data-dependent start
    reaches them; `needs_data`, `constant_log_det` and `affine` are those of
    its steps (the learned prior is neither constant nor affine).
    """

    def __init__(self, event_shape: Sequence[int], steps: Sequence[FlowStep],
                 keep: int | None = None, learned_prior: bool = False,
                 context_shape: Sequence[int] | None = None, **kwargs: Any) -> None:
        """Builds the step over its steps.

        Args:
          event_shape: `(h, w, c)`, the shape of one input.
          steps: the steps the kept channels go through, the first over
            `(h, w, keep)` events.
          keep: the number of channels that go on, in `[1, c)`; `None` for
            `c // 2`.
          learned_prior: standardise the exits given the kept channels.
          context_shape: `None`, or the shape of one context row the learned
            prior is also conditioned on (a class-conditional prior for the
            exits; needs `learned_prior=True`). The step is conditional when
            this is given or any of its steps is (they take one context).
          **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`).

        Raises:
          ValueError: for an event that is not `(h, w, c)` with `c >= 2`, a bad
            `keep`, steps that do not chain from `(h, w, keep)`, repeated
            names, or steps of another dtype.
          TypeError: for an entry of `steps` that is not a `FlowStep`.
        """
        super().__init__(event_shape, **kwargs)
        if len(self.event_shape) != 3 or self.event_shape[-1] < 2:
            raise ValueError(f"{self.name}: a factor-out needs an (h, w, c) event with c >= 2. "
                             f"Received: event_shape={self.event_shape}")
        h, w, c = self.event_shape
        self.keep = c // 2 if keep is None else check_int(keep, "keep")
        if not 1 <= self.keep < c:
            raise ValueError(f"{self.name}: keep must be in [1, {c}) for {c} channels. "
                             f"Received: keep={keep!r}")
        self.steps = check_chain(steps, self.name)
        kept = (h, w, self.keep)
        if tuple(self.steps[0].event_shape) != kept:
            raise ValueError(f"{self.name}: the kept channels have shape {kept}, but the first "
                             f"step, {self.steps[0].name!r}, takes events of shape "
                             f"{tuple(self.steps[0].event_shape)}.")
        for step in self.steps:
            if step.variable_dtype != self.variable_dtype:
                raise ValueError(f"{self.name}: step {step.name!r} keeps {step.variable_dtype} "
                                 f"weights, this step {self.variable_dtype}; build them with "
                                 "one dtype.")
        self.learned_prior = check_flag(learned_prior, "learned_prior")
        self.prior_context_shape = check_context_shape(context_shape, self.name)
        if self.prior_context_shape is not None and not self.learned_prior:
            raise ValueError(f"{self.name}: context_shape conditions the learned prior; give "
                             "learned_prior=True with it (the steps take their own).")
        self._context_shape = context_shape_of(self.steps, self.name,
                                               self.prior_context_shape)
        self.prior_coupling = None
        if self.learned_prior:
            mask = np.zeros(self.event_shape, bool)
            mask[..., :self.keep] = True  # conditioning: the kept channels
            self.prior_coupling = CouplingStep(
                self.event_shape, mask, coupling="affine", hidden_channels=(),
                context_shape=self.prior_context_shape, dtype=self.dtype_policy,
                name=f"{self.name}_prior")
        self.built = True

    @property
    def context_shape(self) -> tuple[int, ...] | None:
        return self._context_shape

    @property
    def substeps(self) -> list[FlowStep]:
        return list(self.steps)

    @property
    def output_event_shape(self) -> tuple[int, ...]:
        return (self.num_dims,)

    @property
    def needs_data(self) -> bool:
        return any(step.needs_data for step in self.steps)

    @property
    def constant_log_det(self) -> bool:  # type: ignore[override]
        return not self.learned_prior and all(step.constant_log_det for step in self.steps)

    @property
    def affine(self) -> bool:  # type: ignore[override]
        return not self.learned_prior and all(step.affine for step in self.steps)

    def bijector(self, context: TensorLike | None = None) -> tfp.bijectors.Bijector:
        """The scale's bijector; a conditional step's bound to `context` (see `Flow`), which
        an unconditional one ignores."""
        if self._context_shape is not None and context is None:
            raise ValueError(f"{self.name} is conditional (context_shape="
                             f"{self._context_shape}) and needs a context.")
        inner = _chain([step.bijector(context) for step in self.steps],
                       f"{self.name}_steps")
        exit_ = FactorOut(inner, self.event_shape, self.keep,
                          self.steps[-1].output_event_shape, name=self.name)
        if self.prior_coupling is None:
            return exit_
        return tfb.Chain([exit_, self.prior_coupling.bijector(context)],
                         name=f"{self.name}_scale")

    def adapt(self, h: TensorLike, context: TensorLike | None = None) -> tf.Tensor:
        h = check_batch(h, self.event_shape, self.name)
        if self.prior_coupling is not None:
            h = self.prior_coupling.adapt(h, context)
        kept, out = h[..., :self.keep], h[..., self.keep:]
        for step in self.steps:
            kept = step.adapt(kept, context)
        n = h.shape[0] if h.shape[0] is not None else tf.shape(h)[0]
        return tf.concat([tf.reshape(out, [n, -1]), tf.reshape(kept, [n, -1])], axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "keep": self.keep,
                  "learned_prior": self.learned_prior,
                  "steps": [keras.saving.serialize_keras_object(step) for step in self.steps]}
        if self.prior_context_shape is not None:
            config["context_shape"] = list(self.prior_context_shape)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        config = dict(config)
        config["steps"] = [keras.saving.deserialize_keras_object(step)
                           for step in config["steps"]]
        return cls(**config)

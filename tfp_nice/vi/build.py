"""Builders of flow surrogates from a target: `surrogate_flow` (the Keras model) and
`surrogate_posterior` (its TFP distribution in the target's structure)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import tensorflow_probability as tfp

from tfp_nice._validation import check_positive_float
from tfp_nice.sbi.support import SupportStep
from tfp_nice.steps import ActNormStep, autoregressive_steps, coupling_steps
from tfp_nice.transformers import Transformer
from tfp_nice.vi.surrogate import VariationalFlow
from tfp_nice.vi.target import (target_dtype, target_layout, target_log_prob_fn,
                                target_structure, target_support)

__all__ = ["FLOWS", "surrogate_flow", "surrogate_posterior"]

FLOWS = ("autoregressive", "coupling")


def surrogate_flow(target: Any, flow: str = "autoregressive",
                   transformer: str | Transformer = "affine", num_steps: int = 3,
                   hidden_units: Sequence[int] | None = None, initial_scale: float = 1.0,
                   sample_size: int = 32, importance_samples: int = 1,
                   stick_the_landing: bool = False, seed: int = 0, name: str = "surrogate",
                   **step_kwargs: Any) -> VariationalFlow:
    """A flow surrogate posterior of `target`, as a Keras model (`tn.vi.VariationalFlow`).

    `target` is an unnormalized posterior with event structure: a pinned joint
    distribution (`model.experimental_pin(y=y)`; dicts, lists, named parts), any
    `tfd.Distribution`, or an object with `event_shape`, `dtype`, an event-space bijector
    (`experimental_default_event_space_bijector()`, or an Inference Gym model's
    `default_event_space_bijector`) and `unnormalized_log_prob` or `log_prob`.

    The flow, from the latent (a standard normal) towards the parameters:

    1. `num_steps` steps of `transformer` over the flat unconstrained parameters: inverse
       autoregressive ones (`flow="autoregressive"`, an IAF: sampling and the density of
       its own samples in one pass each, what the ELBO needs) or couplings
       (`flow="coupling"`), over networks of `hidden_units` (default two layers of
       `max(32, 2 D)` units, `D` the unconstrained size), each starting as the identity;
    2. a shift and scale per entry (`ActNormStep(init="identity")`), starting at 0 and
       `initial_scale`;
    3. the target's default event-space bijector, over the flat rows, onto its support.

    Args:
      target: the unnormalized posterior (see above).
      flow: `"autoregressive"` (IAF) or `"coupling"`.
      transformer: the elementwise map of each step (`"affine"`, `"spline"`,
        `"additive"`, or a `tn.Transformer`).
      num_steps: the number of autoregressive or coupling steps.
      hidden_units: the networks' hidden layers.
      initial_scale: the surrogate's starting spread in the unconstrained space (smaller
        starts away from a target's far, overflowing tails).
      sample_size: draws of the surrogate per training step.
      importance_samples: `K` draws per importance-weighted estimate (1: the ELBO).
      stick_the_landing: the gradient without its score term (Roeder et al. 2017; see
        `VariationalFlow`). It needs `log q` of a draw with the weights held, which for
        an IAF is its entry-by-entry direction (`D` passes of each network a step;
        measured on Inference Gym's eight schools, 2.6x the time of a step at `D = 10`);
        with `flow="coupling"` both directions take one pass.
      seed: the seed of the permutations and of the training draws.
      name: the model's name.
      **step_kwargs: passed to each step (`num_bins`, `tail_bound`, `residual`, ...).

    Raises:
      ValueError: for an unknown `flow`, a target whose support is unknown or whose
        parts have more than one dtype, or `initial_scale` not a positive float.

    Examples:
        >>> import numpy as np, keras, tensorflow_probability as tfp
        >>> import tfp_nice as tn
        >>> tfd = tfp.distributions
        >>> model = tfd.JointDistributionNamed(dict(
        ...     scale=tfd.HalfNormal(1.0),
        ...     y=lambda scale: tfd.Sample(tfd.Normal(0.0, scale), 5)))
        >>> target = model.experimental_pin(y=np.array([0.3, -0.5, 1.1, 0.2, -0.9], "float32"))
        >>> q = tn.vi.surrogate_flow(target, num_steps=2, hidden_units=(16,))
        >>> q.compile(keras.optimizers.Adam(1e-2))
        >>> _ = q.fit(steps=20, verbose=0)
        >>> draws = q.sample_parts(100, seed=1)
        >>> bool(np.all(draws["scale"].numpy() > 0))  # on the support
        True
    """
    if flow not in FLOWS:
        raise ValueError(f"flow must be one of {FLOWS}. Received: flow={flow!r}")
    target_log_prob_fn(target)
    structure = target_structure(target)
    layout = target_layout(target)
    dtype = target_dtype(target).name
    initial_scale = check_positive_float(initial_scale, "initial_scale")
    support = SupportStep(target_support(target), layout, structure, name="support",
                          dtype=dtype)
    size = support.output_event_shape[0]
    if hidden_units is None:
        hidden_units = (max(32, 2 * size),) * 2
    loc_scale = ActNormStep((size,), init="identity", name="loc_scale", dtype=dtype)
    loc_scale.log_scale.assign(keras.ops.full((size,), -math.log(initial_scale), dtype))
    steps: list[Any] = [support, loc_scale]
    if flow == "autoregressive":
        steps += autoregressive_steps((size,), num_steps=num_steps, transformer=transformer,
                                      hidden_units=hidden_units, inverse=True, seed=seed,
                                      dtype=dtype, name="iaf", **step_kwargs)
    else:
        steps += coupling_steps((size,), num_steps=num_steps, transformer=transformer,
                                hidden_units=hidden_units, seed=seed, dtype=dtype,
                                **step_kwargs)
    return VariationalFlow(steps, sample_size=sample_size,
                           importance_samples=importance_samples,
                           stick_the_landing=stick_the_landing, target=target, seed=seed,
                           name=name, dtype=dtype)


def surrogate_posterior(target: Any, **kwargs: Any) -> tfp.distributions.Distribution:
    """A flow surrogate posterior of `target` as a TFP distribution in the target's
    structure, for `tfp.vi.fit_surrogate_posterior`: `surrogate_flow(target,
    **kwargs).surrogate` (see there). Its `trainable_variables` are the flow's. To save or
    export it after training, keep the model: `model = tn.vi.surrogate_flow(target)`,
    `q = model.surrogate`, train `q`, then `model.save(...)` / `model.export(...)`.

    Examples:
        >>> import numpy as np, keras, tensorflow_probability as tfp
        >>> import tfp_nice as tn
        >>> tfd = tfp.distributions
        >>> model = tfd.JointDistributionNamed(dict(
        ...     loc=tfd.Normal(0.0, 10.0),
        ...     y=lambda loc: tfd.Sample(tfd.Normal(loc, 1.0), 4)))
        >>> target = model.experimental_pin(y=np.array([1.0, 2.0, 0.5, 1.5], "float32"))
        >>> q = tn.vi.surrogate_posterior(target, num_steps=1, hidden_units=(8,))
        >>> losses = tfp.vi.fit_surrogate_posterior(
        ...     target.unnormalized_log_prob, q, keras.optimizers.Adam(0.05),
        ...     num_steps=10, seed=(0, 1))
        >>> sorted(q.sample(3, seed=(1, 2)))
        ['loc']
    """
    return surrogate_flow(target, **kwargs).surrogate

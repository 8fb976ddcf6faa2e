"""The steps of a multi-scale convolutional image flow (RealNVP's layout, Glow's steps)."""

from __future__ import annotations

from typing import Any, Sequence

from tfp_nice._choices import COUPLING_KINDS
from tfp_nice._validation import check_choice, check_flag, check_int
from tfp_nice.bijectors import partition_mask
from tfp_nice.networks import SCALES
from tfp_nice.steps.base import FlowStep
from tfp_nice.steps.coupling import CouplingStep
from tfp_nice.steps.factor_out import FactorOutStep
from tfp_nice.steps.logit import LogitStep
from tfp_nice.steps.permutation import Conv1x1Step
from tfp_nice.steps.scaling import ActNormStep, RescalingStep
from tfp_nice.steps.squeeze import SqueezeStep

__all__ = ["multiscale_steps"]


def multiscale_steps(event_shape: Sequence[int], num_scales: int = 2, steps_per_scale: int = 8,
                     hidden_channels: Sequence[int] = (64, 64), coupling: str = "affine",
                     scale: str = "bounded", learned_prior: bool = True,
                     logit_alpha: float | None = 0.05, rescaling: bool = False, seed: int = 0,
                     dtype: Any = None, context_shape: Sequence[int] | None = None,
                     num_bins: int | None = None,
                     tail_bound: float | None = None) -> list[FlowStep]:
    """The steps of `f` (data -> latent) of a multi-scale flow over `(h, w, c)` images.

    First, with `logit_alpha` set, a `LogitStep` (data in `[0, 1]`). Then for
    each scale `s`: a `SqueezeStep` (`(h, w, c) -> (h/2, w/2, 4c)`), and
    `steps_per_scale` times Glow's step: a per-channel `ActNormStep`, a
    `Conv1x1Step` (drawn from `seed`), and a channel `CouplingStep` (the first
    half of the channels conditions, the network a `CouplingConvNet` of
    `hidden_channels`, 3x3 -> 1x1 -> 3x3); with `rescaling`, NICE's rescaling
    per channel closes the scale. Every scale but the last ends in a
    `FactorOutStep` that sends half the channels to the latent (Glow's learned
    prior for them with `learned_prior`) and holds the next scales' steps. The
    latent is flat, `(h w c,)`.

    `num_scales=2, steps_per_scale=8, hidden_channels=(64, 64)` on 28x28x1
    images is `presets.glow_mnist()`'s (152k weights).

    Args:
      event_shape: `(h, w, c)`; `h` and `w` multiples of `2 ** num_scales`.
      num_scales: int >= 1.
      steps_per_scale: int >= 1.
      hidden_channels: widths of the coupling networks' hidden convolutions.
      coupling: `"additive"`, `"affine"` or `"spline"` (a rational-quadratic
        spline per transformed channel entry, its parameters from the
        convolutional network).
      scale: the affine log-scale, `"bounded"` or `"sigmoid"` (Glow's).
      learned_prior: Glow's learned prior for the exiting channels.
      logit_alpha: `None`, or the logit step's `alpha` in `[0, 0.5)`.
      rescaling: a per-channel `RescalingStep` at the end of each scale.
      seed: seed of the 1x1 convolutions' starts.
      dtype: dtype policy of every step (the model's).
      context_shape: `None`, or the shape of one context row: every coupling
        network is given the context as constant feature maps beside its
        channels, and the learned priors are conditioned on it too (a
        conditional flow, `Flow(steps, context_shape=...)`).
      num_bins: a spline coupling's bins (default 8).
      tail_bound: a spline coupling's interval `[-B, B]` (default 3.0).

    Returns:
      The list of steps, for `tfp_nice.Flow(steps, ...)`.

    Raises:
      ValueError: for an event that is not `(h, w, c)`, sides that
        `2 ** num_scales` does not divide, or a bad option.
    """
    event_shape = tuple(int(d) for d in event_shape)
    num_scales = check_int(num_scales, "num_scales")
    steps_per_scale = check_int(steps_per_scale, "steps_per_scale")
    hidden_channels = tuple(check_int(u, "hidden_channels entry") for u in hidden_channels)
    check_choice(coupling, COUPLING_KINDS, "coupling")
    check_choice(scale, SCALES, "scale")
    check_flag(learned_prior, "learned_prior")
    check_flag(rescaling, "rescaling")
    side = 2 ** num_scales
    if len(event_shape) != 3 or min(event_shape) < 1 or any(d % side for d in event_shape[:2]):
        raise ValueError(f"multiscale_steps: {num_scales} scales halve the sides {num_scales} "
                         f"times, so they need an (h, w, c) event with h and w multiples of "
                         f"{side}. Received: event_shape={event_shape}")

    def scale_steps(s, shape):
        steps = [SqueezeStep(shape, dtype=dtype, name=f"squeeze_{s}")]
        shape = steps[-1].output_event_shape
        mask = partition_mask("channel", shape)
        for k in range(steps_per_scale):
            steps += [ActNormStep(shape, per_channel=True, dtype=dtype, name=f"actnorm_{s}_{k}"),
                      Conv1x1Step(shape, seed=seed + 1000 * s + k, dtype=dtype,
                                  name=f"conv1x1_{s}_{k}"),
                      CouplingStep(shape, mask, coupling=coupling, scale=scale,
                                   hidden_channels=hidden_channels, dtype=dtype,
                                   context_shape=context_shape, num_bins=num_bins,
                                   tail_bound=tail_bound, name=f"coupling_{s}_{k}")]
        if rescaling:
            steps.append(RescalingStep(shape, per_channel=True, dtype=dtype,
                                       name=f"rescaling_{s}"))
        if s + 1 < num_scales:
            keep = shape[-1] // 2
            inner = scale_steps(s + 1, shape[:2] + (keep,))
            steps.append(FactorOutStep(
                shape, inner, keep=keep, learned_prior=learned_prior, dtype=dtype,
                context_shape=context_shape if learned_prior else None,
                name=f"factor_out_{s}"))
        return steps

    head = [] if logit_alpha is None else [LogitStep(event_shape, alpha=logit_alpha,
                                                     dtype=dtype, name="logit")]
    return head + scale_steps(0, event_shape)

"""The one place that says in which order NICE's `f` applies its steps."""

import math

from tfp_nice._choices import PERMUTATIONS
from tfp_nice._validation import check_choice
from tfp_nice.bijectors import coupling_masks, random_permutation, reverse_permutation
from tfp_nice.steps.coupling import CouplingStep
from tfp_nice.steps.logit import LogitStep
from tfp_nice.steps.permutation import LULinearStep, PermutationStep
from tfp_nice.steps.scaling import ActNormStep, RescalingStep

__all__ = ["PERMUTATIONS", "build_steps"]


def build_steps(event_shape, num_couplings, hidden_units, partition="odd_even",
                coupling="additive", permutation=None, actnorm=False, rescaling=True,
                rescaling_init="data", target_std=1.0, activation="relu", seed=0, dtype=None,
                logit_alpha=None, context_shape=None, num_bins=None, tail_bound=None):
    """The steps of `f` (data -> latent), in the order `f` applies them.

    First, with `logit_alpha` set, a `LogitStep` (RealNVP's preprocessing of
    data in `[0, 1]`). Then for each coupling `k`: an `ActNormStep` (if `actnorm`), a permutation
    (`"reverse"`, `"random"` drawn from `seed + 1000 k`, or a learned `"lu"` map
    started at a random rotation from the same seed), then the `CouplingStep`,
    whose mask flips side from one coupling to the next; last, NICE's
    `RescalingStep` (if `rescaling`), started from data to `target_std` when
    `rescaling_init="data"`. With `context_shape`, every coupling is
    conditional on contexts of that shape; `num_bins` and `tail_bound` shape
    spline couplings.
    """
    check_choice(permutation, PERMUTATIONS, "permutation")
    event_shape = tuple(int(d) for d in event_shape)
    size = math.prod(event_shape)
    steps = []
    if logit_alpha is not None:
        steps.append(LogitStep(event_shape, alpha=logit_alpha, dtype=dtype, name="logit"))
    for k, mask in enumerate(coupling_masks(event_shape, num_couplings, partition)):
        step_seed = seed + 1000 * k
        if actnorm:
            steps.append(ActNormStep(event_shape, dtype=dtype, name=f"actnorm_{k}"))
        if permutation in ("reverse", "random"):
            perm = (reverse_permutation(size) if permutation == "reverse"
                    else random_permutation(size, step_seed))
            steps.append(PermutationStep(event_shape, perm, dtype=dtype,
                                         name=f"permutation_{k}"))
        elif permutation == "lu":
            steps.append(LULinearStep(event_shape, seed=step_seed, dtype=dtype,
                                      name=f"lu_linear_{k}"))
        steps.append(CouplingStep(event_shape, mask, hidden_units, coupling=coupling,
                                  activation=activation, context_shape=context_shape,
                                  num_bins=num_bins, tail_bound=tail_bound,
                                  dtype=dtype, name=f"coupling_{k}"))
    if rescaling:
        steps.append(RescalingStep(event_shape, init=rescaling_init, target_std=target_std,
                                   dtype=dtype, name="rescaling"))
    return steps

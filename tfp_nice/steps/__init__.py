"""Flow steps: Keras layers that own a step's weights and return its bijector."""

from tfp_nice.steps.flow import PERMUTATIONS, build_steps
from tfp_nice.steps.steps import (
    ActNormStep,
    CouplingStep,
    FlowStep,
    LULinearStep,
    LogitStep,
    PermutationStep,
    RescalingStep,
    SqueezeStep,
    check_logit_alpha,
)

__all__ = ["PERMUTATIONS", "ActNormStep", "CouplingStep", "FlowStep", "LULinearStep",
           "LogitStep", "PermutationStep", "RescalingStep", "SqueezeStep", "build_steps",
           "check_logit_alpha"]

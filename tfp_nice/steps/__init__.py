"""Flow steps: Keras layers that own a step's weights and return its bijector.

One step per module; `nice_order` holds the order in which NICE's flags build
their steps, `multiscale` the layout of a multi-scale image flow.
"""

from tfp_nice.steps.autoregressive import AutoregressiveStep, autoregressive_steps
from tfp_nice.steps.base import FlowStep, check_chain, walk
from tfp_nice.steps.coupling import CouplingStep, coupling_steps
from tfp_nice.steps.factor_out import FactorOutStep
from tfp_nice.steps.logit import LogitStep, check_logit_alpha
from tfp_nice.steps.multiscale import multiscale_steps
from tfp_nice.steps.nice_order import PERMUTATIONS, build_steps
from tfp_nice.steps.permutation import Conv1x1Step, LULinearStep, PermutationStep
from tfp_nice.steps.scaling import ActNormStep, RescalingStep, StandardizeStep
from tfp_nice.steps.squeeze import SqueezeStep

__all__ = ["PERMUTATIONS", "ActNormStep", "AutoregressiveStep", "Conv1x1Step", "CouplingStep",
           "FactorOutStep", "FlowStep", "LULinearStep", "LogitStep", "PermutationStep",
           "RescalingStep", "SqueezeStep", "StandardizeStep", "autoregressive_steps", "build_steps", "check_chain",
           "check_logit_alpha", "coupling_steps", "multiscale_steps", "walk"]

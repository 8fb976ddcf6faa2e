"""Bijectors of the NICE family (pure math over the tensors they are given)."""

from tfp_nice.bijectors._coupling import Coupling
from tfp_nice.bijectors.actnorm import ActNorm
from tfp_nice.bijectors.additive_coupling import AdditiveCoupling
from tfp_nice.bijectors.affine_coupling import AffineCoupling
from tfp_nice.bijectors.autoregressive import Autoregressive
from tfp_nice.bijectors.conv1x1 import InvertibleConv1x1
from tfp_nice.bijectors.coupling_block import CouplingBlock, fuse_couplings
from tfp_nice.bijectors.factor_out import FactorOut
from tfp_nice.bijectors.lu_linear import LULinear, lu_linear_init
from tfp_nice.bijectors.masks import PARTITIONS, check_mask, partition_mask
from tfp_nice.bijectors.nice import (
                                     COUPLINGS,
                                     coupling_bijector,
                                     coupling_masks,
                                     generator,
                                     nice_bijector,
)
from tfp_nice.bijectors.permutation import Permutation, random_permutation, reverse_permutation
from tfp_nice.bijectors.rescaling import Rescaling
from tfp_nice.bijectors.spline_coupling import SplineCoupling, spline_parameter_count
from tfp_nice.bijectors.squeeze import Squeeze, squeezed_shape

__all__ = [
    "COUPLINGS",
    "ActNorm",
    "Coupling",
    "AdditiveCoupling",
    "AffineCoupling",
    "Autoregressive",
    "CouplingBlock",
    "FactorOut",
    "InvertibleConv1x1",
    "LULinear",
    "PARTITIONS",
    "Permutation",
    "Rescaling",
    "SplineCoupling",
    "Squeeze",
    "check_mask",
    "coupling_bijector",
    "coupling_masks",
    "fuse_couplings",
    "generator",
    "lu_linear_init",
    "nice_bijector",
    "partition_mask",
    "random_permutation",
    "reverse_permutation",
    "spline_parameter_count",
    "squeezed_shape",
]

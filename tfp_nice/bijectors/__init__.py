"""Bijectors of the NICE family (pure math over the tensors they are given)."""

from tfp_nice.bijectors.additive_coupling import AdditiveCoupling
from tfp_nice.bijectors.masks import PARTITIONS, check_mask, partition_mask
from tfp_nice.bijectors.nice import coupling_masks, nice_bijector
from tfp_nice.bijectors.rescaling import Rescaling

__all__ = [
    "AdditiveCoupling",
    "PARTITIONS",
    "Rescaling",
    "check_mask",
    "coupling_masks",
    "nice_bijector",
    "partition_mask",
]

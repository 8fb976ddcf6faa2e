"""tfp_nice: NICE-family normalizing flows for TensorFlow Probability.

Direction convention: a `tfd.TransformedDistribution(base, g)` maps latent
`z` to data `x = g(z)`; NICE's `f = g^{-1}` maps data to latent. Each
bijector's docstring says what its `forward` maps.
"""

from tfp_nice._version import __version__
from tfp_nice.bijectors import (
    PARTITIONS,
    AdditiveCoupling,
    Rescaling,
    check_mask,
    coupling_masks,
    nice_bijector,
    partition_mask,
)
from tfp_nice.networks import CouplingMLP

__all__ = [
    "PARTITIONS",
    "AdditiveCoupling",
    "CouplingMLP",
    "Rescaling",
    "__version__",
    "check_mask",
    "coupling_masks",
    "nice_bijector",
    "partition_mask",
]

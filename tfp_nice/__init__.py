"""tfp_nice: NICE-family normalizing flows for TensorFlow Probability.

Direction convention: a `tfd.TransformedDistribution(base, g)` maps latent
`z` to data `x = g(z)`; NICE's `f = g^{-1}` maps data to latent. Each
bijector's docstring says what its `forward` maps.
"""

from tfp_nice._version import __version__
from tfp_nice.bijectors import (
    PARTITIONS,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    LULinear,
    Permutation,
    Rescaling,
    check_mask,
    coupling_masks,
    generator,
    lu_linear_init,
    nice_bijector,
    partition_mask,
    random_permutation,
    reverse_permutation,
)
from tfp_nice.export import export_saved_model
from tfp_nice.models import NICE
from tfp_nice.networks import CouplingMLP
from tfp_nice import data, presets  # noqa: E402  (the subpackages)

__all__ = [
    "PARTITIONS",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "LULinear",
    "Permutation",
    "CouplingMLP",
    "NICE",
    "Rescaling",
    "__version__",
    "check_mask",
    "data",
    "export_saved_model",
    "coupling_masks",
    "generator",
    "lu_linear_init",
    "nice_bijector",
    "partition_mask",
    "presets",
    "random_permutation",
    "reverse_permutation",
]

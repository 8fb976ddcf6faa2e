"""tfp_nice: NICE-family normalizing flows for TensorFlow Probability.

Direction convention: a `tfd.TransformedDistribution(base, g)` maps latent
`z` to data `x = g(z)`; NICE's `f = g^{-1}` maps data to latent. Each
bijector's docstring says what its `forward` maps.

TensorFlow loads with the package's names: at once if TensorFlow is already
imported, otherwise on first use of any name below (so that `tfp-nice --help`
answers without it). Either way every name, and every Keras class that
`keras.models.load_model` needs, is in place once one of them has been used.
"""

import importlib
import sys
from typing import TYPE_CHECKING

from tfp_nice._version import __version__

# Each public name and the module it comes from.
_NAMES = {
    "PARTITIONS": "tfp_nice.bijectors",
    "ActNorm": "tfp_nice.bijectors",
    "AdditiveCoupling": "tfp_nice.bijectors",
    "AffineCoupling": "tfp_nice.bijectors",
    "LULinear": "tfp_nice.bijectors",
    "Permutation": "tfp_nice.bijectors",
    "Rescaling": "tfp_nice.bijectors",
    "check_mask": "tfp_nice.bijectors",
    "coupling_masks": "tfp_nice.bijectors",
    "generator": "tfp_nice.bijectors",
    "lu_linear_init": "tfp_nice.bijectors",
    "nice_bijector": "tfp_nice.bijectors",
    "partition_mask": "tfp_nice.bijectors",
    "random_permutation": "tfp_nice.bijectors",
    "reverse_permutation": "tfp_nice.bijectors",
    "export_saved_model": "tfp_nice.export",
    "NICE": "tfp_nice.models",
    "AveragedEarlyStopping": "tfp_nice.models",
    "averaged_weights": "tfp_nice.models",
    "dequantized_batches": "tfp_nice.models",
    "CouplingMLP": "tfp_nice.networks",
}
_SUBPACKAGES = ("data", "presets")

__all__ = sorted([*_NAMES, *_SUBPACKAGES, "__version__"])

if TYPE_CHECKING:  # what static tools (type checkers, the API reference) see
    from tfp_nice import data, presets
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
    from tfp_nice.models import (
        NICE,
        AveragedEarlyStopping,
        averaged_weights,
        dequantized_batches,
    )
    from tfp_nice.networks import CouplingMLP


def _load_all():
    """Imports every public module and binds its names here (idempotent)."""
    module = sys.modules[__name__]
    for name, source in _NAMES.items():
        setattr(module, name, getattr(importlib.import_module(source), name))
    for name in _SUBPACKAGES:
        setattr(module, name, importlib.import_module(f"{__name__}.{name}"))


def __getattr__(name):
    if name in _NAMES or name in _SUBPACKAGES:
        _load_all()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


if "tensorflow" in sys.modules:  # nothing left to save: behave as a plain package
    _load_all()

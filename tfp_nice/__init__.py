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
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING

from tfp_nice._version import __version__

# Each public name and the module it comes from.
_NAMES = {
    "PARTITIONS": "tfp_nice.bijectors",
    "ActNorm": "tfp_nice.bijectors",
    "AdditiveCoupling": "tfp_nice.bijectors",
    "AffineCoupling": "tfp_nice.bijectors",
    "Autoregressive": "tfp_nice.bijectors",
    "Coupling": "tfp_nice.bijectors",
    "CouplingBlock": "tfp_nice.bijectors",
    "FactorOut": "tfp_nice.bijectors",
    "InvertibleConv1x1": "tfp_nice.bijectors",
    "LULinear": "tfp_nice.bijectors",
    "Permutation": "tfp_nice.bijectors",
    "Rescaling": "tfp_nice.bijectors",
    "SplineCoupling": "tfp_nice.bijectors",
    "Squeeze": "tfp_nice.bijectors",
    "check_mask": "tfp_nice.bijectors",
    "coupling_masks": "tfp_nice.bijectors",
    "generator": "tfp_nice.bijectors",
    "lu_linear_init": "tfp_nice.bijectors",
    "nice_bijector": "tfp_nice.bijectors",
    "partition_mask": "tfp_nice.bijectors",
    "random_permutation": "tfp_nice.bijectors",
    "reverse_permutation": "tfp_nice.bijectors",
    "spline_parameter_count": "tfp_nice.bijectors",
    "export_saved_model": "tfp_nice.export",
    "Flow": "tfp_nice.models",
    "NICE": "tfp_nice.models",
    "AveragedEarlyStopping": "tfp_nice.models",
    "averaged_weights": "tfp_nice.models",
    "dequantized_batches": "tfp_nice.models",
    "CouplingConvNet": "tfp_nice.networks",
    "MADE": "tfp_nice.networks",
    "CouplingMLP": "tfp_nice.networks",
    "ActNormStep": "tfp_nice.steps",
    "AutoregressiveStep": "tfp_nice.steps",
    "Conv1x1Step": "tfp_nice.steps",
    "CouplingStep": "tfp_nice.steps",
    "FactorOutStep": "tfp_nice.steps",
    "FlowStep": "tfp_nice.steps",
    "LULinearStep": "tfp_nice.steps",
    "LogitStep": "tfp_nice.steps",
    "PermutationStep": "tfp_nice.steps",
    "RescalingStep": "tfp_nice.steps",
    "SqueezeStep": "tfp_nice.steps",
    "StandardizeStep": "tfp_nice.steps",
    "autoregressive_steps": "tfp_nice.steps",
    "coupling_steps": "tfp_nice.steps",
    "multiscale_steps": "tfp_nice.steps",
    "Additive": "tfp_nice.transformers",
    "Affine": "tfp_nice.transformers",
    "Spline": "tfp_nice.transformers",
    "Transformer": "tfp_nice.transformers",
}
_SUBPACKAGES = ("data", "presets", "sbi", "transformers", "vi")

__all__ = sorted([*_NAMES, *_SUBPACKAGES, "__version__"])

if TYPE_CHECKING:  # what static tools (type checkers, the API reference) see
    from tfp_nice import data, presets, sbi, transformers, vi
    from tfp_nice.bijectors import (
        PARTITIONS,
        ActNorm,
        AdditiveCoupling,
        AffineCoupling,
        Autoregressive,
        Coupling,
        CouplingBlock,
        FactorOut,
        InvertibleConv1x1,
        LULinear,
        Permutation,
        Rescaling,
        SplineCoupling,
        Squeeze,
        check_mask,
        coupling_masks,
        generator,
        lu_linear_init,
        nice_bijector,
        partition_mask,
        random_permutation,
        reverse_permutation,
        spline_parameter_count,
    )
    from tfp_nice.export import export_saved_model
    from tfp_nice.models import (
        NICE,
        Flow,
        AveragedEarlyStopping,
        averaged_weights,
        dequantized_batches,
    )
    from tfp_nice.networks import MADE, CouplingConvNet, CouplingMLP
    from tfp_nice.steps import (
        ActNormStep,
        AutoregressiveStep,
        Conv1x1Step,
        CouplingStep,
        FactorOutStep,
        FlowStep,
        LogitStep,
        LULinearStep,
        PermutationStep,
        RescalingStep,
        SqueezeStep,
        StandardizeStep,
        autoregressive_steps,
        coupling_steps,
        multiscale_steps,
    )
    from tfp_nice.transformers import Additive, Affine, Spline, Transformer


def _load_all():
    """Imports every public module and binds its names here (idempotent)."""
    if _LOAD_AFTER_KERAS in sys.meta_path:
        sys.meta_path.remove(_LOAD_AFTER_KERAS)
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


class _LoadAfterKeras(importlib.abc.MetaPathFinder):
    """Binds the package's names as soon as Keras has been imported, in any order.

    `keras.models.load_model` finds tfp_nice's classes only once they are
    registered, which happens when tfp_nice's modules load. A user who writes
    `import tfp_nice` before `import keras` must not have to use a tfp_nice name
    first, so this finder waits for Keras's import, lets the usual finders find
    it, and loads tfp_nice's modules right after Keras's own have run. It does
    nothing else, and leaves `sys.meta_path` after its one use.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run_keras = spec.loader.exec_module

            def exec_module(module):
                run_keras(module)
                try:
                    _load_all()
                except Exception:  # noqa: BLE001 - Keras imported; the error shows on use
                    pass

            spec.loader.exec_module = exec_module
        return spec


_LOAD_AFTER_KERAS = _LoadAfterKeras()

if "tensorflow" in sys.modules or "keras" in sys.modules:  # plain package: load now
    _load_all()
else:
    sys.meta_path.insert(0, _LOAD_AFTER_KERAS)

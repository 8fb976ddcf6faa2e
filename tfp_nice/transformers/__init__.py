"""Transformers: the elementwise invertible maps of couplings, given raw parameters.

One transformer per module; `get` turns a built-in's name into one.
"""

from __future__ import annotations

from tfp_nice.transformers.additive import Additive
from tfp_nice.transformers.affine import Affine
from tfp_nice.transformers.base import Transformer, check_transformer
from tfp_nice.transformers.spline import Spline

__all__ = ["BUILT_INS", "Additive", "Affine", "Spline", "Transformer", "check_transformer",
           "get"]

# The built-ins by the name `transformer=` (and `coupling=`) takes.
BUILT_INS = {"additive": Additive, "affine": Affine, "spline": Spline}


def get(transformer: str | Transformer) -> Transformer:
    """A built-in transformer by name (its default options), or `transformer` itself,
    checked; a clear error for anything else."""
    if isinstance(transformer, str):
        if transformer not in BUILT_INS:
            raise ValueError(f"transformer must be one of {tuple(BUILT_INS)} or a "
                             f"Transformer. Received: transformer={transformer!r}")
        return BUILT_INS[transformer]()
    return check_transformer(transformer)

"""Keras layers that serve as coupling networks."""

from tfp_nice.networks.coupling_mlp import CouplingMLP

__all__ = ["CouplingMLP"]

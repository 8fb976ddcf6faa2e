"""Keras layers that serve as coupling networks."""

from tfp_nice.networks.coupling_conv import SCALES, CouplingConvNet
from tfp_nice.networks.coupling_mlp import CouplingMLP

__all__ = ["SCALES", "CouplingConvNet", "CouplingMLP"]

"""Keras layers that serve as coupling and autoregressive networks."""

from tfp_nice.networks.coupling_conv import SCALES, CouplingConvNet
from tfp_nice.networks.coupling_mlp import CouplingMLP
from tfp_nice.networks.made import MADE

__all__ = ["MADE", "SCALES", "CouplingConvNet", "CouplingMLP"]

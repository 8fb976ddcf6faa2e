"""Keras 3 models that own the weights of a flow and train it with `fit`."""

from tfp_nice.models.flow import Flow
from tfp_nice.models.nice import NICE
from tfp_nice.models.training import (
    AveragedEarlyStopping,
    averaged_weights,
    dequantized_batches,
)

__all__ = ["Flow", "NICE", "AveragedEarlyStopping", "averaged_weights", "dequantized_batches"]

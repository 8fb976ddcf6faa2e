"""Keras 3 models that own the weights of a flow and train it with `fit`."""

from tfp_nice.models.nice import NICE

__all__ = ["NICE"]

"""Type aliases of the package's signatures."""

from __future__ import annotations

from typing import Union

import tensorflow as tf
from numpy.typing import ArrayLike

__all__ = ["TensorLike"]

# What the maps and densities take: a tensor, a numpy array, or nested sequences of numbers.
TensorLike = Union[tf.Tensor, ArrayLike]

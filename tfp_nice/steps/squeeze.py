"""RealNVP's squeeze as a step: the first step that changes the shape."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow_probability as tfp

from tfp_nice._types import TensorLike
from tfp_nice._validation import check_int
from tfp_nice.bijectors import Squeeze, squeezed_shape
from tfp_nice.steps.base import FlowStep

__all__ = ['SqueezeStep']


@keras.saving.register_keras_serializable(package="tfp_nice")
class SqueezeStep(FlowStep):
    """RealNVP's squeeze, `(h, w, c) -> (h/f, w/f, c f^2)`: a step that changes the shape.

    It has no weights; after it, the next step's `event_shape` is this step's
    `output_event_shape`, and a channel split of it mixes neighbouring pixels.
    """

    def __init__(self, event_shape: Sequence[int], factor: int = 2, **kwargs: Any) -> None:
        super().__init__(event_shape, **kwargs)
        self.factor = check_int(factor, "factor", minimum=2)
        self._output_shape = squeezed_shape(self.event_shape, self.factor)
        self.built = True

    @property
    def output_event_shape(self) -> tuple[int, ...]:
        return self._output_shape

    def bijector(self, context: TensorLike | None = None) -> tfp.bijectors.Bijector:
        return Squeeze(self.factor, name=self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}

"""Steps that mix entries: a fixed permutation, a learned LU map, a 1x1 convolution."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice._types import TensorLike
from tfp_nice.bijectors import InvertibleConv1x1, LULinear, Permutation, lu_linear_init
from tfp_nice.steps.base import FlowStep

__all__ = ["Conv1x1Step", "LULinearStep", "PermutationStep"]


@keras.saving.register_keras_serializable(package="tfp_nice")
class PermutationStep(FlowStep):
    """A fixed reordering of the flattened event, saved with the model."""

    def __init__(self, event_shape: Sequence[int], permutation: ArrayLike,
                 **kwargs: Any) -> None:
        super().__init__(event_shape, **kwargs)
        perm = np.asarray(permutation, dtype=np.int32)
        if perm.shape != (self.num_dims,) or not np.array_equal(np.sort(perm),
                                                                np.arange(self.num_dims)):
            raise ValueError(f"permutation must be a permutation of range({self.num_dims}). "
                             f"Received: permutation={perm.tolist()}")
        self.permutation = self._flow_weight(
            "permutation", (self.num_dims,), keras.initializers.Constant(perm), dtype="int32",
            trainable=False)
        self.built = True

    def bijector(self, context: TensorLike | None = None) -> tfp.bijectors.Bijector:
        return Permutation(self.permutation, self.event_shape, name=self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                "permutation": keras.ops.convert_to_numpy(self.permutation).tolist()}


@keras.saving.register_keras_serializable(package="tfp_nice")
class LULinearStep(FlowStep):
    """A learned invertible linear map in permuted LU form, started at a random rotation."""

    TRAINABLE = ("lower", "upper", "log_diag")

    def __init__(self, event_shape: Sequence[int], seed: int = 0, **kwargs: Any) -> None:
        super().__init__(event_shape, **kwargs)
        self.seed = int(seed)
        self._lu_weights(self.num_dims)
        self.built = True

    def _lu_weights(self, size):
        init = lu_linear_init(size, self.seed)
        for key in ("lower", "upper", "log_diag", "sign", "permutation"):
            setattr(self, key, self._flow_weight(
                key, init[key].shape, keras.initializers.Constant(init[key]),
                dtype="int32" if key == "permutation" else None,
                trainable=key in self.TRAINABLE))

    def bijector(self, context: TensorLike | None = None) -> tfp.bijectors.Bijector:
        return LULinear(self.lower, self.upper, self.log_diag, self.sign, self.permutation,
                        self.event_shape, name=self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfp_nice")
class Conv1x1Step(LULinearStep):
    """Glow's invertible 1x1 convolution over the channels of an `(h, w, c)` event.

    One learned `c x c` map `W` (permuted LU form, started at a random rotation
    drawn from `seed`) applied at every pixel; log-det `h * w * sum(log_diag)`
    (see `InvertibleConv1x1`). It holds `c^2` weights, where an `LULinearStep`
    over the image would hold `(h w c)^2`.
    """

    def __init__(self, event_shape: Sequence[int], seed: int = 0, **kwargs: Any) -> None:
        """Builds the step.

        Raises:
          ValueError: for an event that is not `(h, w, c)`.
        """
        FlowStep.__init__(self, event_shape, **kwargs)
        if len(self.event_shape) != 3:
            raise ValueError(f"{self.name}: a 1x1 convolution needs an (h, w, c) event. "
                             f"Received: event_shape={self.event_shape}")
        self.seed = int(seed)
        self._lu_weights(self.event_shape[-1])
        self.built = True

    def bijector(self, context: TensorLike | None = None) -> tfp.bijectors.Bijector:
        return InvertibleConv1x1(self.lower, self.upper, self.log_diag, self.sign,
                                 self.permutation, name=self.name)

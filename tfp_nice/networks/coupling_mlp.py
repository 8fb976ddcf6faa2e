"""The multilayer perceptron NICE uses as its coupling function `m`."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import keras

from tfp_nice._types import TensorLike
from tfp_nice._validation import check_choice, check_int
from tfp_nice.networks.coupling_conv import SCALES, check_context

__all__ = ["CouplingMLP"]


@keras.saving.register_keras_serializable(package="tfp_nice")
class CouplingMLP(keras.layers.Layer):
    """A dense network `x_A -> m(x_A)` for a coupling layer.

    `len(hidden_units)` hidden `Dense` layers with `activation`, then a linear
    `Dense(output_units)` whose kernel and bias start at zero, so that a fresh
    coupling layer is the identity (and a fresh NICE flow is its rescaling).
    NICE's MNIST model uses `hidden_units=(1000,) * 5` with ReLU.

    Input: `(N, n_A)`, or any `(N, ...)` (flattened first: a coupling gives
    an image part `(N, h, w, c_A)` for a channel mask); output: the shift
    `(N, output_units)`, or `(N, *output_shape)` when `output_shape` is given.
    With
    `affine=True` the output is a pair `(shift, log_scale)` for
    `AffineCoupling`, with `log_scale = scale * tanh(raw)`: bounded by a
    learned per-entry `scale` (initialised at 1), as in RealNVP's code, or
    with `scale="sigmoid"` Glow's `log(sigmoid(raw + 2))`.

    Under a Keras mixed-precision policy (`"mixed_bfloat16"`,
    `"mixed_float16"`) the layer computes in the policy's compute dtype and
    returns its outputs in the variable dtype (float32), the dtype of the flow
    it serves; its weights stay float32.
    """

    def __init__(
        self,
        hidden_units: Sequence[int],
        output_units: int,
        activation: str | Callable[..., Any] = "relu",
        kernel_initializer: Any = "glorot_uniform",
        affine: bool = False,
        output_shape: Sequence[int] | None = None,
        scale: str = "bounded",
        context_units: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Builds the layer.

        Args:
          hidden_units: sequence of positive ints, the width of each hidden layer
            (may be empty for a linear map).
          output_units: positive int, the size of the transformed part `n_B`.
          activation: Keras activation of the hidden layers.
          kernel_initializer: initialiser of the hidden kernels.
          affine: return `(shift, log_scale)` for an affine coupling.
          output_shape: `None`, or the shape of each output after the batch
            axis (its entries multiply to `output_units`), e.g. `(h, w, c_B)`.
          scale: the affine log-scale, `"bounded"` (`scale * tanh(raw)`) or
            `"sigmoid"` (Glow's `log(sigmoid(raw + 2))`).
          context_units: `None`, or the size of a context the network is also
            given (`call(x_a, context=c)` with `c` of shape `(N, ...)`,
            flattened to `context_units` entries and concatenated to the
            flattened `x_a`): a conditional coupling's network.
          **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).

        Raises:
          ValueError: for non-positive or non-integer sizes.
        """
        super().__init__(**kwargs)
        hidden_units = tuple(hidden_units)
        hidden_units = tuple(check_int(u, "hidden_units entry") for u in hidden_units)
        output_units = check_int(output_units, "output_units")
        self.hidden_units = hidden_units
        self.output_units = output_units
        self.affine = bool(affine)
        self.scale_kind = check_choice(scale, SCALES, "scale")
        self.output_shape = None if output_shape is None else tuple(
            check_int(d, "output_shape entry") for d in output_shape)
        if self.output_shape is not None and math.prod(self.output_shape) != output_units:
            raise ValueError(f"output_shape {self.output_shape} does not hold output_units="
                             f"{output_units} values.")
        self.context_units = None if context_units is None else check_int(
            context_units, "context_units")
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.hidden_layers = [
            keras.layers.Dense(
                u,
                activation=self.activation,
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=f"hidden_{i}",
            )
            for i, u in enumerate(hidden_units)
        ]
        self.output_layer = keras.layers.Dense(
            output_units * (2 if self.affine else 1),
            kernel_initializer="zeros",
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="shift",
        )

    def build(self, input_shape: Any) -> None:
        shape = tuple(input_shape)
        shape = shape[:1] + (math.prod(shape[1:]) + (self.context_units or 0),)
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.output_layer.build(shape)
        if self.affine and self.scale_kind == "bounded":
            self.scale = self.add_weight(shape=(self.output_units,), initializer="ones",
                                         name="log_scale_bound")

    def call(self, inputs: Any, context: TensorLike | None = None) -> Any:
        h = inputs
        if len(h.shape) > 2:
            h = keras.ops.reshape(h, (-1, math.prod(h.shape[1:])))
        h = _with_context(self, h, context)
        for layer in self.hidden_layers:
            h = layer(h)
        out = self.output_layer(h)
        # Under a mixed-precision policy the layers compute in half precision;
        # the flow around them works in the variable dtype (float32).
        flow_dtype = self.variable_dtype
        if not self.affine:
            return self._shaped(keras.ops.cast(out, flow_dtype))
        shift, raw = out[..., : self.output_units], out[..., self.output_units:]
        if self.scale_kind == "bounded":
            log_scale = self.scale * keras.ops.tanh(raw)
        else:
            log_scale = keras.ops.log_sigmoid(raw + 2.0)
        return (self._shaped(keras.ops.cast(shift, flow_dtype)),
                self._shaped(keras.ops.cast(log_scale, flow_dtype)))

    def _shaped(self, out):
        if self.output_shape is None:
            return out
        return keras.ops.reshape(out, (-1,) + self.output_shape)

    def compute_output_shape(self, input_shape: Any) -> Any:
        shape = tuple(input_shape)[:1] + (self.output_shape or (self.output_units,))
        return (shape, shape) if self.affine else shape

    def get_config(self) -> dict[str, Any]:
        config = {
            "hidden_units": list(self.hidden_units),
            "output_units": self.output_units,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "affine": self.affine,
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "scale": self.scale_kind,
            "context_units": self.context_units,
        }
        return {**super().get_config(), **config}


def _with_context(layer, h, context):
    """`h` with the flattened context concatenated on its last axis (a conditional MLP)."""
    context = check_context(layer, context)
    if context is None:
        return h
    context = keras.ops.reshape(context, (-1, layer.context_units))
    return keras.ops.concatenate([h, keras.ops.cast(context, h.dtype)], axis=-1)

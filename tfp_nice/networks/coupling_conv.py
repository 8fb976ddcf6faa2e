"""The convolutional network of Glow's coupling layers: 3x3 -> 1x1 -> 3x3, the last at zero."""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras

from tfp_nice._types import TensorLike
from tfp_nice._validation import check_choice, check_int

__all__ = ["SCALES", "CouplingConvNet", "check_context"]

SCALES = ("bounded", "sigmoid")


def check_context(layer, context):
    """`context` for a network built with `context_units`, or an error naming the problem:
    a context missing, given to a network built without one, or of the wrong size."""
    units = layer.context_units
    if context is None:
        if units is not None:
            raise ValueError(f"{layer.name} is conditional (context_units={units}) and needs "
                             "a context: call it as network(x_a, context=c).")
        return None
    if units is None:
        raise ValueError(f"{layer.name} was built without a context (context_units=None) "
                         "and cannot take one.")
    shape = tuple(context.shape)
    size = math.prod(shape[1:]) if len(shape) > 1 and None not in shape[1:] else None
    if len(shape) < 2 or size is not None and size != units:
        raise ValueError(f"{layer.name} takes a context of {units} entries per example, "
                         f"shape (N, ...); got shape {shape}.")
    return context


@keras.saving.register_keras_serializable(package="tfp_nice")
class CouplingConvNet(keras.layers.Layer):
    """A convolutional network `x_A -> m(x_A)` for a channel coupling of `(h, w, c)` images.

    Input `(N, h, w, c_A)`, output of `(N, h, w, output_channels)`: one
    `Conv2D` with `activation` per entry of `hidden_channels` ("same"
    padding; kernels 3, then 1, by default Glow's `3x3 -> 1x1`), then a linear
    `Conv2D(output_channels)` (kernel 3 by default) whose kernel and bias start
    at zero, so that a fresh coupling is the identity (with
    `scale="sigmoid"`, a scaling by `sigmoid(2)`).

    With `affine=True` the output is a pair `(shift, log_scale)` for
    `AffineCoupling`, the log-scale either

    * `"bounded"`: `scale * tanh(raw)` with a learned per-channel `scale`
      (started at 1), as `CouplingMLP` does (RealNVP's code), or
    * `"sigmoid"`: `log(sigmoid(raw + 2))`, Glow's (a scale in `(0, 1)`
      that starts near 0.88).

    Under a Keras mixed-precision policy the convolutions compute in the
    policy's compute dtype and the outputs return in the variable dtype.
    """

    def __init__(self, hidden_channels: Sequence[int], output_channels: int,
                 kernel_sizes: Sequence[int] | None = None, activation: Any = "relu",
                 affine: bool = False, scale: str = "bounded", context_units: int | None = None,
                 **kwargs: Any) -> None:
        """Builds the layer.

        Args:
          hidden_channels: the width of each hidden convolution (may be empty:
            one zero-initialised convolution).
          output_channels: `c_B`, the channels of part B.
          kernel_sizes: one odd kernel size per convolution, the output one
            last (`len(hidden_channels) + 1` of them); `None` for 3, then 1s,
            then 3 (Glow's).
          activation: Keras activation of the hidden convolutions.
          affine: return `(shift, log_scale)` for an affine coupling.
          scale: `"bounded"` or `"sigmoid"` (see above).
          context_units: `None`, or the size of a context the network is also
            given (`call(x_a, context=c)`, `c` of shape `(N, ...)`): flattened
            to `context_units` entries and broadcast over the image as that
            many constant feature maps beside `x_a`'s channels.
          **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).

        Raises:
          ValueError: for non-positive sizes, even kernels, a wrong number of
            kernel sizes, or an unknown `scale`.
        """
        super().__init__(**kwargs)
        self.hidden_channels = tuple(check_int(u, "hidden_channels entry")
                                     for u in hidden_channels)
        self.output_channels = check_int(output_channels, "output_channels")
        n = len(self.hidden_channels)
        if kernel_sizes is None:
            kernel_sizes = ([3] + [1] * (n - 1) if n else []) + [3]
        self.kernel_sizes = tuple(check_int(k, "kernel_sizes entry") for k in kernel_sizes)
        if len(self.kernel_sizes) != n + 1 or any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel_sizes must hold {n + 1} odd ints (one per hidden "
                             "convolution, then the output's). Received: kernel_sizes="
                             f"{list(kernel_sizes)}")
        self.affine = bool(affine)
        self.scale_kind = check_choice(scale, SCALES, "scale")
        self.context_units = None if context_units is None else check_int(
            context_units, "context_units")
        self.activation = keras.activations.get(activation)
        self.hidden_layers = [
            keras.layers.Conv2D(width, k, padding="same", activation=self.activation,
                                dtype=self.dtype_policy, name=f"hidden_{i}")
            for i, (width, k) in enumerate(zip(self.hidden_channels, self.kernel_sizes))]
        self.output_layer = keras.layers.Conv2D(
            self.output_channels * (2 if self.affine else 1), self.kernel_sizes[-1],
            padding="same", kernel_initializer="zeros", bias_initializer="zeros",
            dtype=self.dtype_policy, name="shift")

    def build(self, input_shape: Any) -> None:
        shape = tuple(input_shape)
        if len(shape) != 4:
            raise ValueError(f"{self.name} takes images (N, h, w, c). Received: input_shape="
                             f"{shape}")
        shape = shape[:-1] + (shape[-1] + (self.context_units or 0),)
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.filters,)
        self.output_layer.build(shape)
        if self.affine and self.scale_kind == "bounded":
            self.scale = self.add_weight(shape=(self.output_channels,), initializer="ones",
                                         name="log_scale_bound")

    def call(self, inputs: Any, context: TensorLike | None = None) -> Any:
        h = inputs
        context = check_context(self, context)
        if context is not None:  # constant feature maps, one per context entry
            context = keras.ops.cast(keras.ops.reshape(context, (-1, 1, 1, self.context_units)),
                                     h.dtype)
            h = keras.ops.concatenate([h, context * keras.ops.ones_like(h[..., :1])], axis=-1)
        for layer in self.hidden_layers:
            h = layer(h)
        out = keras.ops.cast(self.output_layer(h), self.variable_dtype)
        if not self.affine:
            return out
        shift, raw = out[..., :self.output_channels], out[..., self.output_channels:]
        if self.scale_kind == "bounded":
            log_scale = keras.ops.cast(self.scale, raw.dtype) * keras.ops.tanh(raw)
        else:
            log_scale = keras.ops.log_sigmoid(raw + 2.0)
        return shift, log_scale

    def compute_output_shape(self, input_shape: Any) -> Any:
        shape = tuple(input_shape)[:-1] + (self.output_channels,)
        return (shape, shape) if self.affine else shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden_channels": list(self.hidden_channels),
                "output_channels": self.output_channels,
                "kernel_sizes": list(self.kernel_sizes),
                "activation": keras.activations.serialize(self.activation),
                "affine": self.affine, "scale": self.scale_kind,
                "context_units": self.context_units}

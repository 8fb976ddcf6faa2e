"""MADE: the masked autoencoder of autoregressive flows (Germain et al. 2015), in Keras 3."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
from numpy.typing import ArrayLike

from tfp_nice._types import TensorLike
from tfp_nice._validation import check_int
from tfp_nice.networks.coupling_conv import check_context

__all__ = ["MADE", "check_order"]

ORDERS = ("natural", "reversed", "random")


def check_order(order: str | ArrayLike, size: int, seed: int | None = None,
                name: str = "MADE") -> np.ndarray:
    """The input order as an int array `order` (entry `order[k]` comes `k`-th: it
    depends on the entries `order[:k]`), from `"natural"`, `"reversed"`, `"random"`
    (drawn from `seed`) or a permutation of `range(size)`; a clear error otherwise."""
    if isinstance(order, str):
        if order == "natural":
            return np.arange(size)
        if order == "reversed":
            return np.arange(size)[::-1].copy()
        if order == "random":
            return np.random.default_rng(seed).permutation(size)
        raise ValueError(f"{name}: order must be one of {ORDERS} or a permutation of "
                         f"range({size}). Received: order={order!r}")
    array = np.asarray(order)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer) \
            or array.shape != (size,) or sorted(array.tolist()) != list(range(size)):
        raise ValueError(f"{name}: order must be a permutation of range({size}) (each entry's "
                         f"index once, in the order the entries come). Received: "
                         f"order={np.asarray(order).tolist()!r}")
    return array.astype(np.int64)


def _hidden_degrees(units, size):
    """TFP's and nflows' "equal" degrees: 1 .. size - 1 in turn (1 when size is 1)."""
    top = max(1, size - 1)
    return np.arange(units) % top + min(1, size - 1)


@keras.saving.register_keras_serializable(package="tfp_nice")
class MADE(keras.layers.Layer):
    """A masked autoencoder: `params[:, i, :]` depends only on the entries before `i`.

    Dense layers whose kernels are masked by degrees (Germain et al. 2015): the
    entry that comes `k`-th in `order` has degree `k + 1`, hidden units have
    degrees `1 .. D - 1` in turn, a hidden unit sees the units of lower or equal
    degree below it, and an output sees the hidden units of lower degree. So
    output `i` (its `params_per_entry` values) is a function of the entries
    that come before entry `i` (and of the context) only: one pass gives every
    entry's parameters, as an autoregressive step needs.

    Input `(N, D)` (or `(N, *event_shape)`, flattened); output
    `(N, D, params_per_entry)`. The last layer's kernel and bias start at zero,
    so a step built on it starts as the identity for transformers whose zero
    parameters are (the built-ins but Glow's sigmoid scale).

    With `residual=True`, each hidden layer after the first adds its input to
    its output (the layers must have one width, so the degrees match and the
    skip keeps the masks' order). With `context_units`, a context `(N, ...)`
    (flattened) reaches every hidden layer and the output through unmasked
    dense maps (`call(x, context=c)`): a conditional autoregressive step.

    Under a mixed-precision policy the layer computes in the compute dtype and
    returns its outputs in the variable dtype (float32).

    Examples:
        Output `i` does not move when entries at or after `i` (in the order)
        change:

        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> made = tn.MADE(3, params_per_entry=2, hidden_units=(8,), order="reversed")
        >>> _ = made.build((None, 3))
        >>> for w in made.trainable_weights:
        ...     _ = w.assign(np.random.default_rng(0).normal(size=w.shape))
        >>> x = np.float32([[1.0, 2.0, 3.0]])
        >>> a = made(x).numpy()
        >>> b = made(np.float32([[1.0, -5.0, 3.0]])).numpy()  # entry 1 changed
        >>> a.shape
        (1, 3, 2)
        >>> bool(np.allclose(a[:, [1, 2]], b[:, [1, 2]]))  # entry 2 comes first, then 1
        True
    """

    def __init__(self, event_size: int, params_per_entry: int = 2,
                 hidden_units: Sequence[int] = (50, 50), order: str | ArrayLike = "natural",
                 activation: str | Callable[..., Any] = "relu", residual: bool = False,
                 context_units: int | None = None, seed: int | None = None,
                 kernel_initializer: Any = "glorot_uniform", partial: bool = False,
                 **kwargs: Any) -> None:
        """Builds the layer.

        Args:
          event_size: `D`, the entries of one input (flattened).
          params_per_entry: the values it returns per entry (a transformer's
            `params_per_entry`).
          hidden_units: widths of the hidden layers; each needs at least
            `D - 1` units (one per degree), or some entry would lose inputs.
          order: `"natural"` (entry 0 first), `"reversed"`, `"random"` (from
            `seed`) or a permutation of `range(D)`: entry `order[k]` comes
            `k`-th.
          activation: the hidden layers' activation.
          residual: skip connections around the hidden layers after the first
            (all of one width).
          context_units: `None`, or the size of a context it is also given.
          seed: the random order's seed (the order drawn is what is saved).
          kernel_initializer: the hidden kernels' initialiser.
          partial: accept hidden layers narrower than `D - 1`: the hidden
            degrees then run `1 .. w` (`w` the narrowest width), so an entry
            sees at most the first `w` entries of the order (TFP's and nflows'
            behaviour at such sizes, e.g. 2x512 over MNIST's 784 pixels).
          **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`).

        Raises:
          ValueError: for an order that is not a permutation, a hidden layer
            narrower than the degrees need (naming it; unless `partial`),
            non-positive sizes, or
            `residual` with layers of different widths.
        """
        super().__init__(**kwargs)
        self.event_size = check_int(event_size, "event_size")
        self.params_per_entry = check_int(params_per_entry, "params_per_entry")
        self.hidden_units = tuple(check_int(u, "hidden_units entry") for u in hidden_units)
        self.order = check_order(order, self.event_size, seed, type(self).__name__)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.residual = bool(residual)
        self.context_units = None if context_units is None else check_int(
            context_units, "context_units")
        self.partial = bool(partial)
        needed = self.event_size - 1
        for k, units in enumerate(self.hidden_units):
            if units < needed and not self.partial:
                raise ValueError(
                    f"MADE: hidden layer {k} has {units} units; over {self.event_size} "
                    f"entries each hidden layer needs at least {needed} (one per degree 1.."
                    f"{needed}), or some entries would not see all the entries before them "
                    "(partial=True accepts that). "
                    f"Received: hidden_units={self.hidden_units}")
        if self.residual and len(set(self.hidden_units)) > 1:
            raise ValueError("MADE: residual=True adds each hidden layer's input to its "
                             "output, so the hidden layers need one width. Received: "
                             f"hidden_units={self.hidden_units}")
        self._masks = self._make_masks()

    def _make_masks(self):
        degrees_in = np.empty(self.event_size, np.int64)
        degrees_in[self.order] = np.arange(1, self.event_size + 1)
        masks, below = [], degrees_in
        for units in self.hidden_units:
            degrees = _hidden_degrees(units, self.event_size)
            masks.append((degrees[None, :] >= below[:, None]).astype("float32"))
            below = degrees
        out = np.repeat(degrees_in, self.params_per_entry)  # entry-major: i * P + p
        masks.append((out[None, :] > below[:, None]).astype("float32"))
        return masks

    @property
    def degrees(self) -> np.ndarray:
        """Each input entry's degree (`k + 1` for the entry that comes `k`-th)."""
        degrees = np.empty(self.event_size, np.int64)
        degrees[self.order] = np.arange(1, self.event_size + 1)
        return degrees

    def build(self, input_shape: Any = None) -> None:
        widths = (self.event_size,) + self.hidden_units
        outputs = self.event_size * self.params_per_entry
        self.kernels, self.biases, self.context_kernels = [], [], []
        for k, units in enumerate(self.hidden_units + (outputs,)):
            last = k == len(self.hidden_units)
            init = "zeros" if last else self.kernel_initializer
            self.kernels.append(self.add_weight(shape=(widths[k], units), initializer=init,
                                                name=f"kernel_{k}"))
            self.biases.append(self.add_weight(shape=(units,), initializer="zeros",
                                               name=f"bias_{k}"))
            if self.context_units is not None:
                self.context_kernels.append(self.add_weight(
                    shape=(self.context_units, units), initializer=init,
                    name=f"context_kernel_{k}"))

    def call(self, inputs: Any, context: TensorLike | None = None) -> Any:
        h = keras.ops.reshape(inputs, (-1, self.event_size))
        context = check_context(self, context)
        if context is not None:
            context = keras.ops.cast(keras.ops.reshape(context, (-1, self.context_units)),
                                     h.dtype)
        last = len(self.kernels) - 1
        for k, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            mask = keras.ops.convert_to_tensor(self._masks[k], kernel.dtype)
            pre = keras.ops.matmul(h, kernel * mask) + bias
            if context is not None:
                pre = pre + keras.ops.matmul(context, self.context_kernels[k])
            if k == last:
                h = pre
            elif self.residual and k > 0:
                h = h + self.activation(pre)
            else:
                h = self.activation(pre)
        out = keras.ops.reshape(h, (-1, self.event_size, self.params_per_entry))
        return keras.ops.cast(out, self.variable_dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (tuple(input_shape)[0], self.event_size, self.params_per_entry)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "event_size": self.event_size,
                "params_per_entry": self.params_per_entry,
                "hidden_units": list(self.hidden_units), "order": self.order.tolist(),
                "activation": keras.activations.serialize(self.activation),
                "residual": self.residual, "context_units": self.context_units,
                "partial": self.partial,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


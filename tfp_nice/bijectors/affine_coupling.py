"""RealNVP's affine coupling layer (Dinh et al. 2016), NICE's coupling with a scale."""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf
from numpy.typing import ArrayLike

from tfp_nice._types import TensorLike
from tfp_nice.bijectors._coupling import MaskedCoupling
from tfp_nice.transformers import Affine

__all__ = ["AffineCoupling"]


class AffineCoupling(MaskedCoupling):
    """Affine coupling layer (RealNVP, arXiv 1605.08803, eq. 7).

    The boolean `mask` splits `x` into a conditioning part `x_A = x[mask]` and
    a transformed part `x_B = x[~mask]`. With `(t, s) = shift_and_log_scale_fn(x_A)`:

        forward:  y_A = x_A,   y_B = x_B * exp(s) + t        fldj =  sum(s)
        inverse:  x_A = y_A,   x_B = (y_B - t) * exp(-s)     ildj = -sum(s)

    It is the coupling (`tfp_nice.Coupling`) of the `Affine` transformer.
    `forward` is the data -> latent direction when used in NICE's `f`, and the
    latent -> data direction inside `tfd.TransformedDistribution`, like
    `AdditiveCoupling`. With `s = 0` it is NICE's additive coupling.

    The log-scale must stay bounded for training to be stable.
    `tfp_nice.CouplingMLP(..., affine=True)` returns `s = scale * tanh(raw)`
    with a learned per-entry `scale`; `log_scale_bound=b` bounds any network
    further as `s = b * tanh(s_raw / b)` (close to the identity for small
    values; applied before the log-det, so the log-det stays exact). Whatever
    the network, `s` is finally clipped to `+-40` in float32 (`+-300` in
    float64), like `Rescaling`'s.

    `shift_and_log_scale_fn` sees part A as `[N, n_A]` (batch dimensions
    flattened), or as an image `[N, h, w, c_A]` for a mask that picks channels
    of an `(h, w, c)` event (`part_shapes` says which), and returns either a
    pair `(t, s)` of part B's shape (`[N, n_B]`, `[N, h, w, c_B]`) or one
    tensor holding `t` then `s` on its last axis (`[N, 2 n_B]`,
    `[N, h, w, 2 c_B]`); flat values are also taken for an image part, in
    flat order.

    Examples:
        Part B is scaled by `exp(s)` and shifted by `t`, both functions of part A;
        the log-det is `sum(s)`:

        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> mask = tn.partition_mask("halves", (4,))
        >>> b = tn.AffineCoupling(lambda x_a: (x_a, 0.5 * x_a), mask)  # t = x_A, s = x_A / 2
        >>> x = np.float32([[1.0, 2.0, 1.0, 1.0]])
        >>> np.round(b.forward(x).numpy(), 4)  # x_B * exp(s) + t
        array([[1.    , 2.    , 2.6487, 4.7183]], dtype=float32)
        >>> b.forward_log_det_jacobian(x, event_ndims=1).numpy()  # 0.5 + 1.0
        array([1.5], dtype=float32)
    """

    parameter_labels = ("shift", "log_scale")

    def __init__(self, shift_and_log_scale_fn: Callable[..., Any], mask: ArrayLike,
                 log_scale_bound: float | None = None, validate_args: bool = False,
                 name: str = "affine_coupling", context: TensorLike | None = None,
                 transformer: Affine | None = None) -> None:
        """Builds the bijector.

        Args:
          shift_and_log_scale_fn: callable or Keras layer as described above.
          mask: boolean (or 0/1) array of the event shape; `True` marks the
            conditioning part.
          log_scale_bound: `None`, or a float > 0 bounding `|s|` softly (the
            transformer `Affine("bounded", bound=log_scale_bound)`).
          validate_args: if `True`, calls assert that the shift and the raw
            log-scale are finite.
          name: name of the bijector.
          context: `None`, or a tensor `[N, ...]` the network is also given,
            as `shift_and_log_scale_fn(x_a, context=context)` (see
            `AdditiveCoupling`).
          transformer: `None`, or an `Affine` transformer (Glow's
            `Affine("sigmoid")` makes the scale from the raw value); instead of
            `log_scale_bound`.

        Raises:
          TypeError: if `shift_and_log_scale_fn` is not callable, or
            `transformer` is not an `Affine`.
          ValueError: for a bad mask or a non-positive `log_scale_bound`, or
            both `log_scale_bound` and `transformer`.
        """
        parameters = dict(locals())
        if log_scale_bound is not None and not float(log_scale_bound) > 0:
            raise ValueError(f"log_scale_bound must be > 0, got {log_scale_bound!r}.")
        if transformer is None:
            transformer = Affine() if log_scale_bound is None else Affine(
                "bounded", bound=float(log_scale_bound))
        elif log_scale_bound is not None:
            raise ValueError("AffineCoupling takes log_scale_bound or transformer, not both. "
                             f"Received: log_scale_bound={log_scale_bound!r}, "
                             f"transformer={transformer!r}")
        elif not isinstance(transformer, Affine):
            raise TypeError(f"AffineCoupling's transformer must be an Affine. Received: "
                            f"transformer={transformer!r}")
        super().__init__(shift_and_log_scale_fn, "shift_and_log_scale_fn", mask, transformer,
                         validate_args, parameters, name, context)

    @property
    def shift_and_log_scale_fn(self) -> Callable[..., Any]:
        return self._fn

    def _read(self, out: Any, like: tf.Tensor) -> Any:
        """The network's `(shift, log_scale)` pair, or one tensor holding the shift then
        the log-scale on its last axis (`[N, 2 n_b]`, `[N, h, w, 2 c_b]`), as the pair
        of part B's shape (`read_parameters` stacks them as `[N, *shape_b, 2]`)."""
        if isinstance(out, (tuple, list)):
            if len(out) != 2:
                raise ValueError(f"{self.name}: shift_and_log_scale_fn must return (shift, "
                                 f"log_scale), got {len(out)} values.")
            return super()._read(out, like)
        out = tf.convert_to_tensor(out)
        shape_b, n_b = self._partition.shape_b, self._partition.size_b
        if out.shape.rank == 2:
            width = n_b
        elif out.shape.rank == 1 + len(shape_b) and len(shape_b) > 1:
            width = shape_b[-1]
        else:
            width = None
        if width is None or out.shape[-1] not in (None, 2 * width):
            doubled = shape_b[:-1] + (2 * shape_b[-1],)
            expected = ", ".join(str(d) for d in ("batch",) + doubled)
            raise ValueError(f"{self.name}: shift_and_log_scale_fn must return a "
                             f"[{expected}] tensor or a pair, got shape "
                             f"{tuple(out.shape)}.")
        return super()._read((out[..., :width], out[..., width:]), like)

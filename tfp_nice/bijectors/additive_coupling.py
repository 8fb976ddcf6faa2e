"""NICE's additive coupling layer."""

from __future__ import annotations

from typing import Any, Callable

from numpy.typing import ArrayLike

from tfp_nice._types import TensorLike
from tfp_nice.bijectors._coupling import MaskedCoupling
from tfp_nice.transformers import Additive

__all__ = ["AdditiveCoupling"]


class AdditiveCoupling(MaskedCoupling):
    """NICE's additive coupling layer (arXiv 1410.8516, section 3.2).

    The boolean `mask` splits an event `x` into a conditioning part
    `x_A = x[mask]` and a transformed part `x_B = x[~mask]`. With the shift
    network `m = shift_fn`:

        forward:  y_A = x_A,   y_B = x_B + m(x_A)     forward_log_det_jacobian = 0
        inverse:  x_A = y_A,   x_B = y_B - m(y_A)     inverse_log_det_jacobian = 0

    It is the coupling (`tfp_nice.Coupling`) of the `Additive` transformer.
    The Jacobian is unit triangular, so the layer is volume preserving; its
    log-det is a zero of the batch shape of `x`. The Jacobian *matrix* still
    depends on `x` (its block `dm/dx_A`), so the bijector reports
    `is_constant_jacobian=False`, as TFP means the flag (an affine map): a
    `tfd.TransformedDistribution` over it raises `NotImplementedError` for
    `mean()`, `mode()`, `stddev()` and `covariance()`, as it does for
    `tfb.RealNVP`, instead of returning the pushed-forward base moments. The layer works the same in
    either direction of a flow: NICE uses its `forward` in the data -> latent
    map `f`; inside a `tfd.TransformedDistribution` (latent -> data) it appears
    as `tfb.Invert(AdditiveCoupling(...))` (see `tfp_nice.nice_bijector`).

    `shift_fn` sees part A with the batch dimensions of `x` flattened into `N`:
    as a matrix `[N, n_A]` of the entries where the mask is `True` in flat
    (row-major) order, or, for a mask that picks channels of an `(h, w, c)`
    event (the `"channel"` partition), as an image `[N, h, w, c_A]`, so that a
    convolution can take it (`part_shapes` says which). It must return the
    shift of part B in the same form (`[N, n_B]` or `[N, h, w, c_B]`; a flat
    `[N, n_B]` is also taken for an image part, in flat order), in the
    input's dtype.

    Examples:
        With the `"halves"` partition of 4 entries, part A is the first two; the
        shift network here is a plain function of part A:

        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> mask = tn.partition_mask("halves", (4,))
        >>> mask
        array([ True,  True, False, False])
        >>> b = tn.AdditiveCoupling(lambda x_a: 10.0 * x_a, mask)
        >>> x = np.float32([[1.0, 2.0, 3.0, 4.0]])
        >>> b.forward(x).numpy()
        array([[ 1.,  2., 13., 24.]], dtype=float32)
        >>> b.inverse(b.forward(x)).numpy()
        array([[1., 2., 3., 4.]], dtype=float32)
        >>> b.forward_log_det_jacobian(x, event_ndims=1).numpy()
        array([0.], dtype=float32)
    """

    parameter_labels = ("shift",)

    def __init__(self, shift_fn: Callable[..., Any], mask: ArrayLike, validate_args: bool = False,
                 name: str = "additive_coupling", context: TensorLike | None = None) -> None:
        """Builds the bijector.

        Args:
          shift_fn: callable or Keras layer `x_A -> m(x_A)` as described above.
            The bijector holds it but creates no variables of its own.
          mask: boolean (or 0/1) array of the event shape; `True` marks the
            conditioning part. `tfp_nice.partition_mask` makes the usual ones.
          validate_args: if `True`, calls assert that the shift is finite.
          name: name of the bijector.
          context: `None`, or a tensor `[N, ...]` (one row per example) the
            network is also given, as `shift_fn(x_a, context=context)`: a
            coupling conditioned on it (`p(x | context)`). The bijector is
            bound to these rows; its inputs must have the same `N`.

        Raises:
          TypeError: if `shift_fn` is not callable.
          ValueError: if the mask is not boolean, is a scalar, or leaves one
            side empty.
        """
        parameters = dict(locals())
        super().__init__(shift_fn, "shift_fn", mask, Additive(), validate_args, parameters,
                         name, context)

    @property
    def shift_fn(self) -> Callable[..., Any]:
        """The shift network `m`."""
        return self._fn

"""Consecutive couplings over one partition, split once and merged once."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice.bijectors._coupling import LogDetWithResult, MaskedCoupling, same_or_complement

__all__ = ["CouplingBlock", "fuse_couplings"]


class CouplingBlock(LogDetWithResult, tfp.bijectors.Bijector):
    """Couplings applied one after the other on parts split once: `forward = c_K o ... o c_1`.

    Each coupling's mask must be the first one's or its complement (NICE's
    couplings alternate the two sides). The block splits its input into the
    first mask's parts A and B once, lets every coupling change its side
    (coupling `k` with the first mask changes B given A, one with the
    complement changes A given B), and merges once; between couplings nothing
    is rearranged. The result and the log-det,

        forward_log_det_jacobian(x) = sum_k fldj_k(x_k)   (x_k: coupling k's input),

    are those of `tfb.Chain([c_K, ..., c_1])`, which `TFP`'s `RealNVP` docstring
    advises for several couplings with a `tfb.Permute` before them. Like each
    coupling, the block is not affine (`is_constant_jacobian=False`), and its
    `forward` is data -> latent wherever its couplings' is.

    Examples:
        Two NICE couplings over the odd/even partition of 4 entries:

        >>> import numpy as np
        >>> import tensorflow_probability as tfp
        >>> import tfp_nice as tn
        >>> mask = tn.partition_mask("odd_even", (4,))
        >>> first = tn.AdditiveCoupling(lambda x_a: x_a ** 2, mask)
        >>> second = tn.AdditiveCoupling(lambda x_a: 2.0 * x_a, ~mask)
        >>> block = tn.CouplingBlock([first, second])
        >>> x = np.float32([[1.0, 2.0, 3.0, 4.0]])
        >>> chain = tfp.bijectors.Chain([second, first])
        >>> np.array_equal(block.forward(x), chain.forward(x))
        True
    """

    def __init__(self, couplings: Sequence[MaskedCoupling], validate_args: bool = False,
                 name: str = "coupling_block") -> None:
        """Builds the block.

        Args:
          couplings: coupling bijectors (`Coupling`, `AdditiveCoupling`,
            `AffineCoupling`, `SplineCoupling`) in the order
            `forward` applies them, at least one; every mask the first one's or
            its complement.
          validate_args: kept for TFP's interface.
          name: name of the bijector.

        Raises:
          TypeError: for an entry that is not a coupling of this package.
          ValueError: for no couplings, or a mask that is neither the first
            one's nor its complement.
        """
        parameters = dict(locals())
        couplings = list(couplings)
        if not couplings:
            raise ValueError("CouplingBlock needs at least one coupling, got none.")
        for k, coupling in enumerate(couplings):
            if not isinstance(coupling, MaskedCoupling):
                raise TypeError(f"CouplingBlock takes the coupling bijectors of this package "
                                f"(Coupling and its kinds); entry {k} is a "
                                f"{type(coupling).__name__}.")
        first = couplings[0].mask
        self._same = []
        for k, coupling in enumerate(couplings):
            same = same_or_complement(coupling.mask, first)
            if same is None:
                raise ValueError(f"CouplingBlock: the mask of coupling {k} ({coupling.name}) "
                                 "is neither the first coupling's nor its complement.")
            self._same.append(same)
        self._couplings = couplings
        self._partition = couplings[0]._partition
        self._constant = all(c.constant_log_det for c in couplings)
        with tf.name_scope(name) as name:
            super().__init__(forward_min_event_ndims=self._partition.event_ndims,
                             is_constant_jacobian=False, validate_args=validate_args,
                             parameters=parameters, name=name)

    @property
    def couplings(self) -> list[MaskedCoupling]:
        """The couplings, in the order `forward` applies them."""
        return list(self._couplings)

    def _map(self, t, what, inverse):
        """`t` mapped by the block (or its inverse); the forward log-det (None for 0)."""
        self._couplings[0]._check_input(t, what)
        a, b, batch_shape = self._partition.split(t)
        log_det = None
        pairs = list(zip(self._couplings, self._same))
        for coupling, same in (reversed(pairs) if inverse else pairs):
            if same:
                b, part = coupling.transform_part(a, b, inverse)
            else:
                a, part = coupling.transform_part(b, a, inverse)
            log_det = part if log_det is None else log_det + part
        out = self._partition.merge(a, b, batch_shape)
        return out, tf.reshape(log_det, batch_shape)

    # Each affine coupling's network gives its log-scale with its shift: the log-det goes
    # to TFP's cache with the result (LogDetWithResult), so a log_prob runs every network
    # once.

    def _constant_log_det(self, t, what):
        self._couplings[0]._check_input(t, what)
        value = tf.add_n([c.constant_log_det_value(t.dtype) for c in self._couplings])
        return tf.broadcast_to(value, self._partition.batch_shape_tensor(t))

    def _forward_log_det_jacobian(self, x):
        if self._constant:
            return self._constant_log_det(x, "x")
        return self._map(x, "x", False)[1]

    def _inverse_log_det_jacobian(self, y):
        if self._constant:
            return self._constant_log_det(y, "y")
        return -self._map(y, "y", True)[1]


def fuse_couplings(layers: Sequence[tfp.bijectors.Bijector]) -> list[tfp.bijectors.Bijector]:
    """`layers` with each run of two or more consecutive couplings over one partition
    (or its complement) replaced by one `CouplingBlock` of them; the rest as they are."""
    out: list[tfp.bijectors.Bijector] = []
    run: list[MaskedCoupling] = []

    def close():
        if len(run) > 1:
            out.append(CouplingBlock(run, name="_".join((run[0].name, "to", run[-1].name))))
        else:
            out.extend(run)
        run.clear()

    for layer in layers:
        if isinstance(layer, MaskedCoupling) and (
                not run or same_or_complement(layer.mask, run[0].mask) is not None):
            run.append(layer)
            continue
        close()
        if isinstance(layer, MaskedCoupling):
            run.append(layer)
        else:
            out.append(layer)
    close()
    return out

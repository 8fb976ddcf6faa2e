"""Assembling NICE's couplings and rescaling into one bijector."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice import transformers
from tfp_nice._choices import COUPLING_KINDS
from tfp_nice.bijectors._coupling import Coupling
from tfp_nice.bijectors.additive_coupling import AdditiveCoupling
from tfp_nice.bijectors.affine_coupling import AffineCoupling
from tfp_nice.bijectors.masks import check_mask, partition_mask
from tfp_nice.bijectors.rescaling import Rescaling
from tfp_nice.bijectors.spline_coupling import DEFAULT_BINS, SplineCoupling, spline_parameter_count

tfb = tfp.bijectors

__all__ = ["COUPLINGS", "coupling_bijector", "coupling_masks", "generator", "nice_bijector"]

COUPLINGS = dict(zip(COUPLING_KINDS, (AdditiveCoupling, AffineCoupling, SplineCoupling)))


def coupling_bijector(transformer, fn, mask, name, context=None):
    """The coupling bijector of `transformer` (a `Transformer` or a built-in's name) over
    the network `fn`: `AdditiveCoupling`, `AffineCoupling` or `SplineCoupling` for the
    built-ins (which read their networks' outputs as those classes document), `Coupling`
    for any other transformer."""
    transformer = transformers.get(transformer)
    kind = type(transformer)
    if kind is transformers.Additive:
        return AdditiveCoupling(fn, mask, name=name, context=context)
    if kind is transformers.Affine:
        return AffineCoupling(fn, mask, name=name, context=context, transformer=transformer)
    if kind is transformers.Spline:
        return SplineCoupling(fn, mask, name=name, context=context, **transformer.get_config())
    return Coupling(fn, mask, transformer, name=name, context=context)


def coupling_masks(event_shape: Sequence[int], num_couplings: int,
                   partition: str | ArrayLike = "odd_even") -> list[np.ndarray]:
    """Returns the masks of `num_couplings` couplings, alternating the partition.

    Coupling `i` (0-based, in the data -> latent order) conditions on `mask`
    when `i` is even and on `~mask` when it is odd, so every entry is
    transformed by every other coupling, as in NICE.

    Args:
      event_shape: the event shape.
      num_couplings: positive int.
      partition: a name accepted by `tfp_nice.partition_mask`, or a boolean
        mask of the event shape.
    """
    event_shape = tuple(int(d) for d in event_shape)
    if isinstance(partition, str):
        mask = partition_mask(partition, event_shape)
    else:
        mask = check_mask(partition, event_shape)
    return [mask if i % 2 == 0 else ~mask for i in range(num_couplings)]


def _check_log_scale_shape(log_scale, event_shape):
    shape = tuple(getattr(log_scale, "shape", np.shape(log_scale)))
    if shape != tuple(event_shape[len(event_shape) - len(shape):]) or len(shape) > len(event_shape):
        raise ValueError(
            f"log_scale has shape {shape}; for event shape {tuple(event_shape)} it "
            f"must be {tuple(event_shape)} (one per entry) or a trailing part of "
            f"it such as {tuple(event_shape[-1:])} (one per channel)."
        )


def generator(f_layers: Sequence[tfp.bijectors.Bijector], validate_args: bool = False,
              name: str = "nice") -> tfp.bijectors.Bijector:
    """NICE's generator `g = f^{-1}` (latent -> data) from the layers of `f`.

    `f_layers` are bijectors in the order `f` (data -> latent) applies them;
    the result is `tfb.Invert(f)`, the bijector `tfd.TransformedDistribution`
    expects, and `result.bijector` is `f` itself (a `tfb.Chain`).

    Examples:
        Glow-style layers of `f` (data -> latent) turned into a distribution:

        >>> import numpy as np
        >>> import tensorflow_probability as tfp
        >>> import tfp_nice as tn
        >>> f_layers = [tn.Permutation(tn.reverse_permutation(2), event_shape=(2,)),
        ...             tn.AdditiveCoupling(lambda a: a ** 2, tn.partition_mask("halves", (2,))),
        ...             tn.Rescaling(np.float32([0.5, -0.5]))]
        >>> g = tn.generator(f_layers)
        >>> base = tfp.distributions.Sample(tfp.distributions.Logistic(0.0, 1.0), 2)
        >>> dist = tfp.distributions.TransformedDistribution(base, g)
        >>> x = np.float32([[0.3, -1.2]])
        >>> np.allclose(g.inverse(x), f_layers[2].forward(
        ...     f_layers[1].forward(f_layers[0].forward(x))))
        True
        >>> dist.sample(3, seed=(1, 2)).shape
        TensorShape([3, 2])
    """
    f_layers = list(f_layers)
    if not f_layers:
        raise ValueError("generator needs at least one layer of f, got none.")
    f = tfb.Chain(f_layers[::-1], validate_args=validate_args, name=f"{name}_f")
    return tfb.Invert(f, validate_args=validate_args, name=name)


def nice_bijector(
    event_shape: Sequence[int],
    shift_fns: Sequence[Callable[..., Any]],
    partition: str | ArrayLike = "odd_even",
    log_scale: tf.Tensor | None = None,
    coupling: str = "additive",
    validate_args: bool = False,
    name: str = "nice",
) -> tfp.bijectors.Bijector:
    """Returns NICE's generator `g`, a bijector mapping latent -> data.

    NICE (arXiv 1410.8516) defines the data -> latent map

        f = Rescaling(log_scale) o AdditiveCoupling_K o ... o AdditiveCoupling_1

    where coupling `k` uses the `k`-th shift network and the partition flips
    between consecutive couplings, and the rescaling is the last layer of `f`.
    With `coupling="affine"` the couplings are `AffineCoupling`s (RealNVP),
    with `"spline"` `SplineCoupling`s (8 bins on `[-3, 3]`).
    This function returns `g = f^{-1}` as `tfb.Invert(f)` (see `generator`,
    which chains any list of layers of `f`, e.g. with ActNorms or
    permutations between the couplings), so that

        log p(x) = log p_base(f(x)) + sum(log_scale)   (counted per entry).

    `result.bijector` is `f` itself (a `tfb.Chain`), e.g. to encode data.

    Args:
      event_shape: shape of one data point, `(d,)` or `(h, w, c)`.
      shift_fns: sequence of shift networks, one per coupling, in the order
        `f` applies them; network `k` maps the conditioning part of coupling
        `k` to the shift of its other part (see `AdditiveCoupling`).
      partition: `"halves"`, `"odd_even"`, `"checkerboard"`, `"channel"`, or
        a boolean mask of the event shape, for the first coupling.
      log_scale: `None` for no rescaling (a volume-preserving flow), or the
        log-scales (Tensor or variable) of the event shape or of its trailing
        dimensions (e.g. `(c,)`, one per channel).
      coupling: `"additive"` (NICE; the networks return shifts) or
        `"affine"` (RealNVP; the networks return `(shift, log_scale)`), or
        `"spline"` (Neural Spline Flows; the networks return
        `spline_parameter_count(8) = 23` raw values per transformed entry).
      validate_args: passed to every bijector.
      name: name of the returned bijector.

    Raises:
      ValueError: for an empty `shift_fns`, a bad partition or mask, an
        unknown `coupling`, or a `log_scale` whose shape does not fit
        `event_shape`.

    Examples:
        NICE over 6-dimensional data with two couplings, a learned rescaling and
        a logistic prior:

        >>> import numpy as np
        >>> import keras
        >>> import tensorflow_probability as tfp
        >>> import tfp_nice as tn
        >>> nets = [tn.CouplingMLP(hidden_units=(16,), output_units=3) for _ in range(2)]
        >>> log_scale = keras.Variable(np.zeros(6, "float32"))
        >>> g = tn.nice_bijector((6,), nets, partition="odd_even", log_scale=log_scale)
        >>> prior = tfp.distributions.Independent(
        ...     tfp.distributions.Logistic(np.zeros(6, "float32"), 1.0), 1)
        >>> dist = tfp.distributions.TransformedDistribution(prior, g)
        >>> x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
        >>> dist.log_prob(x).shape
        TensorShape([5])
        >>> len(dist.trainable_variables)  # 2 networks x 2 Dense x (kernel, bias) + log_scale
        9
        >>> f = g.bijector  # data -> latent; a fresh flow is the identity
        >>> np.allclose(f.forward(x), x)
        True
    """
    event_shape = tuple(int(d) for d in event_shape)
    shift_fns = list(shift_fns)
    if not shift_fns:
        raise ValueError("nice_bijector needs at least one shift network, got none.")
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {tuple(COUPLINGS)}, got {coupling!r}.")
    masks = coupling_masks(event_shape, len(shift_fns), partition)
    layers = []
    per_entry = spline_parameter_count(DEFAULT_BINS)
    for k, (fn, mask) in enumerate(zip(shift_fns, masks)):
        expected = getattr(fn, "output_units", None)
        n_b = int((~mask).sum())
        wanted = n_b * per_entry if coupling == "spline" else n_b
        if expected is not None and expected != wanted:
            what = (f"needs {wanted} ({per_entry} spline parameters for each "
                    f"of the {n_b} entries it transforms)" if coupling == "spline"
                    else f"transforms {n_b} entries")
            raise ValueError(
                f"Shift network {k} returns {expected} values but coupling {k} {what}."
            )
        layers.append(
            COUPLINGS[coupling](fn, mask, validate_args=validate_args, name=f"coupling_{k}")
        )
    if log_scale is not None:
        _check_log_scale_shape(log_scale, event_shape)
        layers.append(Rescaling(log_scale, validate_args=validate_args))
    return generator(layers, validate_args=validate_args, name=name)

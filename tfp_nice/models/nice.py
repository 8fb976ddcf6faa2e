"""NICE as a preset of `Flow`: its flags build the steps."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from tfp_nice._validation import check_choice, check_flag, check_int
from tfp_nice.bijectors import COUPLINGS, PARTITIONS, check_mask
from tfp_nice.models._context import embedded_shape, embedding_config, embedding_from_config
from tfp_nice.models.flow import Flow
from tfp_nice.models.priors import check_custom_prior, make_prior
from tfp_nice.steps import (
    PERMUTATIONS,
    CouplingStep,
    RescalingStep,
    build_steps,
    check_logit_alpha,
)
from tfp_nice.steps.base import check_context_shape

tfd = tfp.distributions

__all__ = ["NICE"]

RESCALING_INITS = RescalingStep.INITS


@keras.saving.register_keras_serializable(package="tfp_nice")
class NICE(Flow):
    """NICE (Dinh et al. 2014, arXiv 1410.8516): the `Flow` whose steps its flags build.

    A preset of `tfp_nice.Flow`: the flags below choose the steps (see
    `tfp_nice.steps.build_steps` for their order), and everything else (fit,
    log_prob, sample, export, ...) is `Flow`'s. It is saved by its flags, so
    `.keras` files of earlier releases load. Its steps own every weight: one
    `CouplingMLP` per coupling and, with `rescaling=True`, the `log_scale`
    vector of NICE's diagonal scaling layer (zeros at start, so a fresh model
    is the identity flow), handed to the bijectors whenever the model builds
    its distribution.

    Beyond NICE, `coupling="affine"` uses RealNVP's affine couplings,
    `permutation` puts a fixed or learned (LU) linear map before each
    coupling, `actnorm=True` a Glow ActNorm before each coupling, and
    `logit_alpha` RealNVP's logit preprocessing of data in `[0, 1]` first.

    Directions: `encode` is NICE's `f` (data -> latent; per coupling: ActNorm,
    permutation, coupling; then the rescaling), `decode` is `g = f^{-1}`
    (latent -> data), and `distribution` is
    `tfd.TransformedDistribution(prior, g)`, so

        log p(x) = log p_prior(f(x)) + sum(log_scale).

    `distribution` keeps TFP's contracts: its `trainable_variables` are the
    model's trainable weights (the `tf.Variable` behind each Keras variable),
    so TFP's custom-loop idiom trains the model; its `mean()`, `mode()`,
    `stddev()` and `covariance()` raise `NotImplementedError` (the couplings are
    not affine), as for `tfb.RealNVP`: estimate them from `sample`.

    Mixed precision, training by `fit` and what the logs report are `Flow`'s
    (see there).

    Examples:
        Train on two moons, then score, sample, encode and export:

        >>> import tempfile
        >>> import keras
        >>> import tfp_nice as tn
        >>> x = tn.data.two_moons(1024, seed=0)
        >>> model = tn.NICE(event_shape=(2,), num_couplings=4, hidden_units=(32, 32),
        ...                 seed=0)
        >>> model.compile(keras.optimizers.Adam(1e-3))
        >>> history = model.fit(x, epochs=3, batch_size=128, verbose=0)
        >>> sorted(history.history)
        ['bits_per_dim', 'loss', 'nll']
        >>> model.log_prob(x[:4]).shape
        TensorShape([4])
        >>> model.sample(8, seed=1).shape
        TensorShape([8, 2])
        >>> z = model.encode(x[:4])  # f: data -> latent; decode is its inverse
        >>> bool(keras.ops.all(keras.ops.abs(model.decode(z) - x[:4]) < 1e-4))
        True
        >>> folder = model.export(tempfile.mkdtemp() + "/nice")  # served by TensorFlow alone
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        num_couplings: int = 4,
        hidden_units: Sequence[int] = (1000,) * 5,
        partition: str | ArrayLike = "odd_even",
        rescaling: bool = True,
        prior: str | tfp.distributions.Distribution = "logistic",
        activation: str | Callable = "relu",
        num_levels: int | None = None,
        coupling: str = "additive",
        permutation: str | None = None,
        actnorm: bool = False,
        rescaling_init: str = "data",
        seed: int = 0,
        logit_alpha: float | None = None,
        context_shape: Sequence[int] | None = None,
        embedding: keras.layers.Layer | None = None,
        num_bins: int | None = None,
        tail_bound: float | None = None,
        **kwargs: Any,
    ) -> None:
        """Builds the model and all its weights.

        Args:
          event_shape: shape of one example, `(d,)` or `(h, w, c)`.
          num_couplings: number of additive coupling layers (NICE: 4).
          hidden_units: widths of each coupling network's hidden layers
            (NICE's MNIST model: five of 1000).
          partition: `"odd_even"` (NICE), `"halves"`, `"checkerboard"`,
            `"channel"`, or a boolean mask of the event shape; the sides swap
            between consecutive couplings.
          rescaling: whether `f` ends with NICE's diagonal rescaling. Without
            it the flow is volume preserving.
          prior: `"logistic"` (NICE's MNIST/SVHN prior), `"normal"`, or a
            `tfd.Distribution` with this event shape, batch shape `()` and the
            model's dtype (its variables, if any, are not trained; a model with
            such a prior cannot be saved to `.keras`).
          activation: activation of the hidden layers.
          num_levels: number of discrete levels the data were dequantized from
            (e.g. 256 for MNIST, 17 for scikit-learn's digits), used for
            bits/dim; `None` for continuous data.
          coupling: `"additive"` (NICE), `"affine"` (RealNVP, with the
            log-scale bounded by a learned `scale * tanh`) or `"spline"`
            (Neural Spline Flows' monotone rational-quadratic splines, the
            identity outside `[-tail_bound, tail_bound]`).
          permutation: `None` (NICE: the partition alternates), `"reverse"`,
            `"random"` (fixed, drawn from `seed`, saved with the model) or
            `"lu"` (a learned invertible linear map, LU-parameterised,
            starting at a random rotation drawn from `seed`), before each
            coupling.
          actnorm: put an ActNorm before each coupling, initialised to zero
            mean and unit variance on the data-dependent start's sample (see
            `initialize_from_data`).
          rescaling_init: `"data"` (default) sets the rescaling's log-scales
            from the start's sample so that the latent has the prior's
            standard deviation; `"zeros"` is NICE's start. On digits "data"
            reached 2.85 held-out bits/dim after 50 epochs where "zeros" was
            still at 4.48 (`examples/rescaling_ablation.py`).
          seed: int seed of the random permutations and rotations, and of the
            rows the data-dependent start is computed from.
          logit_alpha: `None` (NICE), or a number in `[0, 0.5)` to make
            RealNVP's logit preprocessing `logit(alpha + (1 - 2 alpha) x)` the
            first step of `f`, for data in `[0, 1]` (dequantized images; 0.05
            is RealNVP's choice for MNIST). Its log-det is part of the flow's,
            so `log_prob` and bits/dim stay in data space.
          context_shape: `None` (NICE), or the shape of one context row: a
            conditional NICE, `p(x | context)`, whose coupling networks see
            the flattened context beside their conditioning half (see `Flow`
            for the methods that take `context=`).
          embedding: `None`, or a Keras layer mapping the raw context rows to
            what the coupling networks see (see `Flow`).
          num_bins: a spline coupling's bins per entry (default 8).
          tail_bound: a spline coupling's interval `[-B, B]` (default 3.0; the
            data-dependent rescaling, NICE's last step, does not reach the
            couplings, so choose it for the data as the couplings see it).
          **kwargs: passed to `keras.Model` (`name`, `dtype`, ...).

        Raises:
          ValueError: for any argument out of range (the message says which).
        """
        kwargs.pop("autocast", None)
        event_shape = tuple(event_shape)
        if not event_shape:
            raise ValueError("NICE needs a non-empty event_shape. Received: event_shape=()")
        self.event_shape = tuple(check_int(d, "event_shape entry") for d in event_shape)
        self.num_couplings = check_int(num_couplings, "num_couplings")
        self.hidden_units = tuple(check_int(u, "hidden_units entry") for u in hidden_units)
        if isinstance(partition, str):
            self.partition = check_choice(partition, PARTITIONS, "partition")
        else:
            self.partition = check_mask(partition, self.event_shape)
        self.rescaling = check_flag(rescaling, "rescaling")
        policy = keras.dtype_policies.get(kwargs.get("dtype"))
        flow_dtype = policy.variable_dtype
        if isinstance(prior, str):
            base = make_prior(prior, self.event_shape, flow_dtype)  # checks the name
        else:
            check_custom_prior(prior, self.event_shape, flow_dtype)
            base = prior
        self.activation = activation
        self.coupling = check_choice(coupling, tuple(COUPLINGS), "coupling")
        self.permutation = check_choice(permutation, PERMUTATIONS, "permutation")
        self.actnorm = check_flag(actnorm, "actnorm")
        self.rescaling_init = check_choice(rescaling_init, RESCALING_INITS, "rescaling_init")
        seed = check_int(seed, "seed", minimum=-2**63)
        self.logit_alpha = check_logit_alpha(logit_alpha)
        context_shape = check_context_shape(context_shape, "NICE")
        steps_context = embedded_shape(embedding, context_shape, flow_dtype, "NICE")

        target_std = None
        if rescaling:
            target_std = np.asarray(keras.ops.convert_to_numpy(base.stddev()), np.float64)
        # The order of f lives in build_steps alone.
        steps = build_steps(
            self.event_shape, self.num_couplings, self.hidden_units, partition=self.partition,
            coupling=coupling, permutation=permutation, actnorm=actnorm, rescaling=rescaling,
            rescaling_init=rescaling_init, target_std=target_std, activation=activation,
            seed=seed, dtype=policy, logit_alpha=self.logit_alpha,
            context_shape=steps_context, num_bins=num_bins, tail_bound=tail_bound)
        super().__init__(steps, prior=prior, num_levels=num_levels, seed=seed,
                         context_shape=context_shape, embedding=embedding, **kwargs)

    def _steps_of(self, kind):
        return [step for step in self.steps if isinstance(step, kind)]

    @property
    def coupling_networks(self) -> list[keras.layers.Layer]:
        """The coupling networks `m`, one per coupling, in `f`'s order."""
        return [step.network for step in self._steps_of(CouplingStep)]

    @property
    def log_scale(self) -> keras.Variable:
        """The rescaling's log-scales (a Keras variable), or `None` without rescaling."""
        rescaling = self._steps_of(RescalingStep)
        return rescaling[0].log_scale if rescaling else None

    def get_config(self) -> dict[str, Any]:
        self._check_serializable()
        partition = self.partition if isinstance(self.partition, str) else self.partition.tolist()
        config = {
            "event_shape": list(self.event_shape),
            "num_couplings": self.num_couplings,
            "hidden_units": list(self.hidden_units),
            "partition": partition,
            "rescaling": self.rescaling,
            "prior": self.prior,
            "activation": keras.activations.serialize(keras.activations.get(self.activation)),
            "num_levels": self.num_levels,
            "coupling": self.coupling,
            "permutation": self.permutation,
            "actnorm": self.actnorm,
            "rescaling_init": self.rescaling_init,
            "seed": self.seed,
            "logit_alpha": self.logit_alpha,
        }
        if self.coupling == "spline":  # files of other models stay as they were
            step = self._steps_of(CouplingStep)[0]
            config.update(num_bins=step.num_bins, tail_bound=step.tail_bound)
        if self.conditional:  # files of unconditional models stay as they were
            config["context_shape"] = list(self.context_shape or ())
            config.update(embedding_config(self.embedding))
            if self.conditional_prior:
                config["conditional_prior"] = True
        # keras.Model's own entries (name, trainable, dtype); the steps follow from the flags.
        return {**keras.Model.get_config(self), **config}

    @classmethod
    def from_config(cls, config: dict[str, Any],
                    custom_objects: dict[str, Any] | None = None) -> NICE:
        return cls(**embedding_from_config(config, custom_objects))

"""`Flow`: any list of steps and a prior, as a Keras 3 model trained by maximum likelihood.

The model is three parts: its density (`flow_density.FlowDensity`), its training
(`flow_training.FlowTraining`) and, here, what it holds and how it saves."""

from __future__ import annotations

import os
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow_probability as tfp

from tfp_nice._validation import check_int
from tfp_nice.models._context import embedded_shape, embedding_config, embedding_from_config
from tfp_nice.models.flow_density import FlowDensity
from tfp_nice.models.flow_training import FlowTraining
from tfp_nice.models.priors import PRIORS, check_custom_prior, make_prior
from tfp_nice.steps import FlowStep, check_chain
from tfp_nice.steps.base import check_context_shape, context_shape_of

tfd = tfp.distributions

__all__ = ["Flow"]


@keras.saving.register_keras_serializable(package="tfp_nice")
class Flow(FlowDensity, FlowTraining, keras.Model):
    """A normalizing flow: a list of steps (data -> latent) and a prior, as a Keras 3 model.

    `steps` are `tfp_nice` steps (`CouplingStep`, `ActNormStep`,
    `PermutationStep`, `LULinearStep`, `RescalingStep`, `LogitStep`,
    `SqueezeStep`, or your own `FlowStep`) in the order NICE's `f` applies them,
    data -> latent; each step's `event_shape` must be the previous step's
    `output_event_shape`. The data have the first step's `event_shape`, the
    latent the last step's `output_event_shape`, and the prior lives there.

    Directions: `encode` is `f` (data -> latent), `decode` is `g = f^{-1}`
    (latent -> data), and `distribution` is
    `tfd.TransformedDistribution(prior, g)`, so that

        log p(x) = log p_prior(f(x)) + sum_k log |det df_k/dh_{k-1}|.

    The model asks its steps what it needs: `needs_data` (a data-dependent
    start, which `fit` runs once as a loop of each step's `adapt`),
    `constant_log_det` (for an exact `entropy`), `affine`, `input_range` (a
    check of the data when the first step has one) and the shapes. The steps
    are saved with the model (`.keras`), each as a Keras object.

    `distribution` keeps TFP's contracts: its `trainable_variables` are the
    model's trainable weights; its `mean()`, `mode()`, `stddev()` and
    `covariance()` are TFP's pushed-forward moments only when every step is
    affine, and raise `NotImplementedError` otherwise (couplings).

    Mixed precision: under a Keras policy such as `"mixed_bfloat16"` (global,
    or `dtype=`), the coupling networks compute in the policy's compute dtype;
    the flow's data, weights, log-densities and loss stay in `flow_dtype`
    (float32), and half-precision data is refused. Build the steps under the
    same policy as the model.

    Training: `compile(optimizer=...)` then `fit(x)` minimises the mean
    negative log-likelihood; no loss is given. `call(x)` and `predict(x)`
    return `log_prob(x)`. The logs report `loss` (the objective: mean NLL in
    nats, plus any regulariser), `nll` (mean NLL in nats per example) and
    `bits_per_dim` (with the dequantization constant `D log num_levels` when
    `num_levels` is set, see `tfp_nice.data.bits_per_dim`).

    Conditional flows, `p(x | context)`: with `context_shape`, every method
    that maps or scores data takes `context=`, rows of shape
    `(N, *context_shape)`, one per example (`log_prob(x, context=c)`,
    `encode`, `decode`, `inpaint`; `sample(n, context=c)` draws `n` per row).
    The steps that take it were built with the same `context_shape`
    (`CouplingStep(..., context_shape=...)`, `multiscale_steps(...,
    context_shape=...)`); their networks see it beside their part.
    `conditional_distribution(c)` is the `tfd.TransformedDistribution` of `x`
    given those rows, a plain TFP distribution whose `log_prob(x)` scores row
    `i` of `x` given row `i` of `c` (no `bijector_kwargs` needed).
    `fit` takes the pairs the Keras way: `fit(x, c)`, `fit(x=(x, c))`,
    `fit({"x": x, "context": c})`, or a `tf.data.Dataset` of `(x, c)` batches
    (`evaluate` and `AveragedEarlyStopping((x_val, c_val), ...)` likewise);
    the data-dependent start sees the context of its rows. An `embedding`
    layer maps the raw context rows once per call before the steps see them
    (trained with the flow, as nflows' `embedding_net`).

    Examples:
        A flow over 2-D points from a hand-written list of steps (one
        coupling with a network of the user's), trained, sampled and exported:

        >>> import tempfile
        >>> import keras
        >>> import tfp_nice as tn
        >>> x = tn.data.two_moons(1024, seed=0)
        >>> mask = tn.partition_mask("halves", (2,))
        >>> steps = [tn.ActNormStep((2,), name="actnorm"),
        ...          tn.CouplingStep((2,), mask, hidden_units=(32, 32), name="coupling_0"),
        ...          tn.CouplingStep((2,), ~mask, coupling="affine", name="coupling_1",
        ...                          network=keras.Sequential([keras.layers.Dense(32, "relu"),
        ...                                                    keras.layers.Dense(2)]))]
        >>> model = tn.Flow(steps, prior="normal", seed=0)
        >>> model.compile(keras.optimizers.Adam(1e-3))
        >>> _ = model.fit(x, epochs=3, batch_size=128, verbose=0)  # ActNorm from data first
        >>> [step.needs_data for step in model.steps]
        [True, False, False]
        >>> model.latent_shape, tuple(model.sample(8, seed=1).shape)
        ((2,), (8, 2))
        >>> folder = model.export(tempfile.mkdtemp() + "/flow")  # served by TensorFlow alone
    """

    def __init__(self, steps: Sequence[FlowStep], prior: str | tfp.distributions.Distribution = "normal",
                 num_levels: int | None = None, seed: int = 0,
                 context_shape: Sequence[int] | None = None,
                 embedding: keras.layers.Layer | None = None, conditional_prior: bool = False,
                 **kwargs: Any) -> None:
        """Builds the model over its steps.

        Args:
          steps: the steps of `f` (data -> latent), in its order.
          prior: `"normal"` (standard normal, the default), `"logistic"`
            (NICE's MNIST prior), or a `tfd.Distribution` over the latent shape
            with batch shape `()` and the model's dtype (its variables, if any,
            are not trained; a model with such a prior cannot be saved to
            `.keras`).
          num_levels: number of discrete levels the data were dequantized from
            (e.g. 256 for 8-bit images), used for bits/dim; `None` for
            continuous data.
          seed: int seed of the rows the data-dependent start is computed from.
          context_shape: `None` (an unconditional flow), or the shape of one
            context row: a conditional flow, whose conditional steps take
            contexts of this shape (or of the embedding's output shape).
          embedding: `None`, or a Keras layer (nflows' `embedding_net`) that
            maps the raw context rows `(N, *context_shape)` to what the
            conditional steps take, once per call, trained with the flow and
            saved with it (a layer Keras can serialize). The steps are built
            with its output shape as their `context_shape`.
          conditional_prior: a conditional flow's prior given the context: the
            named prior's location and log-scale per latent entry are a dense
            map of the (embedded) context, starting at zero (the standard
            prior), trained with the flow (a class-conditional prior, Glow's
            `y`-conditioned top prior).
          **kwargs: passed to `keras.Model` (`name`, `dtype`, ...).

        Raises:
          ValueError: for no steps, steps whose shapes do not chain, repeated
            step names, steps of another dtype than the model's, a prior of
            the wrong shape, a `context_shape` that is not the conditional
            steps' (given with none of them, or missing with some), or an
            embedding whose output shape is not theirs or without a context.
          TypeError: for a step that is not a `FlowStep`, or an embedding that
            is not a Keras layer.
        """
        # Under a mixed-precision policy only the coupling networks compute in
        # half precision; the flow takes and returns float32 (see flow_dtype), so
        # Keras must neither cast its inputs nor its own weights.
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        steps = check_chain(steps, type(self).__name__)
        for step in steps:
            if step.variable_dtype != self.flow_dtype:
                raise ValueError(
                    f"{type(self).__name__}: step {step.name!r} keeps {step.variable_dtype} "
                    f"weights, but the model's dtype policy {self.dtype_policy.name!r} keeps "
                    f"{self.flow_dtype}; build the steps with the model's dtype.")
        self.event_shape = tuple(steps[0].event_shape)
        self.latent_shape = tuple(steps[-1].output_event_shape)
        self.num_dims = int(np.prod(self.event_shape))
        if isinstance(prior, str):
            make_prior(prior, self.latent_shape, self.flow_dtype)  # checks the name
        else:
            check_custom_prior(prior, self.latent_shape, self.flow_dtype)
        self.prior = prior
        if num_levels is not None:
            num_levels = check_int(num_levels, "num_levels", minimum=2)
        self.num_levels = num_levels
        self.seed = check_int(seed, "seed", minimum=-2**63)
        self.context_shape = check_context_shape(context_shape, type(self).__name__)
        self.embedding = embedding
        embedded = embedded_shape(embedding, self.context_shape, self.flow_dtype,
                                  type(self).__name__)
        taken = context_shape_of(steps, type(self).__name__)
        if embedding is not None and taken != embedded:
            raise ValueError(f"{type(self).__name__}: the embedding maps a context row of "
                             f"shape {self.context_shape} to shape {embedded}, but the "
                             f"steps take contexts of shape {taken}; build the conditional "
                             f"steps with context_shape={embedded}.")
        if embedding is None and taken != self.context_shape:
            if taken is None:
                raise ValueError(f"{type(self).__name__}: context_shape={self.context_shape} "
                                 "was given, but no step takes a context; build the steps "
                                 "with context_shape too.")
            raise ValueError(f"{type(self).__name__}: the steps are conditional on contexts "
                             f"of shape {taken}; give context_shape={taken} (got "
                             f"{self.context_shape}).")
        self.steps = steps
        self.conditional_prior = bool(conditional_prior)
        self.prior_network = None
        if self.conditional_prior:
            if not self.conditional or not isinstance(prior, str):
                raise ValueError(f"{type(self).__name__}: conditional_prior=True needs a "
                                 "conditional flow (context_shape) and a named prior "
                                 f"({', '.join(PRIORS)}).")
            size = int(np.prod(self.latent_shape))
            self.prior_network = keras.layers.Dense(
                2 * size, kernel_initializer="zeros", bias_initializer="zeros",
                dtype=self.dtype_policy, name="prior_network")
            self.prior_network.build((None, int(np.prod(embedded))))
        self.data_initialized = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False,
            name="data_initialized")
        self._nll_metric = keras.metrics.Mean(name="nll")
        self._bpd_metric = keras.metrics.Mean(name="bits_per_dim")
        self.built = True
    @property
    def conditional(self) -> bool:
        """Whether the flow is conditional (`context_shape` given)."""
        return self.context_shape is not None

    @property
    def flow_dtype(self) -> str:
        """The dtype of the flow's data, latents, weights and log-densities.

        The policy's variable dtype: `float32` under `"float32"`,
        `"mixed_float16"` and `"mixed_bfloat16"`, `float64` under `"float64"`.
        Under a mixed policy only the coupling networks compute in half
        precision (and hand back their outputs in this dtype); the couplings'
        add, the scales, the log-dets, the prior and the loss stay in it.
        """
        return self.variable_dtype

    def export(self, filepath: str | os.PathLike, format: str = "tf_saved_model",
               verbose: bool | None = None, **kwargs: Any) -> Any:
        """Writes a SavedModel with `tfp_nice.export_saved_model` (see there).

        Keras's own export serves only `call`; this one serves `log_prob`,
        `sample`, `encode`, `decode` and the model's metadata. Other formats go
        to `keras.Model.export`.
        """
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        from tfp_nice.export import export_saved_model  # the layer above; imported on use

        meta = export_saved_model(self, filepath, **kwargs)
        if verbose:
            print(f"Saved a tfp_nice SavedModel at {filepath}: signatures "
                  f"{', '.join(meta['signatures'])}.")
        return meta

    def _check_serializable(self):
        if not isinstance(self.prior, str):
            raise NotImplementedError(
                f"A {type(self).__name__} model with a custom prior distribution cannot be "
                f"serialized; use prior in {PRIORS} to save it.")

    def get_config(self) -> dict[str, Any]:
        self._check_serializable()
        return {**super().get_config(),
                "steps": [keras.saving.serialize_keras_object(step) for step in self.steps],
                "prior": self.prior, "num_levels": self.num_levels, "seed": self.seed,
                "context_shape": None if self.context_shape is None else list(
                    self.context_shape),
                **embedding_config(self.embedding),
                **({"conditional_prior": True} if self.conditional_prior else {})}

    @classmethod
    def from_config(cls, config: dict[str, Any],
                    custom_objects: dict[str, Any] | None = None) -> Flow:
        config = dict(config)
        if "steps" in config:
            config["steps"] = [keras.saving.deserialize_keras_object(
                step, custom_objects=custom_objects) for step in config["steps"]]
        return cls(**embedding_from_config(config, custom_objects))


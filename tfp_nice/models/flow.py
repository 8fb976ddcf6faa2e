"""`Flow`: any list of steps and a prior, as a Keras 3 model trained by maximum likelihood."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice._validation import check_int, check_positive_float
from tfp_nice.bijectors import fuse_couplings, generator
from tfp_nice.data.quantization import bits_per_dim
from tfp_nice import _private_api
from tfp_nice.models import inpainting
from tfp_nice.models._context import (
    as_context,
    checked_context,
    data_pair,
    embedded_shape,
    embedding_config,
    embedding_from_config,
)
from tfp_nice.models._inputs import as_flow_input
from tfp_nice.models.priors import PRIORS, check_custom_prior, make_prior
from tfp_nice.models.training import (
    StopOnNonFiniteLoss,
    can_stream,
    check_training_data,
    epoch_batches,
    start_sample,
)
from tfp_nice.steps import FlowStep, check_chain
from tfp_nice.steps.base import check_context_shape, context_shape_of

tfd = tfp.distributions

__all__ = ["Flow"]


def _symbolic(value):
    """Whether `value` is a graph tensor (in a `tf.function`), whose value is not known."""
    return tf.is_tensor(value) and not hasattr(value, "numpy")


def _python_number(value):
    """An eager tensor's value as a Python number (others unchanged), for the checks."""
    return value.numpy().item() if tf.is_tensor(value) and value.shape.rank == 0 else value


@keras.saving.register_keras_serializable(package="tfp_nice")
class Flow(keras.Model):
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

    def __init__(self, steps: Sequence[FlowStep], prior: str | tfd.Distribution = "normal",
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

    # --- the flow -------------------------------------------------------------------------

    @property
    def conditional(self) -> bool:
        """Whether the flow is conditional (`context_shape` given)."""
        return self.context_shape is not None

    def _refuse_unbound(self, what, instead):
        if self.conditional:
            raise ValueError(f"{type(self).__name__} {self.name!r} is conditional (context_shape="
                             f"{self.context_shape}): it has no {what} without a context; use "
                             f"{instead}(context).")

    @property
    def bijector(self) -> tfp.bijectors.Bijector:
        """The generator `g` (latent -> data) over the current weights.

        `g.bijector` is `f` (a `tfb.Chain`); each run of consecutive couplings
        over one partition is one `CouplingBlock` in it, which splits its input
        once for all of them. A conditional flow has none without a context:
        `conditional_bijector(context)`.
        """
        self._refuse_unbound("bijector", "conditional_bijector")
        return self._generator(None)

    def _generator(self, context):
        return generator(fuse_couplings([step.bijector(context) for step in self.steps]),
                         name=self.name)

    def conditional_bijector(self, context) -> tfp.bijectors.Bijector:
        """A conditional flow's generator `g` bound to context rows `(N, *context_shape)`:
        its inputs have the same `N` rows, row `i` mapped given context row `i`."""
        if not self.conditional:
            raise ValueError(f"{type(self).__name__} {self.name!r} is not conditional (built "
                             "without context_shape); use .bijector.")
        return self._generator(self._embed(self._as_context(context)))

    def _embed(self, c):
        """The raw context rows through the embedding (in the flow's dtype), if any."""
        if c is None or self.embedding is None:
            return c
        return tf.cast(self.embedding(c), self.flow_dtype)

    def conditional_distribution(self, context) -> tfd.Distribution:
        """`tfd.TransformedDistribution(prior, g bound to context)`: `x` given these rows.

        Its `log_prob(x)` takes `x` of `N` rows (row `i` given context row
        `i`). Its `sample` draws one example per bound row: `sample(N)`
        (shape `(N, ...)`) over the flow's own prior (batch shape `()`), or
        `sample()` (shape `(N, ...)`) with `conditional_prior=True`, whose
        prior has one batch member per row (batch shape `(N,)`). Any other
        count does not fit the `N` bound rows and fails in the networks: for
        `n` per row use `Flow.sample(n, context=c)`.
        """
        if not self.conditional:
            self.conditional_bijector(context)  # the error
        c = self._embed(self._as_context(context))
        return tfd.TransformedDistribution(self._base_given(c), self._generator(c),
                                           name=type(self).__name__)

    def _base_given(self, c):
        """The prior of the latents of rows given embedded context rows `c` (batch shape
        `(N,)` with a conditional prior; the flow's own prior otherwise)."""
        if self.prior_network is None:
            return self.base_distribution
        params = tf.cast(self.prior_network(tf.reshape(c, [tf.shape(c)[0], -1])),
                         self.flow_dtype)
        shape = tf.concat([tf.shape(c)[:1], self.latent_shape], 0)
        loc, log_scale = (tf.reshape(p, shape) for p in tf.split(params, 2, axis=1))
        family = tfd.Logistic if self.prior == "logistic" else tfd.Normal
        return tfd.Independent(family(loc, tf.exp(log_scale)),
                               reinterpreted_batch_ndims=len(self.latent_shape))

    def _draw(self, num_samples, temperature, seed):
        """`num_samples` examples of an unconditional flow: the prior's draw times the
        temperature, decoded (`sample` and the SavedModel's `sample` both draw here)."""
        z = self.base_distribution.sample(num_samples, seed=seed)
        return self.decode(z * tf.cast(temperature, z.dtype))

    def _sample_rows(self, num_samples, c, temperature, seed):
        """`num_samples` draws per embedded context row of `c`, `(num_samples, N, ...)`;
        the temperature scales each latent's spread about its prior's location."""
        rows = tf.shape(c)[0]
        repeated = tf.tile(c, tf.concat([[num_samples], tf.ones_like(tf.shape(c)[1:])], 0))
        if self.prior_network is None:
            z = self.base_distribution.sample(num_samples * rows, seed=seed)
            z = z * tf.cast(temperature, z.dtype)
        else:
            base = self._base_given(repeated)
            loc = base.distribution.loc
            z = loc + tf.cast(temperature, loc.dtype) * (base.sample(seed=seed) - loc)
        x = self._generator(repeated).forward(z)
        return tf.reshape(x, tf.concat([[num_samples, rows], tf.shape(x)[1:]], 0))

    def _as_context(self, context, x=None):
        """`context` as a tensor of the flow's dtype and shape `(N, *context_shape)`, with
        `N` the rows of `x` when given, or an error naming what is wrong."""
        return as_context(self, context, x)

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

    @property
    def base_distribution(self) -> tfd.Distribution:
        """The prior over the latent space (shape `latent_shape`)."""
        if isinstance(self.prior, str):
            return make_prior(self.prior, self.latent_shape, self.flow_dtype)
        return self.prior

    @property
    def distribution(self) -> tfd.Distribution:
        """`tfd.TransformedDistribution(prior, g)` over the current weights (a conditional
        flow's: `conditional_distribution(context)`)."""
        self._refuse_unbound("distribution", "conditional_distribution")
        return tfd.TransformedDistribution(self.base_distribution, self.bijector,
                                           name=type(self).__name__)

    def entropy(self) -> tf.Tensor:
        """The differential entropy of the model's density, in nats (exact).

        When every step has a constant log-determinant (additive couplings, the
        rescaling, ActNorms, permutations, LU maps, squeezes),
        `H[x] = H[prior] + log|det dg/dz|` holds exactly. TFP's
        `distribution.entropy()` cannot know this: it needs
        `is_constant_jacobian`, which means an affine map, and raises.

        Raises:
          NotImplementedError: when a step's log-determinant depends on its
            input (affine couplings, the logit step): there the entropy has no
            closed form (estimate `-mean(log_prob(sample(n)))`).
        """
        varying = [step.name for step in self.steps if not step.constant_log_det]
        if varying:
            raise NotImplementedError(
                f"{type(self).__name__}.entropy is exact only when every step has a constant "
                f"log-determinant; that of {', '.join(varying)} depends on the input (affine "
                "couplings, the logit step). Estimate it as -mean(log_prob(sample(n))).")
        self._refuse_unbound("single entropy", "conditional_distribution")
        z = tf.zeros((1,) + self.latent_shape, self.flow_dtype)
        log_det = self.bijector.forward_log_det_jacobian(z, event_ndims=len(self.latent_shape))
        return self.base_distribution.entropy() + log_det[0]

    def _as_input(self, x, what="x"):
        return as_flow_input(x, self.flow_dtype, self.dtype_policy.name, what)

    def _bound(self, t, context):
        """`g` for `t`'s rows: the flow's, or bound to `context` (checked against `t`)."""
        return self._generator(self._embed(self._as_context(context, t)))

    def log_prob(self, x, context=None) -> tf.Tensor:
        """Log-density of data `x` of shape `batch + event_shape`, in nats (given
        `context`, one row per example, for a conditional flow)."""
        x = self._as_input(x)
        if not self.conditional and context is None:
            return self.distribution.log_prob(x)
        c = self._embed(self._as_context(context, x))
        return tfd.TransformedDistribution(self._base_given(c), self._generator(c),
                                           name=type(self).__name__).log_prob(x)

    def encode(self, x, context=None) -> tf.Tensor:
        """`f`: data -> latent, `batch + event_shape` -> `batch + latent_shape`."""
        x = self._as_input(x)
        return self._bound(x, context).inverse(x)

    def decode(self, z, context=None) -> tf.Tensor:
        """`g = f^{-1}`: latent -> data."""
        z = self._as_input(z, "z")
        return self._bound(z, context).forward(z)

    def sample(self, num_samples: int, temperature: float = 1.0, seed=None,
               context=None) -> tf.Tensor:
        """Draws `num_samples` examples, shape `(num_samples,) + event_shape`.

        A conditional flow draws `num_samples` per context row: with `context`
        of `N` rows the result has shape `(num_samples, N) + event_shape`
        (`[:, i]` given row `i`; `sample(1, context=c)[0]` is one per row).

        With `temperature = T` the latent is drawn from the prior and
        multiplied by `T` before decoding: the prior's scale becomes `T`
        (a logistic of scale `T`, a normal of standard deviation `T`), and
        `T < 1` trades diversity for samples nearer the modes. `T = 1` samples
        the model itself. With a `conditional_prior`, `T` scales each latent's
        spread about the location its context gives it.

        Args:
          num_samples: int >= 0 (inside a `tf.function`, a scalar int tensor
            too, taken as it is: check it in the graph, as the SavedModel does).
          temperature: float > 0 (likewise a scalar float tensor there).
          seed: `None`, an int, or a stateless seed (a shape-[2] int tensor).
          context: a conditional flow's context rows, `(N, *context_shape)`.
        """
        if not _symbolic(num_samples):
            num_samples = check_int(_python_number(num_samples), "num_samples", minimum=0)
        if not _symbolic(temperature):
            temperature = check_positive_float(_python_number(temperature), "temperature")
        c = self._embed(self._as_context(context))  # the embedding once, then the rows
        if c is None:
            return self._draw(num_samples, temperature, seed)
        return self._sample_rows(num_samples, c, temperature, seed)

    def inpaint(self, x, observed_mask, num_steps: int = 500,
                step_size: None | str | float | Callable[[int], float] = None,
                noise: float = 1.0, clip: tuple[float, float] | None = (0.0, 1.0),
                seed: int | None = None, context=None) -> tf.Tensor:
        """Fills the unobserved entries of `x` by projected gradient ascent on `log p(x)`.

        NICE's inpainting (arXiv 1410.8516, section 5.2): with `H` the missing
        entries, `x_H <- x_H + a_i (d log p(x) / d x_H + noise * e)`,
        `e ~ N(0, I)`, `a_i = step_size(i)`, then clipped to `clip`; observed
        entries never change. The missing entries start from the values `x`
        holds there: fill them first, with the data mean or noise, never with
        the values to be recovered.

        The default step, `"default"`, is `0.1 / (100 + i)`, made for data in
        `[0, 1]`: on scikit-learn's digits (64-64 NICE, 60 epochs, bottom half
        missing, mean filling to start) it cut the missing pixels' squared
        error from 0.069 to 0.045 and raised the mean log-likelihood from 52 to
        85 nats. The paper's `10 / (100 + i)` (`step_size="paper"`), made for
        its MNIST model, overshoots on data in `[0, 1]`: there it raised the
        error to 0.25 and lowered the log-likelihood to -444 nats. Watch
        `log_prob` of the result and scale the step to your model.

        Args:
          x: data, `batch + event_shape`, the missing entries already filled.
          observed_mask: boolean, broadcastable to `x`; `True` = observed.
          num_steps: int >= 1.
          step_size: `None` or `"default"` for `0.1 / (100 + i)`, `"paper"` for
            `10 / (100 + i)`, a float, or a callable of the step index `i`
            (0-based).
          noise: scale of the Gaussian term (0 for plain gradient ascent).
          clip: `(low, high)` data range, or `None`.
          seed: int seed of the noise.
          context: a conditional flow's context rows (held fixed): ascent on
            `log p(x | context)`.

        Returns:
          The inpainted data, a tensor of `x`'s shape.

        Examples:
            Given the first coordinate of two-moons points, fill in the second:

            >>> import keras
            >>> import numpy as np
            >>> import tfp_nice as tn
            >>> x = tn.data.two_moons(1024, seed=0)
            >>> model = tn.NICE((2,), hidden_units=(32, 32), seed=0)
            >>> model.compile(keras.optimizers.Adam(1e-3))
            >>> _ = model.fit(x, epochs=2, batch_size=128, verbose=0)
            >>> observed = np.array([True, False])               # x_1 is seen
            >>> start = np.where(observed, x[:4], x.mean(0))     # mean filling to start
            >>> filled = model.inpaint(start, observed, num_steps=50, noise=0.0, clip=None)
            >>> np.array_equal(filled.numpy()[:, 0], x[:4, 0])   # what is seen stays
            True
        """
        return inpainting.inpaint(self, x, observed_mask, num_steps=num_steps,
                                  step_size=step_size, noise=noise, clip=clip, seed=seed,
                                  context=context)

    def bits_per_dim(self, nll_nats):
        """Converts a mean NLL in nats to bits/dim with this model's `num_levels`."""
        return bits_per_dim(nll_nats, self.num_dims, self.num_levels)

    # --- the data-dependent start ---------------------------------------------------------

    @property
    def needs_data_init(self) -> bool:
        """Whether `fit` will start a step from data first (a step needs it, not done yet)."""
        wants = any(step.needs_data for step in self.steps)
        return wants and int(keras.ops.convert_to_numpy(self.data_initialized)) == 0

    def initialize_from_data(self, x, context=None) -> None:
        """Sets the data-dependent parameters from a batch `x`, in `f`'s order.

        A loop of `adapt` over the steps: each step sets its start from its
        input `h` (an ActNorm to zero mean and unit variance, the rescaling's
        `"data"` start to the prior's spread) and maps `h` on.
        `fit` calls this once, while `data_initialized` is 0, on a random
        sample of the training data: up to 4096 rows drawn with `seed` from an
        array (less the `validation_split`), so that data sorted by class start
        from all classes; the first 4096 rows of a dataset (shuffle it). The
        flag is saved with the model, so a reloaded model is not reset. A
        conditional flow's start takes the context of the same rows.
        """
        h = self._as_input(x)
        if h.shape.rank != len(self.event_shape) + 1 or len(h) < 2:
            raise ValueError("initialize_from_data needs a batch of at least 2 examples of "
                             f"shape {self.event_shape}; got shape {tuple(h.shape)}.")
        c = self._embed(self._as_context(context, h))
        for step in self.steps:
            h = step.adapt(h, c)
        self.data_initialized.assign(1)

    # --- Keras ----------------------------------------------------------------------------

    def check_training_data(self, x, batch_size=None, validation_split=0.0) -> None:
        """Raises a clear error for arrays `fit` cannot train on (see `models.training`);
        a conditional flow's `x` is a pair `(x, context)` or a dict of the two."""
        if self.conditional and not isinstance(x, tf.data.Dataset) and x is not None:
            x, context = self._pair(x, None)
            check_training_data(self, x, batch_size, validation_split)
            self._check_context_array(x, context)
            return
        check_training_data(self, x, batch_size, validation_split)

    def _pair(self, x, y):
        return data_pair(self, x, y)

    def _check_context_array(self, x, context):
        if context is None:
            self._as_context(None)  # the error: a context is needed
        if isinstance(context, tf.data.Dataset):
            return
        checked_context(context, len(x), "fit", self.context_shape)

    def fit(self, x=None, y=None, batch_size=None, *args, **kwargs):
        """Keras's `fit` after checks of the data and the data-dependent start if due.

        Arrays are checked first (`check_training_data`). Training stops with a
        warning naming the epoch if its loss is NaN or inf (add
        `keras.callbacks.TerminateOnNaN()` to stop at the very batch). A
        conditional flow takes `fit(x, context)`, `fit((x, context))`, a dict
        `{"x": x, "context": context}` or a dataset of `(x, context)` batches.
        """
        if self.conditional and not isinstance(x, tf.data.Dataset) and x is not None:
            x, context = self._pair(x, y)
            self.check_training_data((x, context), batch_size,
                                     kwargs.get("validation_split", 0.0))
            if self.needs_data_init:
                start_x, start_c = start_sample(
                    (x, context), seed=self.seed,
                    validation_split=kwargs.get("validation_split", 0.0), pairs=True)
                self.initialize_from_data(start_x, start_c)
            x, y = {"x": x, "context": context}, None
        elif self.conditional and isinstance(x, tf.data.Dataset):
            if self.needs_data_init:
                start_x, start_c = start_sample(x, seed=self.seed, pairs=True)
                self.initialize_from_data(start_x, start_c)
        else:
            self.check_training_data(x, batch_size, kwargs.get("validation_split", 0.0))
            if self.needs_data_init and x is not None:
                self.initialize_from_data(start_sample(
                    x, seed=self.seed, validation_split=kwargs.get("validation_split", 0.0)))
        callbacks = list(kwargs.pop("callbacks", None) or [])
        callbacks.append(StopOnNonFiniteLoss())
        if can_stream(self, x, y, args, kwargs):
            batch_size = batch_size or 32
            kwargs["steps_per_epoch"] = -(-len(x) // batch_size)
            x = epoch_batches(x, batch_size, kwargs.pop("shuffle", True))
            batch_size, kwargs["shuffle"] = None, False  # the pipeline shuffles itself
        elif isinstance(x, tf.data.Dataset):
            # Keras ignores `shuffle` for a dataset and warns on its default `True` every
            # call; a dataset orders itself (`tn.dequantized_batches` reshuffles each epoch).
            kwargs.setdefault("shuffle", False)
        self._build_optimizer()
        return super().fit(x, y, batch_size, *args, callbacks=callbacks, **kwargs)

    def _build_optimizer(self):
        # Without a distribution strategy Keras builds the optimizer inside the first trace
        # of its train function; creating variables there makes tf.function trace the whole
        # step twice. Built here (as Keras does under a strategy), `fit` traces once.
        if (self.optimizer is not None and not self.optimizer.built
                and _private_api.all_layers_built(self)):
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["x"]
        shape = tuple(input_shape)[1:]
        if len(shape) != len(self.event_shape) or any(
            s is not None and s != e for s, e in zip(shape, self.event_shape)
        ):
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (batch, *{self.event_shape}). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.built = True

    def call(self, inputs):
        if isinstance(inputs, dict):
            x, context = self._pair(inputs, None)
            return self.log_prob(x, context=context)
        return self.log_prob(inputs)

    def _conditional_data(self, data):
        # Keras unpacks a batch (x, c) as x and y; a conditional flow's y is its context.
        if not self.conditional:
            return data
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict) or y is None:
            return data
        return ({"x": x, "context": y}, None, weight)

    def train_step(self, data):
        return super().train_step(self._conditional_data(data))

    def test_step(self, data):
        return super().test_step(self._conditional_data(data))

    def predict_step(self, data):
        return super().predict_step(self._conditional_data(data))

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Keras's `evaluate`; a conditional flow takes the pairs as `fit` does."""
        if self.conditional and not isinstance(x, tf.data.Dataset) and x is not None:
            x, context = self._pair(x, y)
            self._check_context_array(x, context)
            x, y = {"x": x, "context": context}, None
        return super().evaluate(x, y, *args, **kwargs)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["x"]
        return tuple(input_shape)[:1]

    def compile(self, optimizer="adam", loss=None, **kwargs):
        """Configures training; the loss is the negative log-likelihood, so none is taken."""
        if loss is not None:
            raise ValueError(
                f"{type(self).__name__} trains by maximum likelihood and takes no loss in "
                f"compile(). Received: loss={loss!r}"
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compiling on load when compile() is overridden; ours only
        # refuses a loss, so the saved configuration can be replayed as it is.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        nll = -y_pred
        if sample_weight is not None:
            nll = nll * tf.cast(tf.reshape(sample_weight, tf.shape(nll)), nll.dtype)
        # Keras sums the replicas' losses under tf.distribute: scale like its losses do.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        loss = tf.reduce_mean(nll) / tf.cast(replicas, nll.dtype)
        for extra in self.losses:
            loss = loss + tf.cast(tf.reduce_sum(extra), loss.dtype) / replicas
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        nll = -y_pred
        self._nll_metric.update_state(nll, sample_weight=sample_weight)
        self._bpd_metric.update_state(
            bits_per_dim(nll, self.num_dims, self.num_levels), sample_weight=sample_weight
        )
        logs = super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3 reduces the logs across workers with reduce(MEAN, axis=0), which
            # fails on scalars (TF issue 72388); rank-1 logs reduce back to scalars.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs):
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

    def get_config(self):
        self._check_serializable()
        return {**super().get_config(),
                "steps": [keras.saving.serialize_keras_object(step) for step in self.steps],
                "prior": self.prior, "num_levels": self.num_levels, "seed": self.seed,
                "context_shape": None if self.context_shape is None else list(
                    self.context_shape),
                **embedding_config(self.embedding),
                **({"conditional_prior": True} if self.conditional_prior else {})}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if "steps" in config:
            config["steps"] = [keras.saving.deserialize_keras_object(
                step, custom_objects=custom_objects) for step in config["steps"]]
        return cls(**embedding_from_config(config, custom_objects))


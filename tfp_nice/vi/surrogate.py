"""`VariationalFlow`: a flow surrogate posterior over a target's parameters, as a Keras 3
model trained by maximising the ELBO, and as a TFP distribution in the target's structure.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice._validation import check_flag, check_int
from tfp_nice.models import Flow
from tfp_nice.sbi.support import SupportStep
from tfp_nice.vi.criterion import all_finite
from tfp_nice.vi.target import target_log_prob_fn

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["VariationalFlow"]


def _restructure(layout, structure):
    """Flat rows `(..., D)` -> the parts of `layout` packed as `structure` (a constant,
    volume-preserving bijector of public TFP classes)."""
    sizes = [math.prod(s) for s in layout]
    if structure is None:
        return tfb.Reshape(event_shape_out=layout[0], event_shape_in=[sizes[0]])
    index = tf.nest.pack_sequence_as(structure, list(range(len(layout))))
    return tfb.Chain([
        tfb.Restructure(output_structure=index, input_structure=list(range(len(layout)))),
        tfb.JointMap([tfb.Reshape(event_shape_out=s, event_shape_in=[d])
                      for s, d in zip(layout, sizes)]),
        tfb.Split(sizes)], name="restructure")


def _stateless(seed: Any) -> tf.Tensor:
    """A stateless seed (shape [2] int32) from `None` (fresh), an int, or a pair."""
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed) % (2**31 - 1), 0], tf.int32)
    seed = tf.convert_to_tensor(seed)
    return tf.cast(seed % tf.cast(2**31 - 1, seed.dtype), tf.int32)


class _HaltOnNonFinite(keras.callbacks.Callback):
    """At the end of an epoch, stops training if a step's ELBO or gradients were not finite
    (the model skipped that step's update and every one after it)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        step = int(self.model.halted_at.numpy())
        if step > 0:
            self.model.stop_training = True
            warnings.warn(
                f"{type(self.model).__name__}: the ELBO or its gradients became NaN or inf at "
                f"step {step}; training stopped with the weights of step {step - 1} (the last "
                "finite ones). Lower the learning rate, start the surrogate narrower "
                "(initial_scale), or bound the log-scales (transformer="
                "tn.Affine(scale='bounded')).", RuntimeWarning, stacklevel=2)


@keras.saving.register_keras_serializable(package="tfp_nice")
class VariationalFlow(Flow):
    """A flow surrogate posterior `q(theta)` of a target (an unnormalized posterior).

    Its steps, data -> latent, start with a `tn.sbi.SupportStep` (the target's support ->
    the unconstrained space), so that `q` lives on the target's support and its
    `log_prob` is the density there. As a `Flow` it works on flat rows of the parameters
    (the parts in `tf.nest.flatten` order): `sample(n)`, `log_prob(rows)`, `.keras`,
    `export`. In the target's structure: `surrogate` (a `tfd.Distribution` whose `sample`
    and `log_prob` speak it, and whose `trainable_variables` are the model's, so
    `tfp.vi.fit_surrogate_posterior` trains it unchanged), `sample_parts(n)`, and the
    exported `sample_parts` signature.

    Training the Keras way: `compile(optimizer)` then `fit(steps=...)` maximises a Monte
    Carlo ELBO of `sample_size` draws a step (with `importance_samples = K > 1`, the
    importance-weighted bound of Burda et al. 2016 over K draws for each of the
    `sample_size`), with callbacks, progress, checkpoints and early stopping as any Keras
    `fit` (an epoch is `steps_per_epoch` steps; the logs report `loss`, the negative
    bound, and `elbo`). `stick_the_landing=True` drops the score term of the gradient
    (Roeder et al. 2017): the same expectation, less variance near the optimum.

    A step whose bound or gradients are NaN or inf is not applied, nor is any step after
    it: training stops at the end of that epoch with a warning naming the step, and the
    model keeps the last finite weights (`halted_at` holds the step; `fit` again
    starts afresh from them).

    The target (its log-density) is not saved: a model loaded from `.keras` samples,
    scores and exports; set `model.target` to train it further.
    """

    def __init__(self, steps: Sequence[Any], sample_size: int = 32,
                 importance_samples: int = 1, stick_the_landing: bool = False,
                 target: Any = None, **kwargs: Any) -> None:
        """Builds the model over its steps.

        Args:
          steps: the steps of `f` (data -> latent), the first a `tn.sbi.SupportStep`; no
            step may need a data-dependent start (there are no data).
          sample_size: draws of `q` per training step.
          importance_samples: `K` draws per importance-weighted estimate (1: the ELBO).
          stick_the_landing: the gradient without its score term (with `K = 1` only).
          target: what `fit` maximises the bound of (see `tn.vi.surrogate_flow`).
          **kwargs: passed to `tn.Flow` (`seed`, `name`, `dtype`); the prior is the
            standard normal.
        """
        kwargs.pop("prior", None)
        super().__init__(steps, prior="normal", **kwargs)
        support = self.steps[0]
        if not isinstance(support, SupportStep):
            raise ValueError(f"{type(self).__name__}: the first step must be a SupportStep "
                             f"(the target's support); got {type(support).__name__}.")
        needing = [step.name for step in self.steps if step.needs_data]
        if needing:
            raise ValueError(f"{type(self).__name__}: steps {needing} need a data-dependent "
                             "start, but a surrogate sees no data; use "
                             "ActNormStep(init='identity').")
        self.layout = list(support.layout)
        self.structure = support.structure
        self.sample_size = check_int(sample_size, "sample_size", minimum=1)
        self.importance_samples = check_int(importance_samples, "importance_samples",
                                            minimum=1)
        self.stick_the_landing = check_flag(stick_the_landing, "stick_the_landing")
        if self.stick_the_landing and self.importance_samples > 1:
            raise ValueError("stick_the_landing drops the score term of the ELBO's gradient; "
                             "with importance_samples > 1 that biases the importance-"
                             "weighted bound's gradient. Use one or the other.")
        self.target = target  # kept out of Keras's and TF's tracking (see the property)
        # every replica computes the same values (the finiteness check is all-reduced)
        self.halted_at = self.add_weight(shape=(), initializer="zeros", dtype="int64",
                                         trainable=False, name="halted_at",
                                         aggregation="only_first_replica")
        self.steps_taken = self.add_weight(shape=(), initializer="zeros", dtype="int64",
                                           trainable=False, name="steps_taken",
                                           aggregation="only_first_replica")
        self._seeds = keras.random.SeedGenerator(self.seed, name="elbo_seeds")
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._elbo_tracker = keras.metrics.Mean(name="elbo")

    @property
    def target(self) -> Any:
        """What `fit` maximises the bound of (not saved with the model)."""
        return self.__dict__.get("_vi_target")

    @target.setter
    def target(self, value: Any) -> None:
        if value is not None:
            target_log_prob_fn(value)  # refuses a target without a log-density
        object.__setattr__(self, "_vi_target", value)

    # --- the target's structure ----------------------------------------------------------

    @property
    def part_names(self) -> list[str]:
        """The names of the target's parts in `tf.nest.flatten` order (a dict's keys,
        `part_<i>` for a list's, `["x"]` for a target with one event): the outputs of the
        exported `sample_parts` signature."""
        if self.structure is None:
            return ["x"]
        if isinstance(self.structure, dict):
            return [str(key) for key in sorted(self.structure)]
        return [f"part_{i}" for i in range(len(self.layout))]

    @property
    def restructure(self) -> tfp.bijectors.Bijector:
        """Flat parameter rows -> the target's parts (a constant bijector)."""
        return _restructure(self.layout, self.structure)

    @property
    def surrogate(self) -> tfp.distributions.Distribution:
        """`q` as a TFP distribution in the target's structure; its `trainable_variables`
        are the model's, so `tfp.vi.fit_surrogate_posterior` trains this model."""
        return tfd.TransformedDistribution(self.distribution, self.restructure,
                                           name=self.name)

    def unflatten(self, rows: Any) -> Any:
        """Flat rows `(..., D)` as the target's parts."""
        return self.restructure.forward(tf.convert_to_tensor(rows, self.flow_dtype))

    def flatten(self, parts: Any) -> tf.Tensor:
        """The target's parts as flat rows `(..., D)`."""
        parts = tf.nest.map_structure(lambda p: tf.convert_to_tensor(p, self.flow_dtype),
                                      parts)
        return self.restructure.inverse(parts)

    def sample_parts(self, num_samples: int, seed: Any = None) -> Any:
        """`num_samples` draws of `q` in the target's structure."""
        return self.unflatten(self.sample(num_samples, seed=seed))

    # --- training ------------------------------------------------------------------------

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self._loss_tracker, self._elbo_tracker]

    def _log_weights(self, num_draws: int, seed: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """`num_draws` draws `theta ~ q` (flat rows) and `log p(theta) - log q(theta)`."""
        dtype = self.flow_dtype
        z = tf.random.stateless_normal((num_draws,) + self.latent_shape, _stateless(seed),
                                       dtype=dtype)
        g = self.bijector
        theta = g.forward(z)
        log_q = self.base_distribution.log_prob(z) - g.forward_log_det_jacobian(
            z, event_ndims=len(self.latent_shape))
        if self.stick_the_landing:
            # + grad log q at a fixed theta (the score term, whose expectation is zero),
            # cancelling it from the total gradient; the value is unchanged.
            held = self.log_prob(tf.stop_gradient(theta))
            log_q = log_q - held + tf.stop_gradient(held)
        log_p = tf.cast(self.target_log_prob(self.unflatten(theta)), dtype)
        return log_p - log_q, theta

    def target_log_prob(self, parts: Any) -> tf.Tensor:
        """The target's unnormalized log-density of parameters in its structure."""
        if self.target is None:
            raise ValueError(f"{type(self).__name__} {self.name!r} has no target (a model "
                             "loaded from .keras does not keep it); set model.target = ... "
                             "to train it.")
        return target_log_prob_fn(self.target)(parts)

    def _objective(self, log_w: tf.Tensor, k: int | None = None) -> tf.Tensor:
        """The bound from `k * n` log-weights (`k` defaults to `importance_samples`)."""
        k = self.importance_samples if k is None else k
        if k == 1:
            return tf.reduce_mean(log_w)
        log_w = tf.reshape(log_w, [k, -1])
        return tf.reduce_mean(tf.reduce_logsumexp(log_w, axis=0) - math.log(k))

    def train_step(self, data: Any) -> dict[str, Any]:
        variables = self.trainable_variables
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        seed = _stateless(self._seeds.next())
        draws = self.sample_size
        if replicas > 1:  # the step's draws shared out, each replica its own
            context = tf.distribute.get_replica_context()
            seed = tf.random.experimental.stateless_fold_in(
                seed, context.replica_id_in_sync_group)
            draws = -(-draws // replicas)
        with tf.GradientTape() as tape:
            log_w, _ = self._log_weights(draws * self.importance_samples, seed)
            bound = self._objective(log_w)
            loss = -bound
            # Keras sums the replicas' gradients under tf.distribute
            scaled = loss / tf.cast(replicas, loss.dtype)
        grads = tape.gradient(scaled, variables)
        finite = all_finite(loss, grads)
        if replicas > 1:  # one decision for every replica
            bad = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.int32))
            finite = tf.equal(bad, 0)
        self.steps_taken.assign_add(1)
        halted = self.halted_at > 0
        apply = tf.logical_and(finite, tf.logical_not(halted))

        if replicas == 1:
            def update():
                self.optimizer.apply(grads, variables)
                return tf.constant(True)

            tf.cond(apply, update, lambda: tf.constant(False))
        else:
            # a cross-replica update cannot sit in a tf.cond: apply zeros in place of a
            # bad step's gradients, then put the weights of before the step back
            kept = [tf.identity(v) for v in variables]
            self.optimizer.apply([None if g is None else tf.where(apply, g, tf.zeros_like(g))
                                  for g in grads], variables)

            def restore(strategy: Any, values: Any, keep_new: Any) -> None:
                for variable, value in zip(variables, values):
                    strategy.extended.update(
                        variable.value, lambda v, old, new: v.assign(tf.where(new, v, old)),
                        args=(value, keep_new))

            tf.distribute.get_replica_context().merge_call(restore, args=(kept, apply))
        self.halted_at.assign(tf.where(tf.logical_or(finite, halted), self.halted_at,
                                       self.steps_taken))
        self._loss_tracker.update_state(loss)
        self._elbo_tracker.update_state(tf.reduce_mean(log_w))
        return {"loss": self._loss_tracker.result(), "elbo": self._elbo_tracker.result()}

    def fit(self, steps: int = 1000, steps_per_epoch: int = 100,  # type: ignore[override]
            callbacks: Sequence[keras.callbacks.Callback] | None = None,
            verbose: Any = "auto", initial_epoch: int = 0, **kwargs: Any
            ) -> keras.callbacks.History:
        """Maximises the bound for `steps` steps (rounded up to whole epochs of
        `steps_per_epoch`), with Keras's `fit` (callbacks, progress, history).

        Under `tf.distribute` (the model built and compiled in `strategy.scope()`), each
        replica draws its share of a step's `sample_size` draws (rounded up) from its
        own seed, and the gradients are combined as one step's; a step that is not
        finite on any replica halts them all.

        Raises:
          ValueError: without a target or an optimizer (`compile` first), or for
            data given (a surrogate takes none) or steps below 1.
        """
        for key in ("x", "y", "validation_data", "validation_split", "epochs"):
            if key in kwargs:
                raise ValueError(f"{type(self).__name__}.fit takes no {key}: it draws from "
                                 "the surrogate; give steps= and steps_per_epoch=.")
        steps = check_int(steps, "steps", minimum=1)
        steps_per_epoch = min(check_int(steps_per_epoch, "steps_per_epoch", minimum=1), steps)
        if self.target is None:
            self.target_log_prob(None)  # raises, naming what to do
        if getattr(self, "optimizer", None) is None:
            raise ValueError(f"{type(self).__name__}: compile(optimizer) before fit.")
        self.halted_at.assign(0)
        # a placeholder batch, one row per replica (the steps draw their own data)
        replicas = self.distribute_strategy.num_replicas_in_sync
        data = tf.data.Dataset.from_tensors(tf.zeros((replicas,), self.flow_dtype)).repeat()
        callbacks = list(callbacks or []) + [_HaltOnNonFinite()]
        self._build_optimizer()
        return keras.Model.fit(self, data, epochs=initial_epoch + math.ceil(
            steps / steps_per_epoch), steps_per_epoch=steps_per_epoch, callbacks=callbacks,
            verbose=verbose, initial_epoch=initial_epoch, shuffle=False, **kwargs)

    def elbo(self, num_draws: int = 1000, importance_samples: int = 1,
             seed: Any = None) -> float:
        """A Monte Carlo estimate of the bound (`importance_samples = K > 1`: the
        importance-weighted one over `num_draws` groups of K) at the current weights."""
        num_draws = check_int(num_draws, "num_draws", minimum=1)
        k = check_int(importance_samples, "importance_samples", minimum=1)
        log_w, _ = self._log_weights(num_draws * k, seed)
        return float(self._objective(log_w, k))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in ("prior", "num_levels", "context_shape"):
            config.pop(key, None)
        return {**config, "sample_size": self.sample_size,
                "importance_samples": self.importance_samples,
                "stick_the_landing": self.stick_the_landing}

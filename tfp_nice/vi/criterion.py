"""`StopOnNonFinite`: the TFP route's guard against a step whose loss or gradients are NaN
or inf, as a `tfp.optimizer.convergence_criteria.ConvergenceCriterion` that
`tfp.vi.fit_surrogate_posterior` (and `tfp.math.minimize`) accept."""

from __future__ import annotations

import sys
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

__all__ = ["StopOnNonFinite", "all_finite"]

_Criterion: Any = tfp.optimizer.convergence_criteria.ConvergenceCriterion


def all_finite(loss: Any, grads: Any) -> tf.Tensor:
    """Whether a step's loss and every gradient (`None`s skipped) are finite: a scalar
    boolean tensor, the test `VariationalFlow.fit` applies before each update, for a
    training loop of one's own.

    Args:
      loss: the step's loss (any shape).
      grads: its gradients, a nest of tensors or `None`s.
    """
    checks = [tf.reduce_all(tf.math.is_finite(loss))]
    checks += [tf.reduce_all(tf.math.is_finite(g)) for g in tf.nest.flatten(grads)
               if g is not None]
    return tf.reduce_all(tf.stack(checks))


class StopOnNonFinite(_Criterion):
    """Stops `tfp.vi.fit_surrogate_posterior` at the first step whose loss or gradients
    are NaN or inf, and puts back the last finite weights.

    TFP's loop applies each step's update before it asks its convergence criterion, so a
    non-finite step has already written NaN into the weights when this criterion sees it:
    it keeps a copy of the weights after every finite step and, at the first non-finite
    one, assigns that copy back, records the step in `halted_at` (its index in the losses
    TFP returns; TFP's trace keeps its full length, repeating the last step's loss after
    the stop), prints a message naming it, and reports convergence so that the loop
    stops. (A non-finite first step, which TFP runs before its loop, restores the weights
    as they were when this criterion was built, and the loop stops on its next step.)
    The optimizer's own state (Adam's moments) has seen the bad gradients: build a new
    optimizer before training on.

    Args:
      variables: the variables to guard: a surrogate's `trainable_variables` (a
        `tn.vi.VariationalFlow`, its `surrogate`, or any list of `tf.Variable`s).
      verbose: print the message when it stops (`tf.print`, to stderr); under XLA
        (`jit_compile=True`) pass `False`: `halted_at` still records the step.
      name: the criterion's name.

    Examples:
        >>> import numpy as np, keras, tensorflow_probability as tfp
        >>> import tfp_nice as tn
        >>> tfd = tfp.distributions
        >>> target = tfd.MultivariateNormalDiag([1.0, -1.0], [0.5, 2.0])
        >>> q = tn.vi.surrogate_posterior(target, num_steps=1, hidden_units=(8,))
        >>> stop = tn.vi.StopOnNonFinite(q.trainable_variables)
        >>> losses = tfp.vi.fit_surrogate_posterior(
        ...     target.log_prob, q, keras.optimizers.Adam(1e-2), num_steps=20,
        ...     convergence_criterion=stop)
        >>> int(stop.halted_at.numpy())  # -1: no step was stopped
        -1
    """

    def __init__(self, variables: Any, verbose: bool = True,
                 name: str = "StopOnNonFinite") -> None:
        variables = getattr(variables, "trainable_variables", variables)
        self._variables = list(tf.nest.flatten(variables))
        if not self._variables or not all(isinstance(v, tf.Variable)
                                          for v in self._variables):
            raise ValueError("StopOnNonFinite needs the variables to guard (a surrogate's "
                             "trainable_variables, or a model with them). Received: "
                             f"{variables!r}")
        self._kept = [tf.Variable(v, trainable=False, name="last_finite")
                      for v in self._variables]
        self.halted_at = tf.Variable(-1, dtype=tf.int64, trainable=False, name="halted_at")
        self._verbose = bool(verbose)
        super().__init__(min_num_steps=0, name=name)

    def _put_back(self) -> list[Any]:
        return [v.assign(k) for v, k in zip(self._variables, self._kept)]

    def _keep_or_restore(self, finite: tf.Tensor, step: Any) -> tf.Tensor:
        def keep() -> tf.Tensor:
            with tf.control_dependencies([k.assign(v) for k, v in
                                          zip(self._kept, self._variables)]):
                return tf.constant(False)

        def restore() -> tf.Tensor:
            ops = self._put_back()
            ops.append(self.halted_at.assign(tf.cast(step, tf.int64)))
            if self._verbose:
                ops.append(tf.print(
                    "tn.vi.StopOnNonFinite: the loss or its gradients became NaN or inf at "
                    "step", step, "; training stopped with the last finite weights (of step",
                    step - 1, "). Lower the learning rate, start the surrogate narrower "
                    "(initial_scale), or bound the log-scales (transformer="
                    "tn.Affine(scale='bounded')).", output_stream=sys.stderr))
            with tf.control_dependencies(ops):
                return tf.constant(True)

        return tf.cond(finite, keep, restore)

    def _bootstrap(self, loss: Any, grads: Any, parameters: Any) -> tf.Tensor:
        # TFP's step 0 has already updated the weights; a halt here stops the loop at
        # its next step (a criterion cannot stop at step 0).
        return self._keep_or_restore(all_finite(loss, grads), 0)

    def _one_step(self, step: Any, loss: Any, grads: Any, parameters: Any,
                  auxiliary_state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        def halted_before() -> tf.Tensor:
            with tf.control_dependencies(self._put_back()):
                return tf.constant(True)

        halted = tf.cond(auxiliary_state, halted_before,
                         lambda: self._keep_or_restore(all_finite(loss, grads), step))
        return halted, halted

"""Variational inference: flow surrogate posteriors for TFP models, trained the TFP way
(`tfp.vi.fit_surrogate_posterior`) or the Keras way (`fit`).

* `surrogate_flow(target, ...)`: a `VariationalFlow`, a Keras model of a flow over the
  target's unconstrained parameters, mapped onto its support; `fit(steps=...)` maximises
  the ELBO (or an importance-weighted bound), `.keras` and `export` save it.
* `surrogate_posterior(target, ...)`: the same flow as a `tfd.Distribution` in the
  target's structure, for `tfp.vi.fit_surrogate_posterior`.
* `StopOnNonFinite(variables)`: for `tfp.vi.fit_surrogate_posterior(...,
  convergence_criterion=...)`, stops at a NaN or inf step and puts back the last finite
  weights.
* `all_finite(loss, grads)`: the finiteness test `fit` applies before each update.
* `target_support`, `target_layout`: what the surrogate reads from a target.
"""

from tfp_nice.vi.build import FLOWS, surrogate_flow, surrogate_posterior
from tfp_nice.vi.criterion import StopOnNonFinite, all_finite
from tfp_nice.vi.surrogate import VariationalFlow
from tfp_nice.vi.target import target_layout, target_support

__all__ = ["FLOWS", "StopOnNonFinite", "VariationalFlow", "all_finite", "surrogate_flow",
           "surrogate_posterior", "target_layout", "target_support"]

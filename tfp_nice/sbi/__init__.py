"""Simulation-based inference: posterior estimators over a TFP prior's support, trained on
simulations, and their diagnostics.

* `posterior_flow(prior, observation_shape, ...)`: a `PosteriorFlow`, a conditional flow
  `q(theta | x)` whose samples lie in the prior's support, standardised from its training
  pairs.
* `DeepSet`, `TimeSeriesNet`: summary networks (`embedding=`) for sets of i.i.d.
  observations and for time series.
* `sbc_ranks`, `sbc_uniformity`, `plot_sbc`: simulation-based calibration;
  `expected_coverage`: of highest-density regions; `c2st`: sbibm's two-sample test.
* `flatten_parameters`, `unflatten_parameters`: a joint prior's parts as flat rows.
"""

from tfp_nice.sbi.diagnostics import c2st, expected_coverage, plot_sbc, sbc_ranks, sbc_uniformity
from tfp_nice.sbi.posterior import FLOWS, PosteriorFlow, posterior_flow
from tfp_nice.sbi.summaries import POOLINGS, DeepSet, TimeSeriesNet
from tfp_nice.sbi.support import (
    FlatSupport,
    SupportStep,
    flatten_parameters,
    parameter_layout,
    part_support,
    prior_support,
    unflatten_parameters,
)

__all__ = ["FLOWS", "POOLINGS", "DeepSet", "FlatSupport", "PosteriorFlow", "SupportStep", "c2st", "expected_coverage",
           "flatten_parameters", "parameter_layout", "part_support", "plot_sbc", "posterior_flow",
           "prior_support", "sbc_ranks", "sbc_uniformity", "TimeSeriesNet", "unflatten_parameters"]

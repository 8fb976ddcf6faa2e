"""Simulation-based inference with a conditional flow, against the exact posterior.

    python examples/sbi_linear_gaussian.py                # about a minute on 2 cores
    python examples/sbi_linear_gaussian.py --epochs 2     # a smoke run (TFP_NICE_QUICK=1 too)

The simulator is linear-Gaussian, so its posterior is known in closed form: parameters
`theta ~ N(0, I_2)`, observations `x = M theta + e`, `e ~ N(0, s^2 I_5)`, and

    theta | x ~ N(S M^T x / s^2, S),   S = (I + M^T M / s^2)^-1.

A posterior estimator `q(theta | x)` from the prior (`tn.sbi.posterior_flow`: affine
couplings over `theta`, standardised from the training pairs, the observation `x` through an
embedding network) is trained on simulated pairs only, as neural posterior estimation does,
then measured on fresh observations against the exact posterior:

* the KL divergence `KL(p(.|x) || q(.|x))`, estimated with draws from the exact posterior;
* the error of `log q(theta | x)` at the true parameters;
* the coverage of the flow's highest-density credible regions: the true `theta` should
  fall in the 50%, 90% and 95% regions that often (`tn.sbi.expected_coverage`: the region
  is the level set of `q`, found from the flow's own samples);
* simulation-based calibration (`tn.sbi.sbc_ranks`): the p-value per parameter of the
  ranks' uniformity (`tn.sbi.sbc_uniformity`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow_probability as tfp

import tfp_nice as tn

tfd = tfp.distributions

M = np.array([[1.0, 0.5], [-0.8, 1.2], [0.3, -1.5], [2.0, 0.1], [-0.4, -0.7]])
NOISE = 0.8  # s
LEVELS = (0.5, 0.9, 0.95)
PRIOR = tfd.Independent(tfd.Normal(np.zeros(2, "float32"), np.ones(2, "float32")), 1)


def simulate(n, rng):
    theta = rng.normal(size=(n, 2))
    x = theta @ M.T + NOISE * rng.normal(size=(n, 5))
    return theta.astype("float32"), x.astype("float32")


def exact_posterior(x):
    """Mean rows and the shared covariance of `p(theta | x)`."""
    cov = np.linalg.inv(np.eye(2) + M.T @ M / NOISE ** 2)
    return np.asarray(x, float) @ M @ cov / NOISE ** 2, cov


def gaussian_log_prob(theta, mean, cov):
    d = np.asarray(theta, float) - mean
    solved = np.linalg.solve(cov, np.moveaxis(d, -1, 0).reshape(2, -1)).T.reshape(d.shape)
    return -0.5 * (np.sum(d * solved, axis=-1) + np.linalg.slogdet(cov)[1]
                   + 2 * math.log(2 * math.pi))


def build_flow(seed):
    """The posterior estimator from the prior, on the library's API: `posterior_flow` maps the
    flow onto the prior's support and standardises parameters and observations from the
    training pairs; the observation goes through an embedding network."""
    keras.utils.set_random_seed(seed)
    embedding = keras.Sequential([keras.layers.Dense(32, activation="tanh"),
                                  keras.layers.Dense(8)], name="embedding")
    return tn.sbi.posterior_flow(PRIOR, (5,), flow="coupling", transformer="affine",
                                 num_steps=6, hidden_units=(64, 64), embedding=embedding,
                                 seed=seed)


def evaluate(flow, num_observations, num_draws, rng):
    theta, x = simulate(num_observations, rng)
    mean, cov = exact_posterior(x)
    # KL(p || q): draws from the exact posterior of each observation
    chol = np.linalg.cholesky(cov)
    draws = mean[None] + rng.normal(size=(num_draws, num_observations, 2)) @ chol.T
    flat = draws.reshape(-1, 2).astype("float32")
    context = np.tile(x, (num_draws, 1))
    log_q = flow.log_prob(flat, context=context).numpy().reshape(num_draws, num_observations)
    kl = float(np.mean(gaussian_log_prob(draws, mean[None], cov) - log_q))
    # log q at the true parameters
    error = flow.log_prob(theta, context=x).numpy() - gaussian_log_prob(theta, mean, cov)
    # the coverage of q's highest-density regions, and simulation-based calibration
    coverage = tn.sbi.expected_coverage(flow, theta, x, LEVELS, num_posterior_samples=num_draws)
    ranks = tn.sbi.sbc_ranks(flow, theta, x, num_posterior_samples=99)
    samples = flow.sample(num_draws, context=x, seed=1).numpy()  # (draws, obs, 2)
    # the exact posterior's coverage with the same number of draws, for scale
    exact_true = gaussian_log_prob(theta, mean, cov)
    exact_samples = gaussian_log_prob(draws, mean[None], cov)
    exact_coverage = {f"{a:.2f}": float(np.mean(
        (exact_samples > exact_true[None]).mean(axis=0) < a)) for a in LEVELS}
    return {"kl_nats": kl, "log_density_error_mean_abs": float(np.mean(np.abs(error))),
            "log_density_error_mean": float(np.mean(error)),
            "coverage": {f"{a:.2f}": c for a, c in coverage.items()},
            "exact_posterior_coverage": exact_coverage,
            "sbc_uniformity_p": tn.sbi.sbc_uniformity(ranks, 99).round(3).tolist(),
            "posterior_mean_error": float(np.mean(np.abs(samples.mean(0) - mean))),
            "num_observations": num_observations, "num_draws": num_draws}


def main(argv=None):
    quick = os.environ.get("TFP_NICE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=2000 if quick else 20000)
    parser.add_argument("--epochs", type=int, default=2 if quick else 40)
    parser.add_argument("--observations", type=int, default=100 if quick else 1000,
                        help="fresh observations the posterior is measured on")
    parser.add_argument("--draws", type=int, default=200 if quick else 1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    theta, x = simulate(args.simulations, rng)
    flow = build_flow(args.seed)
    steps = args.epochs * -(-args.simulations // 256)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=steps, alpha=0.05)
    flow.compile(keras.optimizers.Adam(schedule))
    start = time.perf_counter()
    flow.fit(theta, x, epochs=args.epochs, batch_size=256, verbose=0)  # (theta, context)
    seconds = time.perf_counter() - start
    report = {"simulations": args.simulations, "epochs": args.epochs,
              "train_seconds": seconds,
              **evaluate(flow, args.observations, args.draws, np.random.default_rng(
                  args.seed + 1))}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()

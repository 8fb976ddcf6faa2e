"""Simulation-based inference from sets of i.i.d. draws of varying size, against the exact
posterior.

    python examples/sbi_normal_sets.py                  # a few minutes on 2 cores
    TFP_NICE_QUICK=1 python examples/sbi_normal_sets.py # a smoke run

The parameters are a normal's mean and variance under the conjugate Normal-Inverse-Gamma
prior, `sigma2 ~ InvGamma(a0, b0)`, `mu | sigma2 ~ N(m0, sigma2 / k0)`, and an observation is
a set of `n` draws `x_j ~ N(mu, sigma2)`, `n` from 2 to 20. The posterior is
Normal-Inverse-Gamma again, with

    k_n = k0 + n,  m_n = (k0 m0 + n xbar) / k_n,  a_n = a0 + n / 2,
    b_n = b0 + S / 2 + k0 n (xbar - m0)^2 / (2 k_n),   S = sum_j (x_j - xbar)^2.

`tn.sbi.posterior_flow` builds `q(mu, sigma2 | set)` from the prior (a TFP joint
distribution: the flow's samples keep `sigma2 > 0`), with a `tn.sbi.DeepSet` summary of the
set (a presence flag per member pads the sets to 20 rows). Measured on fresh sets against
the exact posterior: `KL(p || q)` with draws from `p`, the error of the posterior mean and
standard deviation of each parameter in units of the exact standard deviation, the classifier
two-sample test (`tn.sbi.c2st`, 0.5 is perfect) on a few sets, and calibration
(`tn.sbi.expected_coverage`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import special

import tfp_nice as tn

tfd = tfp.distributions

M0, K0, A0, B0 = 0.0, 1.0, 3.0, 2.0
MOST = 20  # the largest set; smaller ones are padded
FEWEST = 2
PRIOR = tfd.JointDistributionSequential([
    tfd.InverseGamma(np.float32(A0), np.float32(B0), name="sigma2"),
    lambda sigma2: tfd.Normal(np.float32(M0), tf.sqrt(sigma2 / K0), name="mu"),
])


def simulate(n, rng):
    """Parameter rows `(sigma2, mu)` (the prior's flat order) and padded sets
    `(n, MOST, 2)`: a member's value and its presence flag."""
    sigma2 = B0 / rng.gamma(A0, size=n)
    mu = rng.normal(M0, np.sqrt(sigma2 / K0))
    sizes = rng.integers(FEWEST, MOST + 1, size=n)
    sets = np.zeros((n, MOST, 2), "float32")
    for i, k in enumerate(sizes):
        sets[i, :k, 0] = rng.normal(mu[i], np.sqrt(sigma2[i]), size=k)
        sets[i, :k, 1] = 1.0
    return np.stack([sigma2, mu], axis=1).astype("float32"), sets


def exact_posterior(sets):
    """The Normal-Inverse-Gamma posterior's `(m_n, k_n, a_n, b_n)`, one row per set."""
    present = sets[..., 1] > 0.5
    n = present.sum(axis=1)
    values = np.where(present, sets[..., 0], 0.0).astype(np.float64)
    mean = values.sum(axis=1) / n
    spread = (np.where(present, values - mean[:, None], 0.0) ** 2).sum(axis=1)
    k_n = K0 + n
    m_n = (K0 * M0 + n * mean) / k_n
    a_n = A0 + n / 2
    b_n = B0 + spread / 2 + K0 * n * (mean - M0) ** 2 / (2 * k_n)
    return m_n, k_n, a_n, b_n


def exact_log_prob(theta, m_n, k_n, a_n, b_n):
    """log p(sigma2, mu | set): an inverse gamma times a normal given sigma2."""
    sigma2, mu = theta[..., 0].astype(np.float64), theta[..., 1].astype(np.float64)
    log_ig = (a_n * np.log(b_n) - special.gammaln(a_n) - (a_n + 1) * np.log(sigma2)
              - b_n / sigma2)
    var = sigma2 / k_n
    return log_ig - 0.5 * (np.log(2 * np.pi * var) + (mu - m_n) ** 2 / var)


def exact_draws(num, m_n, k_n, a_n, b_n, rng):
    """`(num, sets, 2)` draws from each set's exact posterior."""
    sigma2 = b_n / rng.gamma(a_n, size=(num,) + np.shape(a_n))
    mu = rng.normal(m_n, np.sqrt(sigma2 / k_n))
    return np.stack([sigma2, mu], axis=-1)


def build_flow(seed):
    """Spline couplings, chosen explicitly: they sample in one pass, where the default
    autoregressive flow takes one pass per parameter."""
    keras.utils.set_random_seed(seed)
    summary = tn.sbi.DeepSet(output_units=8, features=1, member_units=(64, 64),
                             head_units=(64,), masked=True, name="summary")
    return tn.sbi.posterior_flow(PRIOR, (MOST, 2), flow="coupling", transformer="spline",
                                 num_steps=5, hidden_units=(64, 64), embedding=summary,
                                 seed=seed)


def evaluate(flow, num_sets, num_draws, c2st_sets, rng):
    theta, sets = simulate(num_sets, rng)
    post = exact_posterior(sets)
    # KL(p || q), draws from the exact posterior of each set
    draws = exact_draws(num_draws, *post, rng)
    context = np.tile(sets, (num_draws, 1, 1))
    log_q = flow.log_prob(draws.reshape(-1, 2).astype("float32"), context=context)
    kl = float(np.mean(exact_log_prob(draws, *post) - log_q.numpy().reshape(num_draws, -1)))
    # posterior means and spreads against the exact ones, in exact standard deviations
    samples = flow.sample(num_draws, context=sets, seed=1).numpy().astype(np.float64)
    exact_mean, exact_sd = draws.mean(axis=0), draws.std(axis=0)
    mean_error = np.abs(samples.mean(axis=0) - exact_mean) / exact_sd
    sd_ratio = samples.std(axis=0) / exact_sd
    # C2ST on a few sets, sbibm's protocol, 1,000 draws a side
    c2st = [tn.sbi.c2st(flow.sample(1000, context=sets[[i]], seed=i).numpy()[:, 0],
                        exact_draws(1000, *(p[[i]] for p in post), rng)[:, 0])
            for i in range(c2st_sets)]
    coverage = tn.sbi.expected_coverage(flow, theta, sets, (0.5, 0.9),
                                        num_posterior_samples=num_draws)
    return {"kl_nats": kl,
            "mean_error_in_sd": {"sigma2": float(np.median(mean_error[:, 0])),
                                 "mu": float(np.median(mean_error[:, 1]))},
            "sd_ratio": {"sigma2": float(np.median(sd_ratio[:, 0])),
                         "mu": float(np.median(sd_ratio[:, 1]))},
            "c2st": [round(c, 3) for c in c2st], "c2st_mean": float(np.mean(c2st)),
            "coverage": {f"{a:.2f}": c for a, c in coverage.items()},
            "sets": num_sets, "draws": num_draws}


def main(argv=None):
    quick = os.environ.get("TFP_NICE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=2000 if quick else 30000)
    parser.add_argument("--epochs", type=int, default=2 if quick else 60)
    parser.add_argument("--sets", type=int, default=50 if quick else 500,
                        help="fresh sets the posterior is measured on")
    parser.add_argument("--draws", type=int, default=100 if quick else 500)
    parser.add_argument("--c2st-sets", type=int, default=1 if quick else 5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    theta, sets = simulate(args.simulations, rng)
    flow = build_flow(args.seed)
    steps = args.epochs * -(-args.simulations // 256)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps, alpha=0.05)
    flow.compile(keras.optimizers.Adam(schedule))
    start = time.perf_counter()
    flow.fit(theta, sets, epochs=args.epochs, batch_size=256, verbose=0)
    seconds = time.perf_counter() - start
    report = {"simulations": args.simulations, "epochs": args.epochs,
              "train_seconds": round(seconds, 1),
              **evaluate(flow, args.sets, args.draws, args.c2st_sets,
                         np.random.default_rng(args.seed + 1))}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()

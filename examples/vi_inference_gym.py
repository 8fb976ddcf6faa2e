"""Variational inference with a flow surrogate on Inference Gym targets, against their NUTS
ground truth.

    python examples/vi_inference_gym.py                        # three targets, minutes
    python examples/vi_inference_gym.py --targets eight_schools --steps 3000
    TFP_NICE_QUICK=1 python examples/vi_inference_gym.py       # a smoke run

For each target (`inference-gym` ships the models and the ground truth of their posterior
means and standard deviations, no download), `tn.vi.surrogate_flow(target)` (an inverse
autoregressive flow over the unconstrained parameters, onto the support) is trained the
Keras way (`fit(steps=...)`, the sticking-the-landing gradient), then measured on 20,000
draws: for every parameter, the error of the posterior mean in units of the ground truth's
standard deviation, and the ratio of the standard deviations; and the ELBO.

Targets: `eight_schools` (10 parameters, the centred hierarchical model with the group
scale's log), `banana` (2-D, strongly curved), `ill_conditioned_gaussian` (100-D, eigenvalues
over several orders of magnitude), and, not by default, `german_credit` (logistic regression
on the numeric German credit data, 25 coefficients): the gym reads its data through
TensorFlow Datasets, which downloads it from the UCI archive on first use (`pip install
tensorflow-datasets` and a connection; it cannot run offline).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

import tfp_nice as tn

TARGETS = {
    "eight_schools": "EightSchools",
    "banana": "Banana",
    "german_credit": "GermanCreditNumericLogisticRegression",
    "ill_conditioned_gaussian": "IllConditionedGaussian",
}
OFFLINE = ("eight_schools", "banana", "ill_conditioned_gaussian")  # no download
# (steps, learning rate) per target: what reached the ground truth here at 64 draws a step.
SETTINGS = {"eight_schools": (4000, 3e-3), "banana": (3000, 3e-3),
            "german_credit": (3000, 3e-3), "ill_conditioned_gaussian": (4000, 3e-3)}


def gym_target(name):
    import inference_gym.using_tensorflow as gym

    return getattr(gym.targets, TARGETS[name])()


def flat(structure, batched):
    """A structure of arrays as rows `(N, D)` (`batched`: a leading draw axis) or one
    row `(D,)`, parts in tf.nest order."""
    parts = [np.asarray(p) for p in tf.nest.flatten(structure)]
    if batched:
        return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=-1)
    return np.concatenate([p.reshape(-1) for p in parts])


def moment_errors(target, draws):
    """Per parameter: (mean - true mean) / true sd, and sd / true sd, of the draws in the
    target's structure against the gym's ground truth."""
    identity = target.sample_transformations["identity"]
    values = flat(identity(draws), batched=True)
    true_mean = flat(identity.ground_truth_mean, batched=False)
    true_sd = flat(identity.ground_truth_standard_deviation, batched=False)
    if values.shape[1:] != true_mean.shape:
        raise ValueError(f"draws of {values.shape[1]} values against a ground truth of "
                         f"{true_mean.size}")
    return (values.mean(0) - true_mean) / true_sd, values.std(0) / true_sd


def fit(name, steps, learning_rate, sample_size=64, seed=0, verbose=0,
        stick_the_landing=True, **flow_kwargs):
    """A trained surrogate of the named target and its training seconds."""
    keras.utils.set_random_seed(seed)
    target = gym_target(name)
    model = tn.vi.surrogate_flow(target, sample_size=sample_size, seed=seed,
                                 stick_the_landing=stick_the_landing, **flow_kwargs)
    model.compile(keras.optimizers.Adam(learning_rate))
    start = time.perf_counter()
    model.fit(steps=steps, steps_per_epoch=min(steps, 250), verbose=verbose)
    return target, model, time.perf_counter() - start


def main(argv=None):
    quick = os.environ.get("TFP_NICE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="eight_schools" if quick else ",".join(OFFLINE))
    parser.add_argument("--steps", type=int, default=None, help="each target's own if unset")
    parser.add_argument("--draws", type=int, default=2000 if quick else 20000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = {}
    for name in args.targets.split(","):
        if name not in TARGETS:
            parser.error(f"unknown target {name!r}; one of {tuple(TARGETS)}")
        steps, learning_rate = SETTINGS[name]
        steps = 30 if quick else (args.steps or steps)
        target, model, seconds = fit(name, steps, learning_rate)
        draws = model.sample_parts(args.draws, seed=1)
        mean_error, sd_ratio = moment_errors(target, draws)
        elbo = model.elbo(args.draws, seed=2)
        results[name] = {"steps": steps, "seconds": seconds, "elbo": elbo,
                         "max_abs_mean_error_sd": float(np.abs(mean_error).max()),
                         "sd_ratio_min": float(sd_ratio.min()),
                         "sd_ratio_max": float(sd_ratio.max()),
                         "mean_error_sd": mean_error.tolist(), "sd_ratio": sd_ratio.tolist()}
        r = results[name]
        print(f"{name}: {steps} steps in {seconds:.0f} s, ELBO {elbo:.3f}; over "
              f"{mean_error.size} parameters, |mean error| <= {r['max_abs_mean_error_sd']:.3f} "
              f"sd, sd ratios {r['sd_ratio_min']:.3f}-{r['sd_ratio_max']:.3f}", flush=True)
        assert np.isfinite(elbo) and np.all(np.isfinite(mean_error))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()

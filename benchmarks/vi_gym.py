"""Variational inference on Inference Gym targets: `tn.vi`'s flow surrogate beside TFP's
surrogates, at equal steps and draws a step, in one run.

    python benchmarks/vi_gym.py                                  # three targets
    python benchmarks/vi_gym.py --targets banana --steps 500
    python benchmarks/vi_gym.py --quick                          # a smoke run

Methods, each trained for the same number of steps of `--draws` draws with Adam at the
same learning rate:

* `tn.vi (Keras fit)`: `tn.vi.surrogate_flow(target)` (an IAF of 3 steps over MADEs of two
  hidden layers of `max(32, 2 D)` units, a shift and scale per entry, the target's support)
  trained by `fit`, the plain reparameterised gradient as all the others;
* `tn.vi STL (Keras fit)`: the same with the sticking-the-landing gradient (its score term
  needs `log q` of a stopped draw, which for an IAF is the entry-by-entry direction: D
  passes of each MADE per step);
* `tn.vi coupling (Keras fit)`, `tn.vi coupling STL (Keras fit)`: `flow="coupling"`, 3
  affine couplings over networks of the same size (both directions one pass each, so
  STL costs one more pass, not D);
* `tn.vi (tfp.vi)`: the same IAF surrogate trained by `tfp.vi.fit_surrogate_posterior`;
* `TFP mean-field`: `tfp.experimental.vi.build_factored_surrogate_posterior`;
* `TFP MVN`: `tfp.experimental.vi.build_affine_surrogate_posterior(operators="tril")`;
* `TFP ASVI`: `tfp.experimental.vi.build_asvi_surrogate_posterior(prior)` (Bayesian models
  only: it needs the prior);
* `TFP IAF`: TFP's IAF as its tutorials build it, `tfb.Invert(tfb.MaskedAutoregressiveFlow)`
  over `tfb.AutoregressiveNetwork` (a `tf_keras` layer), the same number of steps, hidden
  units and order reversals as ours, and a shift and scale per entry; trained by
  `tfp.vi.fit_surrogate_posterior`.

Measured on 20,000 draws of each: the ELBO (the same estimator for all), and per parameter
the error of the posterior mean in units of the ground truth's standard deviation and the
ratio of standard deviations (the gym's NUTS ground truth); training seconds and steps per
second, and this machine's 512x512 float32 matmul rate beside them.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))
sys.path.insert(0, str(HERE))
import vi_inference_gym as ex  # noqa: E402
from workers import matmul_gflops  # noqa: E402

tfb, tfd = tfp.bijectors, tfp.distributions
METHODS = ("tn.vi (Keras fit)", "tn.vi STL (Keras fit)", "tn.vi coupling (Keras fit)",
           "tn.vi coupling STL (Keras fit)", "tn.vi (tfp.vi)", "TFP mean-field", "TFP MVN",
           "TFP ASVI", "TFP IAF")


def tfp_iaf(target, num_steps, hidden):
    """TFP's IAF surrogate over the flat unconstrained parameters, mapped onto the support
    and restructured as ours is (by `tn.sbi.FlatSupport`)."""
    import tfp_nice as tn

    layout = tn.vi.target_layout(target)
    structure = tn.vi.target.target_structure(target)
    flat = tn.sbi.FlatSupport(tn.vi.target_support(target), layout, structure)
    size = flat.unconstrained_size
    chain = []
    for k in range(num_steps):
        made = tfb.AutoregressiveNetwork(params=2, hidden_units=[hidden, hidden],
                                         activation="relu")
        chain.append(tfb.Invert(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made)))
        if k < num_steps - 1:
            chain.append(tfb.Permute(list(range(size))[::-1]))
    loc = tf.Variable(tf.zeros(size), name="loc")
    scale = tfp.util.TransformedVariable(tf.ones(size), tfb.Softplus(), name="scale")
    from tfp_nice.vi.surrogate import _restructure

    bijector = tfb.Chain([_restructure(layout, structure), flat, tfb.Shift(loc),
                          tfb.Scale(scale)] + chain[::-1])
    q = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), size), bijector)
    q.sample(2, seed=(0, 0))  # builds the networks
    return q


def surrogate(method, target, num_steps, hidden, seed):
    if method == "TFP mean-field":
        return tfp.experimental.vi.build_factored_surrogate_posterior(
            event_shape=target.event_shape, bijector=target.default_event_space_bijector,
            seed=seed)
    if method == "TFP MVN":
        return tfp.experimental.vi.build_affine_surrogate_posterior(
            event_shape=target.event_shape, operators="tril",
            bijector=target.default_event_space_bijector, seed=seed)
    if method == "TFP ASVI":
        prior = getattr(target, "prior_distribution", None)
        if prior is None:
            return "not a Bayesian model (no prior)"
        try:
            return tfp.experimental.vi.build_asvi_surrogate_posterior(prior, seed=seed)
        except (AttributeError, TypeError, ValueError, NotImplementedError) as err:
            return f"TFP's ASVI fails on the gym's prior ({type(err).__name__}: {err})"
    if method == "TFP IAF":
        return tfp_iaf(target, num_steps, hidden)
    raise ValueError(method)


def tfp_log_prob_fn(target):
    """The target's log-density as `tfp.vi` calls it: a dict-valued draw as keywords."""
    if isinstance(target.event_shape, dict):
        return lambda **parts: target.unnormalized_log_prob(parts)
    return target.unnormalized_log_prob


def elbo_of(target, q, draws, seed):
    x, log_q = q.experimental_sample_and_log_prob(draws, seed=seed)
    return float(tf.reduce_mean(target.unnormalized_log_prob(x) - log_q))


def run_one(name, method, steps, draws, learning_rate, eval_draws, num_steps=3):
    import keras
    import tf_keras

    import tfp_nice as tn

    keras.utils.set_random_seed(0)
    target = ex.gym_target(name)
    size = sum(int(np.prod(s)) for s in tn.vi.target_layout(target))
    hidden = max(32, 2 * size)
    if method.endswith("(Keras fit)"):
        flow = "coupling" if "coupling" in method else "autoregressive"
        target, model, seconds = ex.fit(name, steps, learning_rate, sample_size=draws,
                                        stick_the_landing="STL" in method, flow=flow,
                                        num_steps=num_steps, hidden_units=(hidden, hidden))
        q = model.surrogate
    else:
        if method == "tn.vi (tfp.vi)":
            model = tn.vi.surrogate_flow(target, num_steps=num_steps,
                                         hidden_units=(hidden, hidden))
            q, optimizer = model.surrogate, keras.optimizers.Adam(learning_rate)
        else:
            q = surrogate(method, target, num_steps, hidden, seed=(0, 1))
            if isinstance(q, str):
                return {"skipped": q}
            optimizer = tf_keras.optimizers.Adam(learning_rate)
        log_prob = tfp_log_prob_fn(target)
        loss = tfp.vi.fit_surrogate_posterior(log_prob, q, optimizer,
                                              num_steps=1, sample_size=draws, seed=(0, 2))
        start = time.perf_counter()  # the first call above traced the loop's step
        loss = tfp.vi.fit_surrogate_posterior(log_prob, q, optimizer,
                                              num_steps=steps, sample_size=draws,
                                              seed=(1, 2))
        loss.numpy()
        seconds = time.perf_counter() - start
    sample = q.sample(eval_draws, seed=(3, 4))
    mean_error, sd_ratio = ex.moment_errors(target, sample)
    return {"elbo": elbo_of(target, q, eval_draws, (5, 6)), "seconds": seconds,
            "steps_per_s": steps / seconds,
            "max_abs_mean_error_sd": float(np.abs(mean_error).max()),
            "sd_ratio_min": float(sd_ratio.min()), "sd_ratio_max": float(sd_ratio.max()),
            "mean_error_sd": mean_error.tolist(), "sd_ratio": sd_ratio.tolist()}


def report(results, rate):
    lines = [f"This machine's 512x512 float32 matmul: {rate:.0f} GFLOP/s.", ""]
    for name, rows in results.items():
        lines += [f"#### {name}", "",
                  "| method | ELBO | max abs mean error (sd) | sd ratio range | seconds "
                  "| steps/s |", "| --- | --- | --- | --- | --- | --- |"]
        for method, r in rows.items():
            if "skipped" in r:
                lines.append(f"| {method} | skipped: {r['skipped'][:90]} | | | | |")
                continue
            lines.append(f"| {method} | {r['elbo']:.3f} | {r['max_abs_mean_error_sd']:.3f} "
                         f"| {r['sd_ratio_min']:.3f}-{r['sd_ratio_max']:.3f} "
                         f"| {r['seconds']:.1f} | {r['steps_per_s']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(ex.OFFLINE),
                        help="german_credit needs tensorflow-datasets and a download")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=None, help="each target's own if unset")
    parser.add_argument("--draws", type=int, default=64, help="draws per step")
    parser.add_argument("--eval-draws", type=int, default=20000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    targets = ["eight_schools"] if args.quick else args.targets.split(",")
    methods = args.methods.split(",")
    for method in methods:
        if method not in METHODS:
            parser.error(f"unknown method {method!r}; one of {METHODS}")
    rate = matmul_gflops(512, 5)
    results = {}
    for name in targets:
        steps, learning_rate = ex.SETTINGS[name]
        steps = 20 if args.quick else (args.steps or steps)
        results[name] = {}
        for method in methods:
            r = run_one(name, method, steps, args.draws, learning_rate,
                        1000 if args.quick else args.eval_draws)
            results[name][method] = r
            if args.json:  # as each finishes, so that a stopped run keeps what it did
                pathlib.Path(args.json).write_text(json.dumps(
                    {"matmul_gflops": rate, "steps": args.steps, "draws": args.draws,
                     "results": results}, indent=1))
            print(f"{name} / {method}: " + (r["skipped"] if "skipped" in r else
                  f"ELBO {r['elbo']:.3f}, |mean err| <= {r['max_abs_mean_error_sd']:.3f} sd, "
                  f"sd ratios {r['sd_ratio_min']:.3f}-{r['sd_ratio_max']:.3f}, "
                  f"{r['steps_per_s']:.0f} steps/s"), flush=True)
    print()
    print(report(results, rate))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"matmul_gflops": rate, "steps": args.steps, "draws": args.draws,
             "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()

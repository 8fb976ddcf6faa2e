"""Neural posterior estimation on sbibm tasks: `tn.sbi.posterior_flow` beside the `sbi`
package's default NPE, on the same simulations, scored by C2ST against sbibm's reference
posteriors (0.5 is perfect), with training seconds.

    python benchmarks/sbibm_run.py                                   # every task and budget
    python benchmarks/sbibm_run.py --tasks two_moons --budgets 1000 --observations 2
    python benchmarks/sbibm_run.py --quick                           # a smoke run

Each (task, budget, method) trains once on simulations drawn with a fixed seed (the same
pairs for both methods), samples 10,000 draws per observation and scores them with
`tn.sbi.c2st` (sbibm's protocol) against the 10,000 reference samples. Results are cached
in `runs/sbibm/results.json` as they finish, so the run resumes where it stopped;
`--report` prints the table from the cache. sbibm's C2ST classifier trains until its
training loss stops improving: on the 10-parameter tasks that is more than half an hour
of both cores per score (one score did not finish in 37 minutes here), so
`--c2st-early-stopping` scores with `tn.sbi.c2st(early_stopping=True)` instead (the same
classifier and folds, stopped on held-out accuracy), each row recording its protocol;
keep such rows in a cache of their own (`--cache`). `--half-sbi` trains each of our
methods again for half the seconds `sbi` took on the same task and budget (from the cache;
the best validated weights of the last epoch that ended within them) and scores that, rows
`<method>@half_sbi`: the target "training time to sbi's C2ST at most half of sbi's" is met
where that row's C2ST is at most sbi's. Seconds compare only on one machine: each row
records the CPU's model and its 512x512 matmul rate (the best of three readings), and a
`sbi` row from another CPU model, none recorded, or a rate more than 40% away from this
machine's is skipped with a message (rerun `sbi` here first).
Methods:

* `tfp_nice`: `tn.sbi.posterior_flow(prior, (dim_x,), flow="coupling",
  transformer="spline")` (spline couplings, 5 steps of 2x50), Adam(5e-4), batch 200, 10%
  of the pairs held out for early stopping (patience 20 epochs, the best weights
  restored): `sbi`'s training defaults.
* `tfp_nice_maf`: the same with `flow="autoregressive"`, `tn.Affine(scale="bounded",
  bound=3.0)` and `activation="tanh"` (sbi's MAF uses tanh; on two_moons at 1,000
  simulations, observations 1-3, C2ST 0.911 with relu and an unbounded log-scale, 0.823
  with tanh, 0.763 with tanh and the bounded log-scale, which kept improving for 290
  epochs instead of stopping at 100).
* `tfp_nice_arspline`: `flow="autoregressive"` with the spline transformer (relu: tanh
  gave 0.756 against relu's 0.702 on the same three): `posterior_flow`'s default.
* `sbi`: `sbi.inference.NPE` with its default density estimator (a MAF of 5 transforms of
  2x50), trained with its defaults (needs the `bench` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sbibm_tasks
from workers import matmul_gflops

CACHE = HERE.parent / "runs" / "sbibm" / "results.json"
METHODS = ("tfp_nice", "tfp_nice_maf", "tfp_nice_arspline", "sbi")
BUDGETS = (1000, 10000, 100000)
PUBLISHED_NPE_1E4 = {"two_moons": 0.606, "slcp": 0.901, "gaussian_linear_uniform": 0.553,
                     "bernoulli_glm": 0.678}
PUBLISHED_SNPE_1E4 = {"two_moons": 0.554, "slcp": 0.845, "gaussian_linear_uniform": 0.527,
                      "bernoulli_glm": 0.614}


def simulations(task, budget, seed=0):
    rng = np.random.default_rng(seed + budget)
    theta = sbibm_tasks.sample_prior(task, budget, rng)
    return theta, sbibm_tasks.simulate(task, theta, rng)


def train_tfp_nice(task, theta, x, flow, transformer, max_epochs, seed=0, max_seconds=None,
                   **step_kwargs):
    import keras

    import tfp_nice as tn

    keras.utils.set_random_seed(seed)
    model = tn.sbi.posterior_flow(sbibm_tasks.prior(task), (x.shape[1],), flow=flow,
                                  transformer=transformer, num_steps=5, hidden_units=(50, 50),
                                  seed=seed, **step_kwargs)
    model.compile(keras.optimizers.Adam(5e-4))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(theta))
    held = max(1, len(theta) // 10)
    val, fit = order[:held], order[held:]
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=20,
                                         restore_best_weights=True)
    limit = None if max_seconds is None else time_limit(max_seconds, stop)
    callbacks = [stop] if limit is None else [stop, limit]
    start = time.perf_counter()
    history = model.fit(theta[fit], x[fit], validation_data=(theta[val], x[val]),
                        epochs=max_epochs, batch_size=200, callbacks=callbacks, verbose=0)
    seconds, epochs = time.perf_counter() - start, len(history.history["loss"])
    if limit is not None and limit.kept_seconds is not None:  # the weights kept, not the overrun
        seconds, epochs = limit.kept_seconds, limit.kept_epochs

    def sample(x_o, n, seed):
        return model.sample(n, context=x_o, seed=seed).numpy()[:, 0]

    return sample, seconds, epochs


def time_limit(seconds, stop, clock=time.perf_counter):
    """A callback that stops `fit` at the first epoch's end past `seconds` and leaves the
    best weights `stop` (an `EarlyStopping`) had seen at the last epoch's end within
    `seconds`, for `stop` to restore: the estimator as it stood at that time, not after
    the epoch that ran over. `kept_seconds` and `kept_epochs` say when that was (None if
    the first epoch already ran over, whose weights are then kept). `clock` gives the
    time in seconds."""
    import keras

    class TimeLimit(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = clock()
            self.kept_weights = self.kept_seconds = self.kept_epochs = None

        def on_epoch_end(self, epoch, logs=None):  # after `stop`'s, which runs first
            elapsed = clock() - self.start
            if elapsed <= seconds:
                self.kept_weights, self.kept_seconds = stop.best_weights, elapsed
                self.kept_epochs = epoch + 1
                return
            self.model.stop_training = True
            if self.kept_weights is not None:
                stop.best_weights = self.kept_weights

    return TimeLimit()


def train_sbi(task, theta, x, max_epochs, seed=0):
    import torch
    from sbi.inference import NPE
    from sbi.utils import BoxUniform

    torch.manual_seed(seed)
    if task == "bernoulli_glm":
        cov = np.linalg.inv(sbibm_tasks._glm_prior_precision())
        prior = torch.distributions.MultivariateNormal(torch.zeros(10),
                                                       torch.tensor(cov, dtype=torch.float32))
    else:
        bound = 3.0 if task == "slcp" else 1.0
        prior = BoxUniform(-bound * torch.ones(theta.shape[1]),
                           bound * torch.ones(theta.shape[1]))
    inference = NPE(prior=prior)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its per-epoch progress line
        inference.append_simulations(torch.tensor(theta), torch.tensor(x)).train(
            max_num_epochs=max_epochs, show_train_summary=False)
    seconds = time.perf_counter() - start
    posterior = inference.build_posterior()

    def sample(x_o, n, seed):
        torch.manual_seed(seed)
        return posterior.sample((n,), x=torch.tensor(x_o[0]), show_progress_bars=False).numpy()

    epochs = len(inference.summary["training_loss"]) if hasattr(inference, "summary") else None
    return sample, seconds, epochs


def run_one(task, budget, method, observations, num_samples, max_epochs, wheel,
            max_seconds=None, early_stopping=False):
    import tfp_nice as tn

    theta, x = simulations(task, budget)
    if method == "sbi":
        sample, seconds, epochs = train_sbi(task, theta, x, max_epochs)
    else:
        flow, transformer, step_kwargs = {
            "tfp_nice": ("coupling", "spline", {}),
            "tfp_nice_maf": ("autoregressive", tn.Affine(scale="bounded", bound=3.0),
                             {"activation": "tanh"}),
            "tfp_nice_arspline": ("autoregressive", "spline", {})}[method]
        sample, seconds, epochs = train_tfp_nice(task, theta, x, flow, transformer, max_epochs,
                                                 max_seconds=max_seconds, **step_kwargs)

    scores = []
    for number in observations:
        x_o = sbibm_tasks.observation(task, number, wheel)
        reference = sbibm_tasks.reference_samples(task, number, wheel)[:num_samples]
        draws = sample(x_o, num_samples, number)
        scores.append(tn.sbi.c2st(draws, reference, n_jobs=2,  # folds on both cores
                                  early_stopping=early_stopping))
    return {"task": task, "budget": budget, "method": method, "train_seconds": seconds,
            "epochs": epochs, "c2st": scores, "c2st_mean": float(np.mean(scores)),
            "observations": list(observations), "num_samples": num_samples,
            "c2st_protocol": "early_stopping" if early_stopping else "sbibm",
            "when": time.strftime("%Y-%m-%d %H:%M")}


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def same_machine(row, rate, cpu, tolerance=0.4):
    """Whether `row`'s seconds can stand beside seconds timed here (`rate` GFLOP/s at a
    512x512 matmul, `cpu` the model name): seconds compare only on one machine, and the
    model and the rate are its fingerprint (single readings of the rate on one
    machine ranged from 35 to 185 GFLOP/s, best-of-three readings from 129 to 185). A row that recorded no CPU model cannot be shown to come
    from here, so it does not count."""
    then = row.get("matmul_gflops")
    if then is None or row.get("cpu") != cpu:
        return False
    return abs(then - rate) <= tolerance * max(then, rate)


def load(path):
    return json.loads(path.read_text()) if path.is_file() else {}


def report(results):
    lines = ["| task | budget | method | mean C2ST | C2ST protocol | seconds | epochs "
             "| matmul GFLOP/s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in sorted(results, key=lambda k: (results[k]["task"], results[k]["budget"],
                                              results[k]["method"])):
        r = results[key]
        lines.append(f"| {r['task']} | {r['budget']} | {r['method']} | {r['c2st_mean']:.3f} "
                     f"| {r.get('c2st_protocol', 'sbibm')} "
                     f"| {r['train_seconds']:.0f} | {r['epochs']} "
                     f"| {r.get('matmul_gflops', float('nan')):.0f} |")
    lines.append("")
    lines.append("Published at 10^4 (sbibm): NPE " + ", ".join(
        f"{t} {v}" for t, v in PUBLISHED_NPE_1E4.items()) + "; SNPE (10 rounds) " + ", ".join(
        f"{t} {v}" for t, v in PUBLISHED_SNPE_1E4.items()) + ".")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(sbibm_tasks.TASKS))
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--methods", default="tfp_nice,sbi")
    parser.add_argument("--observations", type=int, default=10, help="the first N of 10")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--max-epochs", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="tiny settings, no cache")
    parser.add_argument("--half-sbi", action="store_true",
                        help="train ours for half of sbi's cached seconds on each task and "
                             "budget, and score that (rows `<method>@half_sbi`)")
    parser.add_argument("--c2st-early-stopping", action="store_true",
                        help="score with tn.sbi.c2st(early_stopping=True): sbibm's "
                             "classifier stopped on held-out accuracy (minutes instead of "
                             "hours on 10 parameters); keep such rows in their own cache")
    parser.add_argument("--report", action="store_true", help="print the cached table")
    parser.add_argument("--cache", default=str(CACHE))
    parser.add_argument("--wheel", default=None, help="a local sbibm 1.1.0 wheel")
    args = parser.parse_args(argv)
    cache = pathlib.Path(args.cache)
    results = load(cache)
    if args.report:
        print(report(results))
        return results
    wheel = pathlib.Path(args.wheel) if args.wheel else None
    if args.quick:
        results = {}  # its rows are printed, not cached
        tasks, budgets, methods = ["two_moons"], [500], args.methods.split(",")
        observations, samples, epochs = [1], 500, 2
    else:
        tasks = args.tasks.split(",")
        budgets = [int(b) for b in args.budgets.split(",")]
        methods = args.methods.split(",")
        observations, samples, epochs = (list(range(1, args.observations + 1)), args.samples,
                                         args.max_epochs)
    for name in methods:
        if name not in METHODS:
            parser.error(f"unknown method {name!r}; one of {METHODS}")
    cpu = cpu_model()
    print(f"machine: {cpu}, {os.cpu_count()} cores", flush=True)
    # the best of three: a neighbour's load only ever lowers a reading (one machine read
    # 35 to 179 GFLOP/s in single readings within an hour)
    rate = max(matmul_gflops(512, 5) for _ in range(3))
    print(f"this machine's 512x512 float32 matmul: {rate:.0f} GFLOP/s", flush=True)
    for budget in budgets:  # every task at a budget before the next budget
        for task in tasks:
            for method in methods:
                key = f"{task}/{budget}/{method}"
                limit = None
                if args.half_sbi:
                    sbi_row = results.get(f"{task}/{budget}/sbi")
                    if method == "sbi" or sbi_row is None:
                        continue
                    if not same_machine(sbi_row, rate, cpu):
                        print(f"{key}@half_sbi: skipped, sbi's row was timed on another "
                              f"machine ({sbi_row.get('cpu', 'a CPU not recorded')}, "
                              f"{sbi_row.get('matmul_gflops', 0):.0f} GFLOP/s; here {cpu}, "
                              f"{rate:.0f}); delete it from the cache and run sbi here "
                              f"first", flush=True)
                        continue
                    key, limit = f"{key}@half_sbi", sbi_row["train_seconds"] / 2
                if key in results and not args.quick:
                    continue
                r = run_one(task, budget, method, observations, samples, epochs, wheel,
                            max_seconds=limit, early_stopping=args.c2st_early_stopping)
                if limit is not None:
                    r["method"], r["seconds_limit"] = f"{method}@half_sbi", limit
                r["matmul_gflops"], r["cpu"] = rate, cpu
                print(f"{key}: C2ST {r['c2st_mean']:.3f} in {r['train_seconds']:.0f} s "
                      f"({r['epochs']} epochs)", flush=True)
                results[key] = r
                if not args.quick:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    tmp = cache.with_suffix(".tmp")
                    tmp.write_text(json.dumps(results, indent=1))
                    tmp.replace(cache)
    print(report(results))
    return results


if __name__ == "__main__":
    main()

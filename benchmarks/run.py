"""Benchmarks: tfp_nice against TFP's RealNVP chain, nflows and a bare-MLP compute limit.

    python benchmarks/run.py [--quick] [--json PATH] [--sections 1,3,...]

Seven sections (see benchmarks/README.md). Each comparison runs in a fresh worker
process of this same invocation (so an earlier section's graphs, threads and
allocations cannot slow a later one); inside a worker the contenders alternate
round by round after a warm-up, and the table gives the median of the rounds and
the ratios. Peak memory needs one process per contender, and time to quality
runs its two contenders one after the other. Speed lives here, never in the tests.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
MNIST = HERE.parents[1] / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
PAPER_HIDDEN = (1000,) * 5
TARGETS = {
    "fit / RealNVP chain": (">=", 1.05),
    "fit / bare MLPs": (">=", 0.95),
    "fit / nflows": (">=", 1.4),
    "share of matmul GFLOP/s": (">=", 0.75),
    "SavedModel / in-process log_prob": (">=", 0.95),
    "2-D fit time / raw loop time": ("<=", 1.3),
}


# --- worker side ----------------------------------------------------------------------------


def alternate(contenders, rounds):
    """Runs each contender once per round, alternating; returns median seconds per run."""
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_gflops(n, rounds):
    import tensorflow as tf

    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    mm = tf.function(lambda: tf.matmul(a, b))
    mm().numpy()

    def run():
        for _ in range(5):
            out = mm()
        out.numpy()
    return 5 * 2 * n ** 3 / alternate({"matmul": run}, rounds)["matmul"] / 1e9


def _data(d, n, seed=0):
    import numpy as np

    return np.random.default_rng(seed).random((n, d)).astype("float32")


def task_train(d, hidden, batch, steps, rounds, jit, nflows=True, matmul=True):
    """Sections 1-2 and 6: samples/s of each contender, and GFLOP/s."""
    import tensorflow as tf

    import contenders as c

    x = _data(d, batch * steps)
    batches = [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(steps)]
    runs = {"NICE.fit": c.nice_fit(x, d, hidden, batch, jit),
            "NICE.fit, mixed_bfloat16": c.nice_fit(x, d, hidden, batch, jit,
                                                   policy="mixed_bfloat16"),
            "NICE flow, raw step": c.nice_raw_step(batches, d, hidden, jit),
            "bare MLPs": c.bare_mlps(batches, d, hidden, jit),
            "RealNVP chain": c.tfp_real_nvp(batches, d, hidden, jit)}
    skipped = {}
    if nflows:
        why = c.nflows_available()
        if why is None:
            runs["nflows"] = c.nflows_flow([b.numpy() for b in batches], d, hidden)
        else:
            skipped["nflows"] = why
    for run in runs.values():  # one more warm-up round
        run()
    seconds = alternate(runs, rounds)
    out = {"samples_per_s": {k: batch * steps / t for k, t in seconds.items()},
           "skipped": skipped,
           "fit_gflops": c.training_flops(d, hidden, batch) * steps / seconds["NICE.fit"] / 1e9}
    if matmul:
        out["matmul_n"] = 2048 if d >= 784 else 512
        out["matmul_gflops"] = matmul_gflops(out["matmul_n"], rounds)
    return out


def task_serve(d, hidden, batch, rounds):
    """Section 3: log_prob and sample in-process against the SavedModel."""
    import tempfile

    import tensorflow as tf

    import tfp_nice as tn

    model = tn.NICE((d,), num_couplings=4, hidden_units=hidden)
    model.compile("adam")
    model.fit(_data(d, 512), epochs=1, batch_size=256, verbose=0)  # data init: not the identity
    x = tf.constant(_data(d, batch, seed=1))
    log_prob = tf.function(model.log_prob)
    sample = tf.function(lambda: model.sample(batch, seed=None))
    with tempfile.TemporaryDirectory() as tmp:
        model.export(os.path.join(tmp, "saved"))
        served = tf.saved_model.load(os.path.join(tmp, "saved")).signatures
        np_x = x.numpy()

        def check():
            got = served["log_prob"](x=x)["log_prob"].numpy()
            want = log_prob(np_x).numpy()
            return float(abs(got - want).max())

        runs = {
            "in-process log_prob": lambda: log_prob(x).numpy(),
            "SavedModel log_prob": lambda: served["log_prob"](x=x)["log_prob"].numpy(),
            "in-process sample": lambda: sample().numpy(),
            "SavedModel sample": lambda: served["sample"](
                num_samples=tf.constant(batch), temperature=tf.constant(1.0),
                seed=tf.constant(-1, tf.int64))["x"].numpy(),
        }
        for run in runs.values():
            run()
        seconds = alternate(runs, rounds)
        max_diff = check()
    return {"per_s": {k: batch / t for k, t in seconds.items()},
            "max_abs_log_prob_difference": max_diff}


def task_small(rounds, spe_values, epochs=4):
    """Section 4: a 2-D flow through `fit` against a raw `tf.function` loop.

    A round is one `fit` call of `epochs` epochs (the default shuffle) against
    the raw loop over the same number of batches (fixed, unshuffled).
    """
    import keras
    import tensorflow as tf

    import contenders as c
    import tfp_nice as tn

    batch = 128
    x = tn.data.two_moons(8192, seed=0)
    batches = [tf.constant(x[i:i + batch]) for i in range(0, len(x), batch)]
    runs = {}
    for spe in spe_values:
        keras.utils.set_random_seed(0)
        model = tn.NICE((2,), num_couplings=4, hidden_units=(64, 64))
        model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=spe)
        model.fit(x[:1024], epochs=1, batch_size=batch, verbose=0)
        runs[f"NICE.fit spe={spe}"] = (
            lambda m=model: m.fit(x, epochs=epochs, batch_size=batch, verbose=0))

    keras.utils.set_random_seed(0)
    model = tn.NICE((2,), num_couplings=4, hidden_units=(64, 64))
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x[:1024], epochs=1, batch_size=batch, verbose=0)
    raw = c.max_likelihood_loop(model.distribution, model.trainable_weights,
                                batches * epochs, jit=False)

    runs["raw tf.function loop"] = raw
    for run in runs.values():
        run()
    seconds = alternate(runs, rounds)
    return {"samples_per_s": {k: epochs * len(x) / t for k, t in seconds.items()}}


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def task_memory(kind, d, hidden, batch, steps):
    """Section 5: peak RSS of one contender training, in its own process."""
    import resource

    import tensorflow as tf

    import contenders as c

    x = _data(d, batch * steps)
    batches = [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(steps)]
    before = _rss_mb()
    make = {"NICE.fit": lambda: c.nice_fit(x, d, hidden, batch, jit=False),
            "bare MLPs": lambda: c.bare_mlps(batches, d, hidden, jit=False),
            "RealNVP chain": lambda: c.tfp_real_nvp(batches, d, hidden, jit=False)}[kind]
    run = make()
    for _ in range(2):
        run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"peak_rss_mb": peak, "rss_before_model_mb": before}


def task_quality(init, target_nats, budget_s, batch, quick):
    """Section 7: seconds of training until held-out log-likelihood >= target_nats."""
    import keras

    import tfp_nice as tn
    from tfp_nice.data import load_mnist, train_test_split

    if not MNIST.exists():
        return {"skipped": f"{MNIST} is absent"}
    images, _ = load_mnist(MNIST)
    if quick:
        images = images[:1000]
    keras.utils.set_random_seed(0)
    preset = tn.presets.nice_mnist(rescaling_init=init, seed=0)
    train, held = train_test_split(images, test_fraction=0.2, seed=0)
    train, held = preset.preprocess(train, seed=0), preset.preprocess(held, seed=1)
    preset.model.compile(preset.optimizer)
    trained, epochs, curve = 0.0, 0, []
    while trained < budget_s:
        start = time.perf_counter()
        preset.model.fit(train, epochs=1, batch_size=batch, verbose=0)
        trained += time.perf_counter() - start
        epochs += 1
        held_ll = -preset.model.evaluate(held, batch_size=500, verbose=0, return_dict=True)["nll"]
        curve.append((round(trained, 1), round(held_ll, 2)))
        if held_ll >= target_nats:
            return {"seconds": trained, "epochs": epochs, "reached": True, "curve": curve,
                    "train_images": len(train), "held_out_images": len(held)}
    return {"seconds": trained, "epochs": epochs, "reached": False, "curve": curve,
            "train_images": len(train), "held_out_images": len(held)}


TASKS = {"train": task_train, "serve": task_serve, "small": task_small,
         "memory": task_memory, "quality": task_quality}


def worker(spec):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(HERE))
    task = json.loads(spec)
    result = TASKS[task.pop("task")](**task)
    print("RESULT " + json.dumps(result), flush=True)


# --- parent side ----------------------------------------------------------------------------


def run_worker(**task):
    """Runs one task in a fresh Python process; returns its result dict."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(task)],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.stderr.write(proc.stderr[-4000:])
    raise RuntimeError(f"benchmark worker {task} failed with exit code {proc.returncode}")


def verdict(name, value):
    op, target = TARGETS[name]
    ok = value >= target if op == ">=" else value <= target
    return f"{value:.2f} (target {op} {target}: {'met' if ok else 'MISSED'})"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine():
    import importlib.metadata as md

    versions = {}
    for pkg in ("tensorflow", "tf-keras", "keras", "tensorflow-probability", "torch", "nflows",
                "tfp-nice"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def section_training(cfg, results, report):
    rows = []
    for jit in (False, True):
        r = run_worker(task="train", d=cfg["d"], hidden=cfg["hidden"], batch=256,
                       steps=cfg["steps"], rounds=cfg["rounds"], jit=jit)
        results[f"training_jit_{jit}"] = r
        s = r["samples_per_s"]
        fit = s["NICE.fit"]
        for name, value in s.items():
            ratio = "" if name == "NICE.fit" else f"{fit / value:.2f}"
            rows.append((f"jit_compile={jit}", name, f"{value:.0f}", ratio))
        for name, why in r["skipped"].items():
            rows.append((f"jit_compile={jit}", name, "skipped: " + why, ""))
        share = r["fit_gflops"] / r["matmul_gflops"]
        results[f"training_jit_{jit}"]["ratios"] = {
            "fit / bare MLPs": fit / s["bare MLPs"],
            "fit / RealNVP chain": fit / s["RealNVP chain"],
            **({"fit / nflows": fit / s["nflows"]} if "nflows" in s else {}),
            "share of matmul GFLOP/s": share}
    report.append(f"### 1. Training throughput (D={cfg['d']}, 4 couplings of "
                  f"{len(cfg['hidden'])}x{cfg['hidden'][0]} ReLU, rescaling, logistic prior, "
                  f"batch 256, Adam; {cfg['steps']} steps per round, median of "
                  f"{cfg['rounds']} rounds)\n")
    report.append(table(("setting", "contender", "samples/s", "NICE.fit / this"), rows))
    report.append("")
    for jit in (False, True):
        ratios = results[f"training_jit_{jit}"]["ratios"]
        report.append(f"* jit_compile={jit}: " + "; ".join(
            f"{k} {verdict(k, v)}" for k, v in ratios.items() if k != "share of matmul GFLOP/s"))
    report.append("\n### 2. Achieved GFLOP/s of `NICE.fit` (the MLPs' multiply-adds only)\n")
    rows = []
    for jit in (False, True):
        r = results[f"training_jit_{jit}"]
        s = r["samples_per_s"]
        bare = r["fit_gflops"] * s["bare MLPs"] / s["NICE.fit"]  # same FLOPs per sample
        r["bare_gflops"] = bare
        rows.append((f"jit_compile={jit}", f"{r['fit_gflops']:.0f}", f"{bare:.0f}",
                     f"{r['matmul_gflops']:.0f}", f"{bare / r['matmul_gflops']:.2f}",
                     verdict("share of matmul GFLOP/s", r["fit_gflops"] / r["matmul_gflops"])))
    n = results["training_jit_False"]["matmul_n"]
    report.append(table(("setting", "NICE.fit GFLOP/s", "bare MLPs GFLOP/s",
                         f"{n}^2 matmul GFLOP/s", "bare MLPs' share", "NICE.fit's share"), rows))


def section_serving(cfg, results, report):
    r = run_worker(task="serve", d=cfg["d"], hidden=cfg["hidden"], batch=1024,
                   rounds=cfg["rounds"])
    results["serving"] = r
    p = r["per_s"]
    report.append("### 3. `log_prob` and `sample`, batch 1024: in-process `tf.function` "
                  "against the SavedModel loaded by TensorFlow alone (examples/s)\n")
    lp = p["SavedModel log_prob"] / p["in-process log_prob"]
    sm = p["SavedModel sample"] / p["in-process sample"]
    report.append(table(("call", "in-process", "SavedModel", "SavedModel / in-process"), [
        ("log_prob", f"{p['in-process log_prob']:.0f}", f"{p['SavedModel log_prob']:.0f}",
         verdict("SavedModel / in-process log_prob", lp)),
        ("sample", f"{p['in-process sample']:.0f}", f"{p['SavedModel sample']:.0f}",
         f"{sm:.2f}")]))
    report.append(f"\nLargest |log_prob difference| between the two: "
                  f"{r['max_abs_log_prob_difference']:.1e} nats.")
    r["ratios"] = {"SavedModel / in-process log_prob": lp, "SavedModel / in-process sample": sm}


def section_small(cfg, results, report):
    r = run_worker(task="small", rounds=cfg["rounds"], spe_values=cfg["spe"])
    results["small_model"] = r
    s = r["samples_per_s"]
    raw = s["raw tf.function loop"]
    best = max((k for k in s if k.startswith("NICE.fit")), key=s.get)
    rows = [(k, f"{v:.0f}", f"{raw / v:.2f}") for k, v in s.items()]
    report.append("### 4. Small-model overhead: two moons (D=2, 4 couplings of 64-64, "
                  "batch 128, 8192 points; a round is one `fit(epochs=4)` against the raw "
                  "loop over the same 256 batches)\n")
    report.append(table(("contender", "samples/s", "time per sample / raw loop's"), rows))
    r["ratios"] = {"2-D fit time / raw loop time": raw / s[best], "best": best}
    report.append(f"\n* best `steps_per_execution`: {best}: "
                  f"{verdict('2-D fit time / raw loop time', raw / s[best])}")


def section_memory(cfg, results, report):
    rows, out = [], {}
    for kind in ("NICE.fit", "bare MLPs", "RealNVP chain"):
        out[kind] = run_worker(task="memory", kind=kind, d=cfg["d"], hidden=cfg["hidden"],
                               batch=256, steps=cfg["steps"])
    base = out["bare MLPs"]["peak_rss_mb"] - out["bare MLPs"]["rss_before_model_mb"]
    for kind, r in out.items():
        grown = r["peak_rss_mb"] - r["rss_before_model_mb"]
        rows.append((kind, f"{r['peak_rss_mb']:.0f}", f"{grown:.0f}", f"{grown / base:.2f}"))
    results["memory"] = out
    report.append("### 5. Peak memory of training (one process each, jit_compile=False)\n")
    report.append(table(("contender", "peak RSS (MB)", "growth over the process before the "
                         "model (MB)", "growth / bare MLPs'"), rows))


def section_scaling(cfg, results, report):
    rows, out = [], []
    for d, batch in cfg["scaling"]:
        steps = max(2, cfg["steps"] * 256 // batch)
        r = run_worker(task="train", d=d, hidden=cfg["hidden"], batch=batch, steps=steps,
                       rounds=cfg["scaling_rounds"], jit=False, nflows=False, matmul=False)
        s = r["samples_per_s"]
        out.append({"d": d, "batch": batch, **r})
        rows.append((d, batch, f"{s['NICE.fit']:.0f}", f"{s['NICE.fit'] / s['bare MLPs']:.2f}",
                     f"{s['NICE.fit'] / s['RealNVP chain']:.2f}", f"{r['fit_gflops']:.0f}"))
    results["scaling"] = out
    report.append("### 6. Scaling (jit_compile=False; the paper's networks)\n")
    report.append(table(("D", "batch", "NICE.fit samples/s", "/ bare MLPs", "/ RealNVP chain",
                         "GFLOP/s"), rows))


def section_quality(cfg, results, report):
    out = {}
    for init in ("data", "zeros"):
        out[init] = run_worker(task="quality", init=init, target_nats=cfg["quality_target"],
                               budget_s=cfg["quality_budget"], batch=256, quick=cfg["quick"])
    results["time_to_quality"] = out
    if "skipped" in out["data"]:
        report.append("### 7. Time to quality\n\nskipped: " + out["data"]["skipped"])
        return
    report.append(f"### 7. Time to quality: seconds of `fit` (evaluation not counted) until "
                  f"the held-out log-likelihood reaches {cfg['quality_target']} nats (MNIST "
                  f"test split from ../shared, {out['data']['train_images']} images to "
                  f"train, {out['data']['held_out_images']} held out, seed 0; "
                  f"`presets.nice_mnist`, batch 256; budget {cfg['quality_budget']} s)\n")
    rows = []
    for init, r in out.items():
        when = f"{r['seconds']:.0f}" if r["reached"] else f"not within {r['seconds']:.0f}"
        best = max(r["curve"], key=lambda point: point[1])
        rows.append((f'rescaling_init="{init}"', when, r["epochs"],
                     f"{r['curve'][-1][1]:.1f}", f"{best[1]:.1f} (after {best[0]:.0f} s)"))
    report.append(table(("start", "seconds", "epochs", "held-out LL at the end (nats)",
                         "best held-out LL (nats)"), rows))


SECTIONS = {1: section_training, 3: section_serving, 4: section_small, 5: section_memory,
            6: section_scaling, 7: section_quality}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few rounds: checks that everything runs")
    parser.add_argument("--json", default=None, help="write every number here")
    parser.add_argument("--sections", default="1,3,4,5,6,7",
                        help="comma-separated section numbers (2 comes with 1)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    try:
        wanted = [int(s) for s in args.sections.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sections takes comma-separated numbers, got {args.sections!r}")
    unknown = [s for s in wanted if s not in SECTIONS and s != 2]
    if unknown:
        parser.error(f"no section {unknown}; sections are 1-7 (2 comes with 1)")
    if args.quick:
        cfg = {"d": 64, "hidden": [64, 64], "steps": 3, "rounds": 2, "spe": [1, 8],
               "scaling": [(16, 64), (64, 256)], "scaling_rounds": 2,
               "quality_target": -1e9, "quality_budget": 1, "quick": True}
    else:
        cfg = {"d": 784, "hidden": list(PAPER_HIDDEN), "steps": 20, "rounds": 7,
               "spe": [1, 16, 64], "scaling_rounds": 5,
               "scaling": [(64, 256), (784, 256), (3072, 256), (784, 64), (784, 1024)],
               "quality_target": 1450.0, "quality_budget": 600, "quick": False}
    results = {"machine": machine(), "settings": cfg, "command": " ".join(
        ["python", "benchmarks/run.py"] + (argv if argv is not None else sys.argv[1:]))}
    report = []
    start = time.perf_counter()
    for number in sorted(set(s if s != 2 else 1 for s in wanted)):
        print(f"running section {number} ...", file=sys.stderr, flush=True)
        SECTIONS[number](cfg, results, report)
        report.append("")
    m = results["machine"]
    print(f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['platform']}, Python {m['python']}, "
          + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    print(f"Command: {results['command']}  ({time.perf_counter() - start:.0f} s)\n")
    print("\n".join(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks: tfp_nice against TFP's RealNVP chain and Glow, nflows, normflows' Glow and a
bare-MLP compute limit.

    python benchmarks/run.py [--quick] [--json PATH] [--sections 1,3,...] [--baseline DIR]

Eight sections (see benchmarks/README.md). Each comparison runs in a fresh worker
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
PAPER_NATS = 1980.5  # NICE's paper, MNIST test set (after 1,500 epochs on 60,000 images)
SERVE_WAYS = ("signature in tf.function", "signature", "restored function")
# Section 7's arms: a preset of tfp_nice.presets and its arguments.
QUALITY_ARMS = {
    "paper: nice_mnist(rescaling_init='zeros')": ("nice_mnist", {"rescaling_init": "zeros"}),
    "nice_mnist()": ("nice_mnist", {}),
    "affine_mnist()": ("affine_mnist", {}),
    "glow_mnist()": ("glow_mnist", {}),
}
QUALITY_BATCH = {"glow_mnist()": 64}  # each recipe's batch size; 256 for the others
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


def task_serve(d, hidden, batches, rounds):
    """Section 3: the SavedModel's `log_prob`, called each way, against in-process, and
    `sample` against in-process at the largest batch."""
    import tempfile

    import tensorflow as tf

    import tfp_nice as tn

    model = tn.NICE((d,), num_couplings=4, hidden_units=hidden)
    model.compile("adam")
    model.fit(_data(d, 512), epochs=1, batch_size=256, verbose=0)  # data init: not the identity
    in_process = tf.function(model.log_prob)
    out = {"log_prob": {}, "max_abs_log_prob_difference": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        model.export(os.path.join(tmp, "saved"))
        served = tf.saved_model.load(os.path.join(tmp, "saved"))
        signature = served.signatures["log_prob"]
        wrapped = tf.function(signature)
        for batch in batches:
            x = tf.constant(_data(d, batch, seed=1))
            runs = {
                "in-process": lambda: in_process(x).numpy(),
                "signature": lambda: signature(x=x)["log_prob"].numpy(),
                "signature in tf.function": lambda: wrapped(x=x)["log_prob"].numpy(),
                "restored function": lambda: served.log_prob(x)["log_prob"].numpy(),
            }
            calls = max(1, 4096 // batch)  # one timed run: many calls of a small batch

            def repeated(run):
                def go():
                    for _ in range(calls):
                        run()
                return go

            for run in runs.values():
                run()
            seconds = alternate({k: repeated(v) for k, v in runs.items()}, rounds)
            out["log_prob"][str(batch)] = {k: t / calls * 1e3 for k, t in seconds.items()}
            diff = float(tf.reduce_max(tf.abs(wrapped(x=x)["log_prob"] - in_process(x))))
            out["max_abs_log_prob_difference"] = max(out["max_abs_log_prob_difference"], diff)
        batch = batches[-1]
        sample = tf.function(lambda: model.sample(batch, seed=None))
        wrapped_sample = tf.function(served.signatures["sample"])
        runs = {"in-process": lambda: sample().numpy(),
                "signature in tf.function": lambda: wrapped_sample(
                    num_samples=tf.constant(batch), temperature=tf.constant(1.0),
                    seed=tf.constant(-1, tf.int64))["x"].numpy()}
        for run in runs.values():
            run()
        seconds = alternate(runs, rounds)
        out["sample"] = {"batch": batch, **{k: t * 1e3 for k, t in seconds.items()}}
    return out


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


def task_quality(arm, budget_s, batch, quick, patience=10, preset_kwargs=None, save=None,
                 jit_compile=False):
    """Section 7: held-out log-likelihood after each epoch of one arm, for `budget_s` s.

    The issue's protocol: the seed-0 split of the MNIST test set (8,000 to train, 2,000
    held out), fresh dequantization noise every epoch (`tn.dequantized_batches`), the
    held-out part dequantized once (seed 1). Every arm stops early the same way: 1,000
    of the 8,000 (seed 0) are a validation slice, dequantized once (seed 2), never
    trained on; `tn.AveragedEarlyStopping` stops `patience` epochs after the best
    validation figure and leaves the best weights in. One `fit` call runs until it
    stops or the seconds of training (evaluation not counted) pass the budget. The
    held-out figure after each epoch is the model's as `fit` would leave it then (an
    EMA recipe: its averaged weights); `final` is the model's as `fit` left it, saved
    to `save` (a `.keras` path) when given. `jit_compile` is Keras' (XLA).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    import tfp_nice as tn
    from tfp_nice.data import MNIST_LEVELS, load_mnist, train_test_split

    if not MNIST.exists():
        return {"skipped": f"{MNIST} is absent"}
    images, _ = load_mnist(MNIST)
    images = images.reshape(len(images), -1)
    if quick:
        images = images[:1000]
    keras.utils.set_random_seed(0)
    name, kwargs = QUALITY_ARMS[arm]
    preset = getattr(tn.presets, name)(seed=0, **{**kwargs, **(preset_kwargs or {})})
    train, held = train_test_split(images, test_fraction=0.2, seed=0)
    train = train.reshape((len(train),) + preset.model.event_shape)  # flat, or images
    held = tf.constant(preset.preprocess(held, seed=1))
    train, validation = train_test_split(train, test_fraction=0.125, seed=0)
    stop = tn.AveragedEarlyStopping(preset.preprocess(validation, seed=2), patience)
    model = preset.model
    model.compile(preset.optimizer, jit_compile=jit_compile)
    mean_log_prob = tf.function(lambda: tf.reduce_mean(model.log_prob(held)))
    curve = []

    class Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.trained = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.trained += time.perf_counter() - self.start
            with tn.averaged_weights(model):  # what fit would leave (an EMA: the averages)
                nats = float(mean_log_prob())
            curve.append((epoch + 1, round(self.trained, 1), round(nats, 2)))
            if self.trained >= budget_s or not np.isfinite(nats):
                model.stop_training = True

    budget = Budget()
    model.fit(tn.dequantized_batches(train, MNIST_LEVELS, batch, seed=0), epochs=10**6,
              verbose=0, callbacks=[stop, budget])
    final = {"epoch": len(curve), "seconds": round(budget.trained, 1),
             "nats": round(float(mean_log_prob()), 2),
             "stopped_early": stop.stopped_epoch > 0,
             "best_validation_epoch": None if stop.best_epoch is None else stop.best_epoch + 1}
    if save:
        model.save(save)
    return {"curve": curve, "final": final, "train_images": len(train),
            "validation_images": len(validation), "held_out_images": len(held),
            "patience": patience}


def task_image(steps_per_scale, batch, steps, rounds):
    """Section 8: training samples/s of the multi-scale image flows, and the conv rate."""
    import tensorflow as tf

    import image_contenders as c

    x = c.image_batches(batch, steps)
    batches = [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(steps)]
    runs = {"tn.Flow.fit": c.tfp_nice_fit(x, steps_per_scale, batch),
            "tn.Flow.fit, jit_compile=True": c.tfp_nice_fit(x, steps_per_scale, batch, True),
            "tn.Flow, raw step": c.tfp_nice_raw(batches, steps_per_scale),
            "TFP tfb.Glow, raw step": c.tfp_glow(batches, steps_per_scale)}
    skipped = {}
    why = c.normflows_available()
    if why is None:
        runs["normflows Glow (PyTorch)"] = c.normflows_glow([b.numpy() for b in batches],
                                                             steps_per_scale)
    else:
        skipped["normflows Glow (PyTorch)"] = why
    for run in runs.values():  # one more warm-up round
        run()
    seconds = alternate(runs, rounds)
    return {"samples_per_s": {k: batch * steps / t for k, t in seconds.items()},
            "skipped": skipped, "conv_gflops": c.conv_gflops(rounds),
            "steps_per_scale": steps_per_scale, "batch": batch}


def task_image_conv(rounds=7):
    """The machine's 3x3 convolution rate alone (`image_contenders.conv_gflops`)."""
    import image_contenders as c

    return {"conv_gflops": c.conv_gflops(rounds)}


TASKS = {"train": task_train, "serve": task_serve, "small": task_small,
         "memory": task_memory, "quality": task_quality, "image": task_image,
         "image_conv": task_image_conv}


def worker(spec):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(HERE))
    task = json.loads(spec)
    code = task.pop("code", None)
    if code:  # an older checkout's tfp_nice, found before the installed one
        sys.path.insert(0, code)
    result = TASKS[task.pop("task")](**task)
    if "tfp_nice" in sys.modules:  # which code was measured
        result["tfp_nice_code"] = os.path.dirname(sys.modules["tfp_nice"].__file__)
    print("RESULT " + json.dumps(result), flush=True)


# --- parent side ----------------------------------------------------------------------------


def run_worker(**task):
    """Runs one task in a fresh Python process; returns its result dict.

    With `code=DIR`, the worker imports `tfp_nice` from the checkout in `DIR`.
    """
    if task.get("code") is None:
        task.pop("code", None)
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


def before_and_after(cfg, results, report, key, task, after, rows_of, header, title):
    """With `--baseline`: the section's worker `task` run again on the older checkout, in
    this invocation, and a table of its result beside `after` (this checkout's) with their
    ratio."""
    if not cfg.get("baseline"):
        return
    before = run_worker(code=cfg["baseline"], **task)
    results.setdefault("before_and_after", {})[key] = {"before": before, "after": after,
                                                       "baseline": cfg["baseline"]}
    report.append(f"\n{title} (before: `{cfg['baseline']}`; after: this checkout)\n")
    report.append(table(header, rows_of(before, after)))


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
        r = results[f"training_jit_{jit}"]
        ratios = r["ratios"]
        # Ratios against another framework move with the machine: its matmul rate beside them.
        report.append(f"* jit_compile={jit} (this machine's {r['matmul_n']}^2 float32 matmul: "
                      f"{r['matmul_gflops']:.0f} GFLOP/s): " + "; ".join(
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

    def rows_of(before, after):
        b, a = before["samples_per_s"], after["samples_per_s"]
        return [(name, f"{b[name]:.0f}", f"{a[name]:.0f}", f"{a[name] / b[name]:.2f}")
                for name in a if name in b]

    before_and_after(cfg, results, report, "training",
                     dict(task="train", d=cfg["d"], hidden=cfg["hidden"], batch=256,
                          steps=cfg["steps"], rounds=cfg["rounds"], jit=False),
                     results["training_jit_False"], rows_of,
                     ("contender (samples/s, jit_compile=False)", "before", "after",
                      "after / before"),
                     "Section 1 before and after")


def section_serving(cfg, results, report):
    models = {f"D={cfg['d']}, {len(cfg['hidden'])}x{cfg['hidden'][0]}": (cfg["d"], cfg["hidden"]),
              "D=64, 2x64 (digits)": (64, [64, 64])}
    out = {name: run_worker(task="serve", d=d, hidden=hidden, batches=cfg["serve_batches"],
                            rounds=cfg["rounds"]) for name, (d, hidden) in models.items()}
    results["serving"] = out
    report.append("### 3. The SavedModel loaded by TensorFlow alone against in-process "
                  "`tf.function(model.log_prob)`: milliseconds per `log_prob` call, each way of "
                  "calling it (median of the rounds; ratio = in-process time / its time)\n")
    rows, ratios = [], {}
    for name, r in out.items():
        for batch, ms in r["log_prob"].items():
            base = ms["in-process"]
            cells = [f"{ms[k]:.3f} ({base / ms[k]:.2f}x)" for k in SERVE_WAYS]
            rows.append([name, batch,
                         f"{base:.3f}"] + cells)
            ratios[f"{name}, batch {batch}"] = base / ms["signature"]
    report.append(table(["model", "batch", "in-process"] + list(SERVE_WAYS), rows))
    worst = min(ratios, key=ratios.get)
    report.append(f"\n* the way the README teaches (`served.signatures[\"log_prob\"]`, "
                  f"called directly), lowest over the table: {worst}: "
                  f"{verdict('SavedModel / in-process log_prob', ratios[worst])}")
    for name, r in out.items():
        s = r["sample"]
        report.append(f"* {name}: `sample` of {s['batch']}: {s['in-process']:.2f} ms in-process, "
                      f"{s['signature in tf.function']:.2f} ms served "
                      f"({s['in-process'] / s['signature in tf.function']:.2f}x); largest "
                      f"|log_prob difference| {r['max_abs_log_prob_difference']:.1e} nats")
    results["serving_ratios"] = ratios

    def rows_of(before, after):
        rows = []
        for batch, ms in after["log_prob"].items():
            old = before["log_prob"].get(batch)
            if old is None:
                continue
            for way in ("in-process", "signature"):
                rows.append((batch, way, f"{old[way]:.3f}", f"{ms[way]:.3f}",
                             f"{old[way] / ms[way]:.2f}"))
        return rows

    for name, (d, hidden) in models.items():
        before_and_after(cfg, results, report, f"serving {name}",
                         dict(task="serve", d=d, hidden=hidden, batches=cfg["serve_batches"],
                              rounds=cfg["rounds"]),
                         out[name], rows_of, ("batch", "way", "before (ms)", "after (ms)",
                                   "speed after / before"),
                         f"Section 3 before and after, {name}: `log_prob` milliseconds per call")


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


def _at(result, seconds):
    """The held-out figure of the model after `seconds` of training: what `fit` left if
    it had returned by then (stopped early), else the last epoch's that ended by then."""
    final = result.get("final")
    if final is not None and final["seconds"] <= seconds:
        return final["nats"]
    done = [nats for _, t, nats in result["curve"] if t <= seconds]
    return done[-1] if done else None


def quality_figure(out, budget_s, path):
    """Section 7's curves: held-out nats against minutes of training, per arm; after an
    early stop, what `fit` left, held (dotted) to the end of the budget."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for arm, r in out.items():
        line, = ax.plot([t / 60 for _, t, _ in r["curve"]], [n for _, _, n in r["curve"]],
                        label=arm)
        final = r["final"]
        if final["stopped_early"]:
            ax.plot([final["seconds"] / 60, budget_s / 60], [final["nats"]] * 2, ls=":",
                    color=line.get_color())
            ax.plot(final["seconds"] / 60, final["nats"], "o", color=line.get_color(), ms=4)
    ax.axhline(PAPER_NATS, color="gray", ls="--", lw=0.8, label="NICE paper (MNIST test)")
    ax.set(xlabel="minutes of training", ylabel="held-out log-likelihood (nats)",
           title="Time to quality on the MNIST split", xscale="log")
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=90)


def section_quality(cfg, results, report):
    out = {arm: run_worker(task="quality", arm=arm, budget_s=cfg["quality_budget"],
                           batch=QUALITY_BATCH.get(arm, 256),
                           quick=cfg["quick"], patience=cfg["quality_patience"])
           for arm in QUALITY_ARMS}
    results["time_to_quality"] = out
    first = next(iter(out.values()))
    if "skipped" in first:
        report.append("### 7. Time to quality\n\nskipped: " + first["skipped"])
        return
    budgets = [b for b in cfg["quality_budgets"] if b <= cfg["quality_budget"]]
    report.append(
        f"### 7. Time to quality: held-out log-likelihood (nats, higher is better) after "
        f"fixed seconds of training (evaluation not counted), MNIST test split from "
        f"../shared ({first['train_images']} images to train, {first['held_out_images']} held "
        f"out, seed 0; {first['validation_images']} of the training images are a validation "
        f"slice, not trained on), fresh dequantization noise every epoch, batch 256 "
        f"(glow_mnist: 64); every arm stops {first['patience']} epochs after its best validation "
        f"figure (`tn.AveragedEarlyStopping`, the best weights left in) or at the budget\n")
    rows = []
    for arm, r in out.items():
        curve, final = r["curve"], r["final"]
        best = max(curve, key=lambda point: point[2])
        paper = next((t for _, t, nats in curve if nats >= PAPER_NATS), None)
        r["at"] = {str(b): _at(r, b) for b in budgets}
        r["best"] = {"epoch": best[0], "seconds": best[1], "nats": best[2]}
        r["seconds_to_paper"] = paper
        ended = (f"stopped after epoch {final['epoch']} ({final['seconds']:.0f} s)"
                 if final["stopped_early"] else f"budget, epoch {final['epoch']}")
        rows.append([arm] + ["-" if r["at"][str(b)] is None else f"{r['at'][str(b)]:.0f}"
                             for b in budgets]
                    + [f"{best[2]:.0f} (epoch {best[0]}, {best[1]:.0f} s)",
                       f"{final['nats']:.0f} (epoch {final['best_validation_epoch']}'s)", ended,
                       "not reached" if paper is None else f"{paper:.0f}"])
    report.append(table(["recipe"] + [f"{b / 60:g} min" if b >= 60 else f"{b} s" for b in budgets]
                        + ["best epoch (seconds)", "left by fit", "training ended",
                           f"seconds to the paper's {PAPER_NATS}"], rows))
    report.append("\nbits/dim = (784 ln 256 - nats) / (784 ln 2): 1980.5 nats is 4.36 "
                  "bits/dim, 2717 is 3.00, 2990 is 2.50.\n")
    last = str(budgets[-1]) if budgets else None
    for arm, r in out.items():
        if last is not None and r["at"][last] is not None:
            report.append(f"* {arm}: held-out figure at the budget {r['at'][last]:.0f}, "
                          f"{r['at'][last] - r['best']['nats']:+.0f} nats from the best epoch's "
                          f"{r['best']['nats']:.0f}")
    if cfg.get("figure"):
        quality_figure(out, cfg["quality_budget"], HERE / "time-to-quality.png")
        report.append("\n![time to quality](time-to-quality.png)")


def section_image(cfg, results, report):
    r = run_worker(task="image", steps_per_scale=cfg["image_steps_per_scale"], batch=64,
                   steps=cfg["image_steps"], rounds=cfg["rounds"])
    results["image_flows"] = r
    s = r["samples_per_s"]
    ours = s["tn.Flow.fit"]
    report.append(f"### 8. Multi-scale image flows: training samples/s, 28x28x1, 2 scales of "
                  f"{r['steps_per_scale']} Glow steps, 64-channel 3x3 -> 1x1 -> 3x3 networks, "
                  f"batch {r['batch']} (median of the rounds; this machine's 3x3 convolution, "
                  f"64 -> 64 channels at 14x14: {r['conv_gflops']:.1f} GFLOP/s)\n")
    xla = s["tn.Flow.fit, jit_compile=True"]
    rows = [(k, f"{v:.0f}", f"{ours / v:.2f}", f"{xla / v:.2f}") for k, v in s.items()]
    report.append(table(("contender", "samples/s", "tn.Flow.fit / it",
                         "tn.Flow.fit with jit_compile=True / it"), rows))
    for name, why in r["skipped"].items():
        report.append(f"\n* {name}: skipped, {why}")


SECTIONS = {1: section_training, 3: section_serving, 4: section_small, 5: section_memory,
            6: section_scaling, 7: section_quality, 8: section_image}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few rounds: checks that everything runs")
    parser.add_argument("--json", default=None, help="write every number here")
    parser.add_argument("--sections", default="1,3,4,5,6,7,8",
                        help="comma-separated section numbers (2 comes with 1)")
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="a checkout of older code (git worktree add DIR REV): sections 1 "
                             "and 3 also run on it, in this invocation, before and after")
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
        parser.error(f"no section {unknown}; sections are 1-8 (2 comes with 1)")
    if args.quick:
        cfg = {"d": 64, "hidden": [64, 64], "steps": 3, "rounds": 2, "spe": [1, 8],
               "scaling": [(16, 64), (64, 256)], "scaling_rounds": 2, "serve_batches": [1, 32],
               "quality_budget": 2, "quality_budgets": [1, 2], "quality_patience": 2,
               "image_steps_per_scale": 1, "image_steps": 2, "quick": True}
    else:
        cfg = {"d": 784, "hidden": list(PAPER_HIDDEN), "steps": 20, "rounds": 7,
               "spe": [1, 16, 64], "scaling_rounds": 5, "serve_batches": [1, 32, 1024],
               "scaling": [(64, 256), (784, 256), (3072, 256), (784, 64), (784, 1024)],
               "quality_budget": 1800, "quality_budgets": [60, 180, 600, 1800],
               "quality_patience": 10, "image_steps_per_scale": 4, "image_steps": 10,
               "quick": False, "figure": True}
    if args.baseline:
        baseline = pathlib.Path(args.baseline).resolve()
        if not (baseline / "tfp_nice" / "__init__.py").is_file():
            parser.error(f"--baseline {args.baseline} holds no tfp_nice package")
        cfg["baseline"] = str(baseline)
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

"""The benchmarks' sections (see benchmarks/README.md): each runs its workers, each in a
fresh process, and appends its table to the report."""

import json
import os
import platform
import subprocess
import sys

from workers import (HERE, PAPER_NATS, QUALITY_ARMS, QUALITY_BATCH,
                     SERVE_WAYS, TARGETS)


def run_worker(**task):
    """Runs one task in a fresh Python process; returns its result dict.

    With `code=DIR`, the worker imports `tfp_nice` from the checkout in `DIR`.
    """
    if task.get("code") is None:
        task.pop("code", None)
    proc = subprocess.run(
        [sys.executable, str(HERE / "run.py"), "--worker", json.dumps(task)],
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

    def rows_of(before, after):
        b, a = before["samples_per_s"], after["samples_per_s"]
        return [(k, f"{b[k]:.0f}", f"{a[k]:.0f}", f"{a[k] / b[k]:.2f}") for k in a if k in b]

    before_and_after(cfg, results, report, "image_flows",
                     dict(task="image", steps_per_scale=cfg["image_steps_per_scale"], batch=64,
                          steps=cfg["image_steps"], rounds=cfg["rounds"]), r, rows_of,
                     ("contender (samples/s)", "before", "after", "after / before"),
                     "Section 8 before and after")


def section_autoregressive(cfg, results, report):
    out = {}
    for d, hidden, n_batches in cfg["maf_sizes"]:  # many small batches: fit's per-call
        r = run_worker(task="maf", d=d, hidden=hidden, steps=5, batch=cfg["maf_batch"],
                       n_batches=n_batches, rounds=cfg["rounds"])  # cost is not the MAF's
        out[f"{d}x{hidden}"] = r
        t = r["train_samples_per_s"]
        ours = t["tn.Flow.fit"]
        report.append(f"### 9. Autoregressive flows: a MAF of 5 steps, MADEs of 2x{hidden}, "
                      f"D = {d}, batch {r['batch']} (median of the rounds; tn.Flow.fit at "
                      f"{r['fit_gflops']:.1f} GFLOP/s of the MADEs' dense matmuls, this "
                      f"machine's 512x512 matmul {r['matmul_gflops']:.0f} GFLOP/s)\n")
        rows = [(k, f"{v:.0f}", f"{ours / v:.2f}") for k, v in t.items()]
        report.append(table(("training", "samples/s", "tn.Flow.fit / it"), rows))
        for title, key in (("MAF density", "density_per_s"),
                           ("IAF sampling", "iaf_samples_per_s")):
            v = r[key]
            first = next(iter(v.values()))
            report.append("\n" + table((title, "per second", "tfp_nice / it"),
                                        [(k, f"{x:.0f}", f"{first / x:.2f}")
                                         for k, x in v.items()]))
        for name, why in r["skipped"].items():
            report.append(f"\n* {name}: skipped, {why}")
        report.append("")
    results["autoregressive"] = out


SECTIONS = {1: section_training, 3: section_serving, 4: section_small, 5: section_memory,
            6: section_scaling, 7: section_quality, 8: section_image,
            9: section_autoregressive}

"""Question 5: what adds expressiveness cheaply, at equal seconds of training."""

import math

import numpy as np
from matplotlib.figure import Figure
from study.runs import arrays_of, base_spec, run
from study.settings import MNIST_TIME_ARMS, TIME_ARMS, TOY, TOY_TIME_ARMS, XLA_ARMS, mnist_available
from study.stats import fmt, summary, table


def _time_sets(cfg):
    """`(title, data, arm names, seeds, seconds)` of question 5 at equal training time."""
    sets = [(title, data, TOY_TIME_ARMS, cfg["time_seeds"], cfg["toy_seconds"])
            for title, data in TOY.items()]
    sets.append(("digits", "digits", tuple(TIME_ARMS) + tuple(XLA_ARMS), cfg["time_seeds"],
                 cfg["digits_seconds"]))
    return sets


def _ms(stats):
    return "-" if stats["n"] == 0 else f"{stats['mean']:.1f}"


def _mnist_time_spec(cfg, name, seed):
    arm = MNIST_TIME_ARMS[name]
    extra = {k: v for k, v in arm.items() if k != "arch"}
    if arm["builder"] == "multiscale":
        extra.update(glow_steps=cfg["glow_steps"], glow_channels=cfg["glow_channels"],
                     batch=64, keep_scales=arm["ms_rescaling"] and seed == 0)
    return base_spec(cfg, "mnist", name, arm.get("arch", {}), seed,
                     seconds=cfg["mnist_seconds"], cost_rows=cfg["mnist_cost_rows"],
                     cost_calls=cfg["cost_calls"], **extra)


def _mnist_time_arms(cfg):
    return tuple(name for name, arm in MNIST_TIME_ARMS.items()
                 if cfg["mnist_autoregressive"] or arm["builder"] != "autoregressive")


def section_q5(cfg, cache, out):
    results, panels = {}, []
    for title, data, names, seeds, seconds in _time_sets(cfg):
        for name in names:
            xla = {"jit_compile": True} if name in XLA_ARMS else {}
            arm = TIME_ARMS[XLA_ARMS.get(name, name)]
            # a NICE arm is tn.NICE's options; another builder's arm is its spec's keys
            arch, extra = ({}, arm) if "builder" in arm else (arm, {})
            results[title, name] = [run(base_spec(cfg, data, name, arch, seed, seconds=seconds,
                                                  cost_rows=cfg["cost_rows"],
                                                  cost_calls=cfg["cost_calls"],
                                                  **xla, **extra), cache)
                                    for seed in range(seeds)]
        panels.append((title, names, seconds, data in ("digits", "mnist")))
    if mnist_available():
        for name in _mnist_time_arms(cfg):
            results["MNIST split", name] = [run(_mnist_time_spec(cfg, name, seed), cache)
                                            for seed in range(cfg["mnist_time_seeds"])]
        panels.append(("MNIST split", _mnist_time_arms(cfg), cfg["mnist_seconds"], True))
    rows, numbers = [], {}
    for title, names, seconds, image in panels:
        base = results[title, names[0]]
        for name in names:
            rs = results[title, name]
            finals = [r["final"] if not r["diverged"] else None for r in rs]
            # paired by seed against the first arm (NICE), positive when better: fewer
            # bits/dim for images, a higher LL for 2-D data
            sign = 1.0 if image else -1.0
            gain = summary([sign * (b["final"] - r["final"]) for r, b in zip(rs, base)
                            if not (r["diverged"] or b["diverged"])])
            epoch_s = summary([r["epoch_seconds"] for r in rs])
            # the best held-out score any epoch reached: what early stopping would keep
            best = summary([(min if image else max)(r["curve"]) if not r["diverged"] else None
                            for r in rs])
            numbers[f"{title} / {name}"] = {
                "score": summary(finals), "best": best, "gain_over_first": gain,
                "seconds_per_epoch": epoch_s,
                "epochs": summary([len(r["curve"]) for r in rs]), "params": rs[0]["params"],
                "diverged": sum(r["diverged"] for r in rs), "runs": len(rs),
                "budget_seconds": seconds, "unit": "bits/dim" if image else "nats",
                "trace_seconds": summary([r["trace_seconds"] for r in rs]),
                "density_ms_per_1000": summary([r.get("density_ms_per_1000") for r in rs]),
                "sampling_ms_per_1000": summary([r.get("sampling_ms_per_1000") for r in rs])}
            trace = numbers[f"{title} / {name}"]["trace_seconds"]["mean"]
            rows.append([title, name, f"{rs[0]['params']:,}", f"{epoch_s['mean']:.3f}",
                         f"{trace:.1f}",
                         f"{numbers[f'{title} / {name}']['epochs']['mean']:.0f}",
                         _ms(numbers[f"{title} / {name}"]["density_ms_per_1000"]),
                         _ms(numbers[f"{title} / {name}"]["sampling_ms_per_1000"]),
                         fmt(summary(finals)), fmt(best),
                         "-" if name == names[0] else fmt(gain),
                         f"{sum(r['diverged'] for r in rs)}/{len(rs)}"])
    cols = 3
    fig = Figure(figsize=(4.2 * cols, 3.4 * math.ceil(len(panels) / cols)), layout="constrained")
    axes = fig.subplots(math.ceil(len(panels) / cols), cols, squeeze=False).ravel()
    for ax, (title, names, seconds, image) in zip(axes, panels):
        for k, name in enumerate(names):
            for seed, r in enumerate(results[title, name]):
                ax.plot(r["seconds"], r["curve"], color=f"C{k}", lw=1, alpha=0.8,
                        label=name if seed == 0 else None)
        ax.set(title=f"{title} ({seconds:g} s of training)", xlabel="seconds of training",
               ylabel="held-out bits/dim" if image else "held-out LL (nats)")
        if image:
            lows = [min(r["curve"]) for name in names for r in results[title, name]
                    if r["curve"] and np.isfinite(min(r["curve"]))]
            if lows:
                ax.set_ylim(min(lows) - 0.1, min(lows) + 2.0)
        ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("Q5 at equal training time: held-out quality against seconds of training "
                 "(one line per seed)")
    fig.savefig(out / "study-q5-time.png", dpi=80)
    text = ["## Q5. What adds expressiveness cheaply, at equal training time",
            "Each arm trains for the same seconds of training (evaluation not counted, nor "
            "the first epoch's one-off tracing of the graphs, shown in its own column as the "
            "first epoch's seconds less the median later epoch's, which a slow later epoch "
            "can make negative when there are few; the epoch that crosses the budget "
            "finishes): "
            f"{cfg['toy_seconds']:g} s on each 2-D set (4 couplings of {cfg['toy_hidden']}, "
            f"batch 256), {cfg['digits_seconds']:g} s on digits (4 couplings of "
            f"{cfg['digits_hidden']}, batch 64), {cfg['mnist_seconds']:g} s on the MNIST split "
            "(NICE: the paper's 5 x 1000 with its optimiser; `affine_mnist()` and the "
            "multi-scale flow with their own recipes, the latter glow_mnist's layout with "
            f"{cfg['glow_steps']} steps per scale of {cfg['glow_channels']}-channel networks, "
            "batch 64; the spline NICE 4 couplings of 256-256 after a logit step, with "
            "ActNorms). Spline couplings: 8 bins on [-3, 3]. The autoregressive arms: 4 "
            "MAF steps (orders reversed between them) over MADEs of the couplings' hidden "
            "sizes (2 x 512 on MNIST, after the same logit step), affine (MAF) or the same "
            "spline with an ActNorm before each step (AR spline); a MAF computes the density "
            "in one pass per step and samples in one pass per entry, and the two cost "
            "columns show what that means for a trained model (log_prob of held-out rows "
            "and sampling, each one traced call, per 1,000 rows; "
            f"{cfg['cost_rows']} rows, {cfg['mnist_cost_rows']} on MNIST). "
            "Held-out score after the last "
            "epoch (LL in nats for 2-D data, higher is better; bits/dim for images, lower is "
            f"better), mean ± sd over {cfg['time_seeds']} seeds ({cfg['mnist_time_seeds']} on "
            "MNIST), the best score of any epoch (what early stopping would keep: on digits the "
            "fast arms run hundreds of epochs and overfit the 1,437 training images), and "
            "the paired gain over each set's first arm, after the last epoch (positive: "
            "better).", "",
            table(["data", "arm", "weights", "s / epoch", "first-epoch tracing (s)", "epochs",
                   "density (ms / 1,000 rows)", "sampling (ms / 1,000 rows)",
                   "held-out", "best epoch's held-out",
                   "gain over the first arm", "diverged"], rows), "",
            "![Q5 at equal time](study-q5-time.png)"]
    if mnist_available():
        with_s = results["MNIST split", "multi-scale + per-channel rescaling"]
        scales = arrays_of(with_s[0], cache)
        names = sorted(k for k in scales.files if k.startswith("scales_"))
        fig = Figure(figsize=(4 * max(len(names), 1), 3.0), layout="constrained")
        for ax, key in zip(fig.subplots(1, max(len(names), 1), squeeze=False).ravel(), names):
            values = scales[key]
            ax.bar(np.arange(len(values)), values)
            ax.set(title=key.replace("scales_", ""), xlabel="channel", ylabel="log-scale s")
        fig.suptitle("NICE's rescaling inside the multi-scale flow: learned per-channel "
                     "log-scales (MNIST, seed 0)")
        fig.savefig(out / "study-ms-rescaling.png", dpi=80)
        without = results["MNIST split", "multi-scale (glow_mnist layout)"]
        paired = summary([b["final"] - r["final"] for r, b in zip(with_s, without)
                          if not (r["diverged"] or b["diverged"])])
        numbers["multiscale_rescaling"] = {
            "gain_bits_per_dim": paired,
            "per_seed": [{"seed": k, "with": r["final"], "with_epochs": len(r["curve"]),
                          "without": b["final"], "without_epochs": len(b["curve"])}
                         for k, (r, b) in enumerate(zip(with_s, without))],
            "log_scales": {k.replace("scales_", ""): scales[k].tolist() for k in names}}
        text += ["", "### NICE's rescaling inside a multi-scale flow",
                 "The same multi-scale flow with a per-channel `RescalingStep` closing each "
                 "scale, against without: held-out bits/dim gained with it, paired by seed, "
                 f"{fmt(paired)}. The per-channel log-scales it learned (seed 0):", "",
                 "![per-channel rescaling](study-ms-rescaling.png)"]
    return text, {"q5": numbers}

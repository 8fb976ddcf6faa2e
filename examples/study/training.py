"""Questions 3 and 4: NICE with and without rescaling on images, and how the log-scales'
initialisation and Adam's beta_2 change convergence."""

import numpy as np
from matplotlib.figure import Figure
from study.runs import base_spec, image_data, run
from study.settings import BETAS, INITS, MNIST_DIR, NVP, VP, mnist_available
from study.stats import fmt, summary, table


def _image_arms(cfg, cache, data, arms, seeds):
    """Runs of each arm; NICE's seed-0 model keeps its scales and samples (for "learned")."""
    return {label: [run(base_spec(cfg, data, label, arch, seed,
                                  keep_model=(label == "NICE" and seed == 0)), cache)
                    for seed in range(seeds)] for label, arch in arms.items()}


def section_q3(cfg, cache, out):
    arms = {"volume preserving": VP, "NICE": NVP}
    datasets = [("digits", cfg["seeds"])] + ([("mnist", cfg["mnist_seeds"])]
                                             if mnist_available() else [])
    rows, numbers = [], {}
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (data, seeds) in zip(axes, datasets):
        res = _image_arms(cfg, cache, data, arms, seeds)
        with_s = [r["final"] for r in res["NICE"]]
        without = [r["final"] for r in res["volume preserving"]]
        diff = summary([a - b for a, b in zip(without, with_s)])
        rows.append([data, seeds, fmt(summary(without)), fmt(summary(with_s)), fmt(diff)])
        numbers[data] = {"without": summary(without), "with": summary(with_s), "gain": diff}
        for label, rs in res.items():
            curves = np.array([r["curve"] for r in rs])
            epochs = np.arange(1, curves.shape[1] + 1)
            ax.plot(epochs, curves.mean(0), label=label)
            ax.fill_between(epochs, curves.min(0), curves.max(0), alpha=0.25)
        ax.set(title=f"{data}: held-out bits/dim ({seeds} seeds, band = min..max)",
               xlabel="epoch", ylabel="bits/dim", yscale="log")
        ax.legend(fontsize=8)
    fig.savefig(out / "study-q3-with-without.png", dpi=80)
    held_out = len(image_data("mnist", cfg)[2]) if mnist_available() else 0
    text = ["## Q3. NICE with and without rescaling, quantitatively",
            "Held-out bits/dim (lower is better): digits (1,437 training images, 360 held out, "
            f"17 levels; 4 couplings of {cfg['digits_hidden']} ReLU, {cfg['digits_epochs']} "
            f"epochs, batch 64) and the MNIST split ({cfg['mnist_train']} images of the MNIST "
            f"test split to train, {held_out} held out; 4 couplings of {cfg['mnist_hidden']} ReLU "
            "(the paper's 5 x 1000 in the full run), "
            f"{cfg['mnist_epochs']} epochs, batch 256, Adam(1e-3, beta_2=0.99, eps=1e-4)); "
            "fresh dequantization noise every epoch. The gain is the paired difference "
            "(same seed) of the two.", ""]
    if not mnist_available():
        text += [f"MNIST: skipped ({MNIST_DIR} is absent).", ""]
    text += [table(["data", "seeds", "without rescaling", "with rescaling (NICE)",
                    "gain of the rescaling"], rows), "",
             "![Q3 curves](study-q3-with-without.png)"]
    return text, {"q3": numbers}


def section_q4(cfg, cache, out):
    results = {}
    for beta_2 in BETAS:
        for label, init in INITS.items():
            results[beta_2, label] = [
                run(base_spec(cfg, "digits", label, NVP, seed, init=list(init), beta_2=beta_2,
                              epsilon=1e-4, epochs=cfg["init_epochs"]), cache)
                for seed in range(cfg["seeds"])]
    rows = []
    for (beta_2, label), rs in results.items():
        diverged = sum(r["diverged"] for r in rs)
        first = summary([r["curve"][0] for r in rs if not r["diverged"]])
        final = summary([r["final"] for r in rs if not r["diverged"]])
        rows.append([f"{beta_2:g}", label, fmt(first), fmt(final), f"{diverged}/{len(rs)}"])
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, beta_2 in zip(axes, BETAS):
        for label in INITS:
            curves = np.array([r["curve"] for r in results[beta_2, label] if not r["diverged"]])
            if len(curves) == 0:
                continue
            epochs = np.arange(1, curves.shape[1] + 1)
            mean, std = curves.mean(0), curves.std(0)
            ax.plot(epochs, mean, label=label)
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
        ax.set(title=f"Adam beta_2 = {beta_2:g}", xlabel="epoch", ylabel="held-out bits/dim",
               yscale="log")
        ax.legend(fontsize=8)
    fig.suptitle(f"Q4: log-scale initialisations on digits ({cfg['seeds']} seeds, band ± 1 sd)")
    fig.savefig(out / "study-q4-inits.png", dpi=80)
    text = ["## Q4. Initialisations of the log-scales, and Adam's beta_2",
            f"NICE on digits ({cfg['digits_hidden']} ReLU, {cfg['init_epochs']} epochs, "
            "Adam(1e-3)), the log-scales started at zero (the paper), from the data (the "
            "library's default: the fresh flow's latent gets the prior's spread), at -1, +1 "
            "and N(0, 0.5), with the paper's Adam(1e-3, eps=1e-4) and its beta_2 read two "
            "ways: 0.99 is what the paper means (it wrote 0.01 in the first Adam preprint's "
            "notation, one minus the decay rate; `tn.presets.nice_mnist` uses 0.99), 0.01 is "
            "the number taken literally by Keras. Held-out bits/dim after the first and the "
            "last epoch, over the runs that did not diverge; a run diverges when its loss or "
            "held-out score stops being finite, or its held-out bits/dim ends above twice a "
            "uniform model's (2 log2 17 = 8.2).", "",
            table(["beta_2", "start", "after epoch 1", f"after epoch {cfg['init_epochs']}",
                   "diverged"], rows), "",
            "![Q4 curves](study-q4-inits.png)"]
    return text, {"q4": {f"{b:g} / {label}": {
        "final": summary([r["final"] for r in rs if not r["diverged"]]),
        "diverged": sum(r["diverged"] for r in rs), "runs": len(rs)}
        for (b, label), rs in results.items()}}

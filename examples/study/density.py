"""Questions 1 and 2: what the rescaling changes in what NICE represents, and where a
non-volume-preserving flow pays off (anomaly detection)."""

import numpy as np
from matplotlib.figure import Figure
from study.runs import arrays_of, base_spec, run, toy_data
from study.settings import AFFINE, NVP, TOY, VP
from study.stats import fmt, summary, table


def section_q1(cfg, cache, out):
    arms = {"volume preserving": VP, "NICE (rescaling)": NVP, "affine couplings": AFFINE}
    results = {}
    for title, data in TOY.items():
        for label, arch in arms.items():
            results[title, label] = [
                run(base_spec(cfg, data, label, arch, seed, density_grid=(seed == 0)), cache)
                for seed in range(cfg["seeds"])]
    rows = [[title] + [fmt(summary([r["final"] for r in results[title, label]]))
                       for label in arms] for title in TOY]
    fig = Figure(figsize=(3.2 * (len(arms) + 1), 3.0 * len(TOY)), layout="constrained")
    axes = fig.subplots(len(TOY), len(arms) + 1, squeeze=False)
    for i, (title, data) in enumerate(TOY.items()):
        points = toy_data(data, cfg["toy_test"], 2000)
        ax = axes[i, 0]
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4)
        ax.set_title(f"{title}: held-out data", fontsize=9)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        for j, label in enumerate(arms):
            a = arrays_of(results[title, label][0], cache)
            ax = axes[i, j + 1]
            image = ax.imshow(a["density"], origin="lower", extent=a["extent"], cmap="magma",
                              aspect="auto")
            fig.colorbar(image, ax=ax, label="p(x)")
            ll = summary([r["final"] for r in results[title, label]])["mean"]
            ax.set_title(f"{label}\nheld-out LL {ll:.2f} nats", fontsize=9)
            ax.set_xlabel("$x_1$")
    fig.suptitle("Q1: model densities (seed 0) beside the data")
    fig.savefig(out / "study-q1-densities.png", dpi=80)
    text = ["## Q1. What the rescaling changes in what NICE can represent",
            f"Held-out log-likelihood (nats per point, higher is better) on 2-D data, "
            f"{cfg['toy_train']} training and {cfg['toy_test']} held-out points, 4 couplings "
            f"of {cfg['toy_hidden']} ReLU networks, {cfg['toy_epochs']} epochs of Adam(1e-3), "
            f"batch 256; mean ± standard deviation over {cfg['seeds']} seeds.", "",
            table(["data"] + list(arms), rows), "",
            "![Q1 densities](study-q1-densities.png)"]
    return text, {"q1": {f"{t} / {label}": summary([r["final"] for r in rs])
                         for (t, label), rs in results.items()}}


def section_q2(cfg, cache, out):
    arms = {"volume preserving": VP, "NICE (rescaling)": NVP}
    aucs = {label: [run(base_spec(cfg, "digits", label, arch, k, hold_out=k,
                                  epochs=cfg["anomaly_epochs"]), cache)["auc"]
                    for k in range(cfg["anomaly_classes"])] for label, arch in arms.items()}
    classes = cfg["anomaly_classes"]
    rows = [[label, fmt(summary(v)), " ".join("-" if a is None else f"{a:.2f}" for a in v)]
            for label, v in aucs.items()]
    fig = Figure(figsize=(6.5, 3.2), layout="constrained")
    ax = fig.subplots()
    for offset, (label, v) in zip((-0.2, 0.2), aucs.items()):
        ax.bar(np.arange(classes) + offset, [np.nan if a is None else a for a in v], width=0.4,
               label=label)
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set(title="Q2: anomaly detection on digits by -log p(x)", xlabel="held-out digit class",
           ylabel="ROC AUC", xticks=range(classes), ylim=(0.0, 1.05))
    ax.legend(fontsize=8)
    fig.savefig(out / "study-q2-anomaly.png", dpi=80)
    text = ["## Q2. Where a non-volume-preserving flow pays off",
            "Likelihood-based anomaly detection: for each digit class k, a flow is trained on "
            "the other nine classes (the training part of the 80/20 split, "
            f"{cfg['anomaly_epochs']} epochs) and scores the held-out part by -log p(x); the "
            "ROC AUC says how well class k (the anomalies) is told from the other held-out "
            f"digits. Mean ± standard deviation over {classes} classes (seed k for class k).",
            "", table(["flow", "AUC", f"AUC per class 0..{classes - 1}"], rows), "",
            "![Q2 anomaly AUC](study-q2-anomaly.png)"]
    paired = summary([a - b for a, b in zip(aucs["NICE (rescaling)"], aucs["volume preserving"])
                      if a is not None and b is not None])
    return text, {"q2": {**{label: summary(v) for label, v in aucs.items()}, "gain": paired}}

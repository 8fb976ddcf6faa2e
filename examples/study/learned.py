"""What the rescaling learns: the scales of an MNIST model, and its samples."""

import numpy as np
from matplotlib.figure import Figure
from study.runs import arrays_of, base_spec, image_data, run
from study.settings import NVP, mnist_available


def section_learned(cfg, cache, out):
    data = "mnist" if mnist_available() else "digits"
    side = 28 if data == "mnist" else 8
    result = run(base_spec(cfg, data, "NICE", NVP, 0, keep_model=True), cache)
    a = arrays_of(result, cache)
    s = a["log_scale"]
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax_img, ax_spec = fig.subplots(1, 2)
    image = ax_img.imshow(s.reshape(side, side), cmap="coolwarm",
                          vmin=-np.abs(s).max(), vmax=np.abs(s).max())
    fig.colorbar(image, ax=ax_img, label="log-scale s")
    ax_img.set(title=f"learned log-scales s ({data}, seed 0)", xticks=[], yticks=[])
    ax_spec.plot(np.sort(s)[::-1])
    ax_spec.set(title="sorted spectrum of s", xlabel="latent dimension (sorted)",
                ylabel="log-scale s")
    fig.savefig(out / "study-learned-scales.png", dpi=80)
    rows = [("data", a["data"])] + [(f"T = {t}", a[f"samples_{t}"]) for t in (0.5, 0.8, 1.0)]
    fig = Figure(figsize=(8, 4.4), layout="constrained")
    axes = fig.subplots(len(rows), 16)
    for i, (label, images) in enumerate(rows):
        for j in range(16):
            ax = axes[i, j]
            ax.imshow(np.clip(images[j].reshape(side, side), 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", fontsize=8)
    fig.suptitle(f"held-out data and samples at temperatures 0.5 / 0.8 / 1.0 ({data}, seed 0)")
    fig.savefig(out / "study-samples.png", dpi=80)
    stretched = s > np.median(s) + 2.0
    train = image_data(data, cfg)[0]
    constant = train.min(0) == train.max(0)  # pixels with one value in every training image
    large, large_constant = int(stretched.sum()), int((stretched & constant).sum())
    text = ["## What the rescaling learns",
            f"The learned log-scales of NICE on {data} (seed 0, as in Q3). The rescaling is "
            "f's last layer, h = exp(s) h': a large s_d stretches a direction along which the "
            "data vary little so that it fills the prior, which is why NICE's paper reads the "
            "spectrum as importance (the larger S_dd, the less important latent dimension d), "
            "like the small end of a PCA spectrum.", "",
            f"Range of s: {s.min():.2f} to {s.max():.2f}; median {np.median(s):.2f}; "
            f"{large} of {s.size} dimensions more than 2 above the median; {large_constant} "
            f"of them are pixels with the same value in all {len(train)} training images "
            f"({int(constant.sum())} such pixels in all; the dequantization noise is all "
            "there is to model there).", "",
            "![learned scales](study-learned-scales.png)", "",
            "![samples](study-samples.png)"]
    return text, {"learned": {"data": data, "min": float(s.min()), "max": float(s.max()),
                              "median": float(np.median(s)), "stretched": large,
                              "stretched_constant": large_constant,
                              "constant": int(constant.sum()), "size": int(s.size)}}

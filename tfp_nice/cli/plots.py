"""PNG plots of a training run: loss curves, 2-D densities, image grids."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def loss_curves(history, path):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label in (("nll", "train"), ("val_nll", "validation")):
        if key in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL (nats / example)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def scatter_pair(data, samples, path):
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    for ax, points, title in ((axes[0], data, "data"), (axes[1], samples, "samples")):
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def density_map(log_prob_fn, data, path, resolution=200):
    lo, hi = data.min(0), data.max(0)
    pad = 0.1 * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(data.dtype)
    density = np.exp(np.asarray(log_prob_fn(grid))).reshape(resolution, resolution)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(density, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="magma",
              aspect="equal")
    ax.set_title("model density")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def image_grid(images, image_shape, path, columns=8):
    images = np.clip(np.asarray(images, np.float64).reshape((-1,) + tuple(image_shape)), 0, 1)
    if images.ndim == 4 and images.shape[-1] not in (3, 4):
        images = images.mean(axis=-1)  # one channel, or channels a screen cannot show
    rows = max(1, math.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 0.9))
    for ax, k in zip(np.ravel(axes), range(rows * columns)):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=1)
    fig.tight_layout(pad=0.1)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def samples_picture(samples, image_shape, path):
    """A picture of samples: a scatter for 2-D data, a grid for images; else nothing."""
    if samples.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5)
        ax.set_aspect("equal")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return True
    if image_shape is not None:
        image_grid(samples[:64], image_shape, path)
        return True
    return False

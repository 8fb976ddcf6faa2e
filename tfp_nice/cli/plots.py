"""PNG plots of a training run: loss curves, 2-D densities, image grids.

Drawn on `matplotlib.figure.Figure`s (no pyplot state, no GUI backend), so they
work on servers and leave a user's own matplotlib settings alone. matplotlib
comes with the `cli` extra; `check_available` says what to install without it.
"""

import math

import numpy as np

from tfp_nice._extras import require

_PURPOSE = "drawing tfp-nice's plots"


def check_available():
    """Raises `MissingExtraError` (one line: what to install) if matplotlib is missing."""
    require("matplotlib", _PURPOSE)


def _figure(**kwargs):
    return require("matplotlib.figure", _PURPOSE).Figure(**kwargs)


def _save(fig, path):
    fig.savefig(path, dpi=90)


def loss_curves(history, path):
    fig = _figure(figsize=(5, 3.5), layout="tight")
    ax = fig.subplots()
    for key, label in (("nll", "train"), ("val_nll", "validation")):
        if key in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], label=label)
    ax.set_title("training curve")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL (nats / example)")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def _scatter(ax, points, title):
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
    ax.set_title(title)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal")


def scatter_pair(data, samples, path):
    fig = _figure(figsize=(8, 4.3), layout="tight")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    _scatter(axes[0], data, f"data ({len(data)} points)")
    _scatter(axes[1], samples, f"model samples ({len(samples)})")
    _save(fig, path)


def density_map(log_prob_fn, data, path, resolution=200):
    lo, hi = data.min(0), data.max(0)
    pad = 0.1 * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(data.dtype)
    density = np.exp(np.asarray(log_prob_fn(grid))).reshape(resolution, resolution)
    fig = _figure(figsize=(5.2, 4), layout="tight")
    ax = fig.subplots()
    image = ax.imshow(density, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]),
                      cmap="magma", aspect="equal")
    fig.colorbar(image, ax=ax, label="density p(x)", shrink=0.8)
    ax.set_title("model density")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    _save(fig, path)


def image_grid(images, image_shape, path, columns=8, title=None):
    images = np.clip(np.asarray(images, np.float64).reshape((-1,) + tuple(image_shape)), 0, 1)
    if images.ndim == 4 and images.shape[-1] not in (3, 4):
        images = images.mean(axis=-1)  # one channel, or channels a screen cannot show
    rows = max(1, math.ceil(len(images) / columns))
    fig = _figure(figsize=(columns * 0.9, rows * 0.9 + (0.4 if title else 0)),
                  layout="tight")
    axes = np.atleast_1d(fig.subplots(rows, columns))
    for ax, k in zip(np.ravel(axes), range(rows * columns)):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=1)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def samples_picture(samples, image_shape, path, title="model samples"):
    """A picture of samples: a scatter for 2-D data, a grid for images; else nothing."""
    if samples.shape[1] == 2:
        fig = _figure(figsize=(4.3, 4.3), layout="tight")
        _scatter(fig.subplots(), samples, f"{title} ({len(samples)})")
        _save(fig, path)
        return True
    if image_shape is not None:
        image_grid(samples[:64], image_shape, path, title=f"{title} ({min(len(samples), 64)})")
        return True
    return False

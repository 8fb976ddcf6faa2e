"""Diagnostics of a posterior estimator: simulation-based calibration (ranks, a uniformity
test, a plot), the expected coverage of highest-density regions, and the classifier
two-sample test (C2ST) with sbibm's protocol.

A posterior here is any object with `sample(n, context=x, seed=...)` (shape `(n, N, D)`
for `N` observation rows) and `log_prob(theta, context=x)`, a trained `PosteriorFlow` or an
exact posterior written by hand."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tfp_nice._validation import check_flag

__all__ = ["c2st", "expected_coverage", "plot_sbc", "sbc_ranks", "sbc_uniformity"]


def _needs(module, extra="sbi"):
    raise ImportError(f"this diagnostic needs {module}; install it with "
                      f"`pip install tfp_nice[{extra}]`.")


def _pairs(theta, x, caller):
    theta = np.asarray(theta, np.float32)
    x = np.asarray(x, np.float32)
    if theta.ndim != 2:
        raise ValueError(f"{caller} takes parameter rows of shape (N, D); got shape "
                         f"{theta.shape}.")
    if len(x) != len(theta):
        raise ValueError(f"{caller} got {len(theta)} parameter rows but {len(x)} "
                         "observation rows; give one observation per parameter row.")
    if not (np.isfinite(theta).all() and np.isfinite(x).all()):
        raise ValueError(f"{caller}: the parameters or observations hold NaN or inf.")
    return theta, x


def _draws(posterior, num_samples, x, seed, batch_rows):
    """Posterior draws `(num_samples, N, D)` given each of the rows `x`, in batches."""
    out = []
    for k, start in enumerate(range(0, len(x), batch_rows)):
        rows = x[start:start + batch_rows]
        out.append(np.asarray(posterior.sample(num_samples, context=rows, seed=seed + k)))
    return np.concatenate(out, axis=1)


def sbc_ranks(posterior: Any, theta: Any, x: Any, num_posterior_samples: int = 100,
              seed: int = 0, batch_rows: int = 100) -> np.ndarray:
    """Simulation-based calibration's ranks (Talts et al. 2018).

    For each pair `(theta_i, x_i)` simulated from the prior and the simulator, the rank of
    each entry of `theta_i` among `num_posterior_samples` draws from `posterior` given
    `x_i`: the number of draws below it, in `0..num_posterior_samples`. Over a calibrated
    posterior the ranks are uniform (`sbc_uniformity`, `plot_sbc`).

    Args:
      posterior: has `sample(n, context=x, seed=...)`, e.g. a trained `PosteriorFlow`.
      theta: parameter rows `(N, D)` drawn from the prior.
      x: the observation rows simulated from them.
      num_posterior_samples: draws per observation (`L`).
      seed: the draws' seed.
      batch_rows: observation rows sampled at once.

    Returns:
      int ranks of shape `(N, D)`.
    """
    theta, x = _pairs(theta, x, "sbc_ranks")
    draws = _draws(posterior, int(num_posterior_samples), x, seed, batch_rows)
    if draws.shape[1:] != theta.shape:
        raise ValueError(f"sbc_ranks: the posterior's draws have shape {draws.shape[1:]} per "
                         f"draw, but the parameters {theta.shape}.")
    return (draws < theta[None]).sum(axis=0).astype(np.int64)


def sbc_uniformity(ranks: Any, num_posterior_samples: int,
                   num_bins: int | None = None) -> np.ndarray:
    """The p-value, per parameter, of a chi-squared test that the SBC ranks are uniform on
    `0..num_posterior_samples`, the ranks grouped into `num_bins` equal bins (by default
    about `N / 20` bins, at most `L + 1`, so that each expects 20 or more ranks). A small
    p-value (below 0.01, say) says the posterior is miscalibrated in that parameter."""
    try:
        from scipy import stats
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        _needs("scipy")
    ranks = np.asarray(ranks)
    if ranks.ndim != 2:
        raise ValueError(f"sbc_uniformity takes ranks of shape (N, D); got {ranks.shape}.")
    levels = int(num_posterior_samples) + 1
    if ranks.min() < 0 or ranks.max() >= levels:
        raise ValueError(f"ranks must lie in 0..{levels - 1} (num_posterior_samples="
                         f"{num_posterior_samples}); got {ranks.min()}..{ranks.max()}.")
    if num_bins is None:
        num_bins = max(2, min(levels, len(ranks) // 20))
    num_bins = min(int(num_bins), levels)
    # Bins of whole ranks, as equal as L + 1 levels allow; each expects its share.
    edges = np.floor(np.linspace(0, levels, num_bins + 1)).astype(int)
    expected = np.diff(edges) / levels * len(ranks)
    p = []
    for column in ranks.T:
        counts = np.histogram(column, bins=edges)[0]
        p.append(stats.chisquare(counts, expected).pvalue)
    return np.asarray(p)


def plot_sbc(ranks: Any, num_posterior_samples: int, names: Sequence[str] | None = None,
             kind: str = "ecdf", confidence: float = 0.99, path: str | None = None) -> Any:
    """Plots SBC ranks per parameter: `kind="ecdf"`, the difference between the ranks'
    empirical CDF and the uniform one, with the pointwise band (binomial quantiles at
    `confidence`) a uniform ECDF stays in, or `kind="hist"`, the rank histogram with the band a
    uniform histogram stays in. Returns the matplotlib figure (saved to `path` if given).
    """
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from scipy import stats
    except ImportError:  # pragma: no cover
        _needs("matplotlib and scipy")
    if kind not in ("ecdf", "hist"):
        raise ValueError(f"kind must be 'ecdf' or 'hist'. Received: kind={kind!r}")
    ranks = np.asarray(ranks)
    n, d = ranks.shape
    levels = int(num_posterior_samples) + 1
    names = list(names) if names is not None else [f"theta[{i}]" for i in range(d)]
    fig, axes = plt.subplots(1, d, figsize=(3.2 * d, 2.8), squeeze=False)
    tail = (1 - confidence) / 2
    for i, ax in enumerate(axes[0]):
        if kind == "ecdf":
            grid = np.arange(levels) / levels
            ecdf = np.array([(ranks[:, i] <= r).mean() for r in range(levels)])
            uniform = (np.arange(levels) + 1) / levels
            low = stats.binom.ppf(tail, n, uniform) / n - uniform
            high = stats.binom.ppf(1 - tail, n, uniform) / n - uniform
            ax.fill_between(grid, low, high, color="0.85", step="post")
            ax.step(grid, ecdf - uniform, where="post")
            ax.axhline(0.0, color="0.4", lw=0.8)
            ax.set_xlabel("fractional rank")
            ax.set_ylabel("ECDF difference" if i == 0 else "")
        else:
            bins = max(2, min(levels, n // 20))
            counts, edges = np.histogram(ranks[:, i], bins=np.linspace(0, levels, bins + 1))
            p = 1.0 / bins
            ax.fill_between([0, levels], stats.binom.ppf(tail, n, p),
                            stats.binom.ppf(1 - tail, n, p), color="0.85")
            ax.stairs(counts, edges)
            ax.set_xlabel("rank")
            ax.set_ylabel("count" if i == 0 else "")
        ax.set_title(names[i])
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def expected_coverage(posterior: Any, theta: Any, x: Any,
                      levels: Sequence[float] = (0.5, 0.8, 0.95),
                      num_posterior_samples: int = 1000, seed: int = 0,
                      batch_rows: int = 20) -> dict[float, float]:
    """The expected coverage of the posterior's highest-density regions (HDRs).

    For each pair `(theta_i, x_i)` simulated from the prior and the simulator, the share
    of `num_posterior_samples` draws given `x_i` whose density exceeds that of `theta_i`
    places `theta_i` inside the HDR of each level above that share. The coverage of a
    level is the fraction of pairs whose `theta_i` it holds: equal to the level for a
    calibrated posterior, below it for an overconfident one, above for an underconfident
    one.

    Returns:
      `{level: coverage}`.
    """
    theta, x = _pairs(theta, x, "expected_coverage")
    levels = [float(a) for a in levels]
    if any(not 0 < a < 1 for a in levels):
        raise ValueError(f"levels lie in (0, 1); got {levels}.")
    shares = []
    for k, start in enumerate(range(0, len(x), batch_rows)):
        rows, truth = x[start:start + batch_rows], theta[start:start + batch_rows]
        draws = np.asarray(posterior.sample(int(num_posterior_samples), context=rows,
                                            seed=seed + k))
        tiled = np.broadcast_to(rows, (draws.shape[0],) + rows.shape)
        log_q = np.asarray(posterior.log_prob(
            draws.reshape((-1,) + draws.shape[2:]),
            context=tiled.reshape((-1,) + rows.shape[1:]))).reshape(draws.shape[:2])
        log_truth = np.asarray(posterior.log_prob(truth, context=rows))
        shares.append((log_q > log_truth[None]).mean(axis=0))
    share = np.concatenate(shares)
    return {a: float((share < a).mean()) for a in levels}


def c2st(samples: Any, reference: Any, seed: int = 1, n_folds: int = 5,
         n_jobs: int | None = None, early_stopping: bool = False) -> float:
    """The classifier two-sample test with sbibm's protocol (Lueckmann et al. 2021).

    The rows of both sets are z-scored with the mean and standard deviation of
    `samples`; an MLP classifier (scikit-learn, ReLU, two hidden layers of `10 * D` units,
    Adam, up to 10,000 iterations) learns to tell the sets apart, and its accuracy on held
    out folds (`n_folds`-fold cross-validation, shuffled with `seed`) is averaged: 0.5 when
    the sets come from one distribution, 1.0 when they are told apart every time.
    Use sets of equal size (sbibm: 10,000 each). `n_jobs` folds are fitted at once
    (scikit-learn's `n_jobs`; the result does not depend on it).

    sbibm's classifier trains until its training loss stops improving, which on close
    sets in many dimensions means thousands of passes (on 10 parameters, more than 30
    CPU-minutes for one score). `early_stopping=True` stops it instead when its accuracy
    on a tenth of each training fold, held out, stops improving (scikit-learn's
    `early_stopping`): a different, much cheaper score, not sbibm's.
    """
    try:
        from sklearn.model_selection import KFold, cross_val_score
        from sklearn.neural_network import MLPClassifier
    except ImportError:  # pragma: no cover
        _needs("scikit-learn")
    a = np.asarray(samples, np.float64)
    b = np.asarray(reference, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"c2st takes two sets of rows (N, D) of one D; got shapes {a.shape} "
                         f"and {b.shape}.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("c2st: the samples or the reference hold NaN or inf.")
    mean, std = a.mean(axis=0), a.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    data = np.concatenate([(a - mean) / std, (b - mean) / std])
    target = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    dim = a.shape[1]
    classifier = MLPClassifier(activation="relu", hidden_layer_sizes=(10 * dim, 10 * dim),
                               max_iter=10000, solver="adam", random_state=seed,
                               early_stopping=check_flag(early_stopping, "early_stopping"))
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(classifier, data, target, cv=folds,
                                         scoring="accuracy", n_jobs=n_jobs)))

"""Gaussian baselines: the held-out log-likelihood a flow has to beat."""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_log_likelihood"]


def gaussian_log_likelihood(train: np.ndarray, test: np.ndarray,
                            covariance: str = "full") -> np.ndarray:
    """Per-example log-likelihood of `test` under the ML Gaussian fitted to `train`.

    Args:
      train: array `(n, ...)` the Gaussian is fitted to; everything after the
        first axis is flattened into one vector per example.
      test: array `(m, ...)` of the same example shape, to be scored.
      covariance: `"full"` or `"diag"`.

    Returns:
      numpy float64 array of shape `(len(test),)`, in nats.
    """
    train = np.asarray(train, np.float64).reshape(len(train), -1)
    test = np.asarray(test, np.float64).reshape(len(test), -1)
    mean = train.mean(0)
    d = train.shape[1]
    diff = test - mean
    if covariance == "full":
        cov = np.cov(train, rowvar=False, bias=True).reshape(d, d)
        sign, log_det = np.linalg.slogdet(cov)
        if sign <= 0:
            raise ValueError("the training covariance is singular; use covariance='diag'.")
        mahalanobis = np.sum(diff @ np.linalg.inv(cov) * diff, axis=1)
    elif covariance == "diag":
        var = train.var(0)
        log_det = np.sum(np.log(var))
        mahalanobis = np.sum(diff ** 2 / var, axis=1)
    else:
        raise ValueError(f"covariance must be 'full' or 'diag', got {covariance!r}.")
    return -0.5 * (d * np.log(2 * np.pi) + log_det + mahalanobis)

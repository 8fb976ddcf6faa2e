"""The statistics the report prints: mean, sd and the t-interval over seeds; tables."""

import math

import numpy as np
from scipy import stats

# ---- statistics -----------------------------------------------------------------------

def summary(values):
    """Mean, standard deviation and the 95% t-interval's half-width of finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return {"n": 0, "mean": float("nan"), "std": float("nan"), "ci": float("nan")}
    std = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    ci = float(stats.t.ppf(0.975, len(v) - 1) * std / math.sqrt(len(v))) if len(v) > 1 else \
        float("nan")
    return {"n": len(v), "mean": float(v.mean()), "std": std, "ci": ci}


def fmt(s, digits=3):
    if s["n"] == 0:
        return "diverged"
    if s["n"] == 1 or not np.isfinite(s["std"]):
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} (95% CI ± {s['ci']:.{digits}f})"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

"""Four tasks of the sbibm benchmark (Lueckmann et al. 2021) in NumPy: priors (as TFP
distributions, for `tn.sbi.posterior_flow`, and as samplers), simulators written from the
tasks' definitions, and the 10 observations and reference posterior samples that ship in
the `sbibm` 1.1.0 wheel (read from the wheel itself; its dependency pins do not suit an
install, so it is downloaded with `pip download sbibm==1.1.0 --no-deps`).

    python benchmarks/sbibm_tasks.py --check      # each simulator against its task's files

The check: for every task and observation, the simulator run on the reference posterior's
samples (the posterior predictive) must hold the observation inside its bulk (the quantile
of its distance from the predictive's mean among the predictive's own, not near 1), and
bernoulli_glm's summary of the raw spikes that ship with an observation must equal the
observation. It catches a simulator that puts the observations elsewhere (a wrong sign or
rotation); a noise scale off by a factor leaves the observation inside the bulk, so it is
not yet a check of the scales.
"""

from __future__ import annotations

import argparse
import bz2
import io
import math
import pathlib
import subprocess
import sys
import zipfile

import numpy as np

TASKS = ("two_moons", "slcp", "gaussian_linear_uniform", "bernoulli_glm")
WHEEL = "sbibm-1.1.0-py2.py3-none-any.whl"
CACHE = pathlib.Path(__file__).resolve().parents[1] / "runs" / "sbibm"


def wheel_path(cache: pathlib.Path = CACHE) -> pathlib.Path:
    """The sbibm wheel, downloaded once (from the package registry) into `cache`."""
    path = cache / WHEEL
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "sbibm==1.1.0", "--no-deps",
                        "-d", str(cache), "-q"], check=True)
    return path


def _csv(data: bytes) -> np.ndarray:
    return np.loadtxt(io.StringIO(data.decode()), delimiter=",", skiprows=1, ndmin=2)


def observation(task: str, number: int, wheel: pathlib.Path | None = None) -> np.ndarray:
    """Observation `number` (1..10) of `task`, shape `(1, dim_data)`."""
    with zipfile.ZipFile(wheel or wheel_path()) as z:
        return _csv(z.read(f"sbibm/tasks/{task}/files/num_observation_{number}/"
                           "observation.csv")).astype("float32")


def reference_samples(task: str, number: int, wheel: pathlib.Path | None = None) -> np.ndarray:
    """The 10,000 reference posterior samples of observation `number` of `task`."""
    with zipfile.ZipFile(wheel or wheel_path()) as z:
        raw = z.read(f"sbibm/tasks/{task}/files/num_observation_{number}/"
                     "reference_posterior_samples.csv.bz2")
    return _csv(bz2.decompress(raw)).astype("float32")


def true_parameters(task: str, number: int, wheel: pathlib.Path | None = None) -> np.ndarray:
    with zipfile.ZipFile(wheel or wheel_path()) as z:
        return _csv(z.read(f"sbibm/tasks/{task}/files/num_observation_{number}/"
                           "true_parameters.csv")).astype("float32")


# --- the tasks ------------------------------------------------------------------------------

def _glm_design() -> np.ndarray:
    """bernoulli_glm's design matrix: a constant and the stimulus at lags 0..8, the stimulus
    100 standard normal draws of NumPy's RandomState(42) (the task's frozen input)."""
    stimulus = np.random.RandomState(42).randn(100).astype("float32")
    design = np.zeros((100, 10), "float32")
    design[:, 0] = 1.0
    for lag in range(9):
        design[lag:, 1 + lag] = stimulus[:100 - lag]
    return design


def _glm_prior_precision() -> np.ndarray:
    m = 9
    d = np.eye(m) - np.eye(m, k=-1)
    f = d @ d + np.diag(np.arange(m) / m) ** 0.5
    precision = np.zeros((10, 10))
    precision[0, 0] = 0.5
    precision[1:, 1:] = f.T @ f
    return precision


def prior(task: str):
    """The task's prior as a TFP distribution (float32)."""
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    if task == "two_moons":
        return tfd.Independent(tfd.Uniform(-np.ones(2, "float32"), np.ones(2, "float32")), 1)
    if task == "slcp":
        return tfd.Independent(tfd.Uniform(np.full(5, -3.0, "float32"),
                                           np.full(5, 3.0, "float32")), 1)
    if task == "gaussian_linear_uniform":
        return tfd.Independent(tfd.Uniform(-np.ones(10, "float32"), np.ones(10, "float32")), 1)
    if task == "bernoulli_glm":
        cov = np.linalg.inv(_glm_prior_precision())
        return tfd.MultivariateNormalTriL(np.zeros(10, "float32"),
                                          np.linalg.cholesky(cov).astype("float32"))
    raise ValueError(f"unknown task {task!r}; one of {TASKS}")


def sample_prior(task: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if task == "two_moons":
        return rng.uniform(-1, 1, size=(n, 2)).astype("float32")
    if task == "slcp":
        return rng.uniform(-3, 3, size=(n, 5)).astype("float32")
    if task == "gaussian_linear_uniform":
        return rng.uniform(-1, 1, size=(n, 10)).astype("float32")
    if task == "bernoulli_glm":
        cov = np.linalg.inv(_glm_prior_precision())
        return rng.multivariate_normal(np.zeros(10), cov, size=n).astype("float32")
    raise ValueError(f"unknown task {task!r}; one of {TASKS}")


def simulate(task: str, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Observations `(n, dim_data)` simulated from parameter rows `theta`."""
    theta = np.asarray(theta, np.float64)
    n = len(theta)
    if task == "two_moons":
        a = rng.uniform(-math.pi / 2, math.pi / 2, size=n)
        r = rng.normal(0.1, 0.01, size=n)
        p = np.stack([np.cos(a) * r + 0.25, np.sin(a) * r], axis=1)
        c, s = math.cos(-math.pi / 4), math.sin(-math.pi / 4)
        z0 = c * theta[:, 0] - s * theta[:, 1]
        z1 = s * theta[:, 0] + c * theta[:, 1]
        return (p + np.stack([-np.abs(z0), z1], axis=1)).astype("float32")
    if task == "slcp":
        s1, s2 = theta[:, 2] ** 2, theta[:, 3] ** 2
        rho = np.tanh(theta[:, 4])
        cov = np.empty((n, 2, 2))
        cov[:, 0, 0] = s1 ** 2 + 1e-6
        cov[:, 0, 1] = cov[:, 1, 0] = rho * s1 * s2
        cov[:, 1, 1] = s2 ** 2 + 1e-6
        chol = np.linalg.cholesky(cov)
        eps = rng.normal(size=(n, 4, 2))
        draws = theta[:, None, :2] + np.einsum("nij,nkj->nki", chol, eps)
        return draws.reshape(n, 8).astype("float32")
    if task == "gaussian_linear_uniform":  # covariance 0.1 I, as the task's precision says
        return (theta + math.sqrt(0.1) * rng.normal(size=theta.shape)).astype("float32")
    if task == "bernoulli_glm":
        design = _glm_design().astype(np.float64)
        psi = theta @ design.T
        spikes = (rng.uniform(size=psi.shape) < 1 / (1 + np.exp(-psi))).astype(np.float64)
        return (spikes @ design).astype("float32")  # the spike count and the STA
    raise ValueError(f"unknown task {task!r}; one of {TASKS}")


def check(wheel: pathlib.Path | None = None, draws: int = 4000, seed: int = 0) -> dict:
    """Each simulator against its task's files. sbibm drew each observation from its own
    simulator at the observation's true parameters (shipped beside it), so if ours is the
    same simulator the observation is one more draw of ``simulate(task, theta_true)``: its
    distance to the draws' mean (standardised by their spread) ranks uniformly among the
    draws' own distances. Per task: the 10 ranks and a Kolmogorov-Smirnov p-value against
    the uniform; a wrong noise scale or link piles the ranks near 0 or 1. Also
    bernoulli_glm's summary of the raw spikes that ship with each observation, recomputed
    here."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    out: dict = {}
    every = []
    for task in TASKS:
        ranks = []
        for number in range(1, 11):
            x_o = observation(task, number, wheel)[0].astype(np.float64)
            theta = np.repeat(true_parameters(task, number, wheel).reshape(1, -1), draws, 0)
            draws_x = simulate(task, theta, rng).astype(np.float64)
            mean, sd = draws_x.mean(0), draws_x.std(0) + 1e-12
            dist = np.sqrt((((draws_x - mean) / sd) ** 2).sum(1))
            ranks.append(float((dist < np.sqrt((((x_o - mean) / sd) ** 2).sum())).mean()))
        out[task] = ranks
        out[f"{task}_ks_p"] = float(stats.kstest(ranks, "uniform").pvalue)
        every += ranks
    out["all_ks_p"] = float(stats.kstest(every, "uniform").pvalue)
    # two_moons exactly: given theta_true, a draw gives back its radius and angle; the
    # observation's rank among our simulator's draws, for each
    def polar(x, t):
        q = x + np.array([np.abs(t[0] + t[1]), t[0] - t[1]]) / math.sqrt(2) - [0.25, 0.0]
        return np.hypot(q[..., 0], q[..., 1]), np.arctan2(q[..., 1], q[..., 0])

    radius_ranks, angle_ranks = [], []
    for number in range(1, 11):
        x_o = observation("two_moons", number, wheel)[0].astype(np.float64)
        t = true_parameters("two_moons", number, wheel)[0].astype(np.float64)
        draws_x = simulate("two_moons", np.repeat(t[None], draws, 0), rng).astype(np.float64)
        (r_o, a_o), (r, a) = polar(x_o, t), polar(draws_x, t)
        radius_ranks.append(float((r < r_o).mean()))
        angle_ranks.append(float((a < a_o).mean()))
    out["two_moons_radius_ks_p"] = float(stats.kstest(radius_ranks, "uniform").pvalue)
    out["two_moons_angle_ks_p"] = float(stats.kstest(angle_ranks, "uniform").pvalue)
    with zipfile.ZipFile(wheel or wheel_path()) as z:
        spikes = _csv(z.read("sbibm/tasks/bernoulli_glm/files/num_observation_1/"
                             "observation_raw.csv"))[0]
    out["bernoulli_glm_summary_error"] = float(np.abs(
        spikes @ _glm_design() - observation("bernoulli_glm", 1, wheel)[0]).max())
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--wheel", default=None, help="a local sbibm 1.1.0 wheel")
    args = parser.parse_args(argv)
    wheel = pathlib.Path(args.wheel) if args.wheel else None
    if args.check:
        for key, value in check(wheel).items():
            print(key, np.round(value, 3).tolist() if isinstance(value, list) else value)


if __name__ == "__main__":
    main()

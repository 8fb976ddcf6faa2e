"""The study's settings: sizes (full and quick), the arms of each question, the data sets."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
SECTIONS = ("q1", "q2", "q3", "q4", "q5", "learned")

FULL = {
    "seeds": 4, "mnist_seeds": 2, "toy_train": 4000, "toy_test": 2000, "toy_epochs": 30,
    "toy_hidden": [64, 64], "digits_epochs": 60, "digits_hidden": [64, 64],
    "init_epochs": 30, "anomaly_epochs": 60, "anomaly_classes": 10, "mnist_epochs": 10,
    "mnist_hidden": [1000] * 5, "mnist_train": 8000, "grid": 120,
    # question 5 at equal training time (seconds of training, evaluation not counted)
    "time_seeds": 3, "mnist_time_seeds": 2, "toy_seconds": 4.0, "digits_seconds": 20.0,
    "mnist_seconds": 60.0, "glow_steps": 8, "glow_channels": 64,
    # question 5's cost columns: rows per traced call, calls timed after the trace
    "cost_rows": 1000, "mnist_cost_rows": 100, "cost_calls": 3, "mnist_autoregressive": True,
}
QUICK = {  # one seed, tiny models: checks that every figure and table is produced
    "seeds": 1, "mnist_seeds": 1, "toy_train": 400, "toy_test": 200, "toy_epochs": 2,
    "toy_hidden": [16], "digits_epochs": 2, "digits_hidden": [16], "init_epochs": 2,
    "anomaly_epochs": 2, "anomaly_classes": 2, "mnist_epochs": 1, "mnist_hidden": [32],
    "mnist_train": 400, "grid": 30,
    "time_seeds": 1, "mnist_time_seeds": 1, "toy_seconds": 0.5, "digits_seconds": 1.0,
    "mnist_seconds": 2.0, "glow_steps": 1, "glow_channels": 8,
    # an autoregressive flow over 784 entries samples in 784 passes a step: its MNIST arms
    # are left out of the quick run (the 2-D sets and digits run them)
    "cost_rows": 100, "mnist_cost_rows": 10, "cost_calls": 1, "mnist_autoregressive": False,
}

# Architectures: keyword arguments of tn.NICE beyond the shared ones.
NVP = {"rescaling": True}
VP = {"rescaling": False}
AFFINE = {"rescaling": True, "coupling": "affine"}
ARCHITECTURES = {  # question 5: the dense candidates (ActNorm and LU alone gained 0.01 and
    # 0.03 bits/dim on digits at equal epochs in the previous study, and are left out)
    "NICE": NVP,
    "NICE + ActNorm + LU": {"rescaling": True, "actnorm": True, "permutation": "lu"},
    "affine": AFFINE,
    "affine + ActNorm + LU": {"rescaling": True, "coupling": "affine", "actnorm": True,
                              "permutation": "lu"},
}
SPLINE = {"rescaling": True, "coupling": "spline", "num_bins": 8, "tail_bound": 3.0}
# Question 5 at equal training time: the dense candidates beside spline couplings (with an
# ActNorm before each coupling too: a spline is the identity outside [-3, 3], where the
# stretched set's x1 lies unless something rescales it first). Every arm trains as `fit`
# does by default on CPU, without XLA; on digits two arms run again compiled with XLA
# (`compile(jit_compile=True)`), to show how much of a spline's cost the compiler removes.
# Autoregressive arms (issue 40): 4 MAF steps (orders reversed between them) over MADEs of the
# couplings' hidden sizes, affine (MAF) or spline (autoregressive neural spline flow, with an
# ActNorm before each step as the spline couplings have), the flow's normal prior.
MAF = {"builder": "autoregressive", "transformer": "affine"}
AR_SPLINE = {"builder": "autoregressive", "transformer": "spline", "num_bins": 8,
             "tail_bound": 3.0, "actnorm": True}
TIME_ARMS = {**ARCHITECTURES, "spline": SPLINE, "spline + ActNorm": {**SPLINE, "actnorm": True},
             "MAF": MAF, "AR spline + ActNorm": AR_SPLINE}
XLA_ARMS = {"NICE, XLA": "NICE", "spline, XLA": "spline"}
TOY_TIME_ARMS = ("NICE", "affine", "spline", "spline + ActNorm", "MAF", "AR spline + ActNorm")
# On the MNIST split: NICE's dense flow, the library's dense affine recipe, the multi-scale
# convolutional flow (glow_mnist's layout), with NICE's per-channel rescaling closing each
# scale, and a dense spline NICE small enough for the budget.
MNIST_TIME_ARMS = {
    "NICE (5 x 1000)": {"builder": "nice", "arch": NVP},
    "affine_mnist()": {"builder": "preset", "preset": "affine_mnist"},
    "multi-scale (glow_mnist layout)": {"builder": "multiscale", "ms_rescaling": False},
    "multi-scale + per-channel rescaling": {"builder": "multiscale", "ms_rescaling": True},
    "spline NICE (4 x 256-256, logit)": {"builder": "nice", "hidden": [256, 256],
                                         "arch": {**SPLINE, "logit_alpha": 0.05,
                                                  "actnorm": True}},
    # MADEs of 2 x 512 over 784 entries (narrower than the 783 degrees: partial=True, as
    # TFP and nflows build them), after the same logit step
    "MAF (4 x 512-512, logit)": {**MAF, "hidden": [512, 512], "logit_alpha": 0.05},
    "AR spline (4 x 512-512, logit)": {**AR_SPLINE, "hidden": [512, 512],
                                       "logit_alpha": 0.05},
}
BETAS = (0.99, 0.01)  # question 4: Adam's beta_2 as the paper means it, and as it wrote it
INITS = {  # question 4: how the log-scales start
    "zeros (NICE)": ("zeros", None),
    "from data": ("data", None),
    "constant -1": ("zeros", -1.0),
    "constant +1": ("zeros", 1.0),
    "random N(0, 0.5)": ("zeros", "normal"),
}
TOY = {"two moons": "moons", "eight Gaussians": "eight", "checkerboard": "checker",
       "eight Gaussians, x100 along x1": "stretched"}


def mnist_available():
    return (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file()

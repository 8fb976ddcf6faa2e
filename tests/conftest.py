"""Shared test set-up: quiet TensorFlow, two logical CPUs, seeds, and a report."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices, so tf.distribute runs on a machine without GPUs.
# This must happen before TensorFlow initialises its devices.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

# A script test_distributed.py runs in subprocesses: importing it (as --doctest-modules
# would) starts a worker; the fixtures' script would rewrite them.
collect_ignore = ["multiworker_worker.py", "fixtures/write_nice_0.1.0.py"]

_WORST = {}
_NUMBERS = {}


def record_error(kind, dtype, value):
    """Keeps the largest error seen per (kind, dtype) for the summary."""
    key = (kind, tf.as_dtype(dtype).name)
    _WORST[key] = max(_WORST.get(key, 0.0), float(value))


def record_number(name, value):
    """Reports a measured number (a likelihood, bits/dim) in the summary."""
    _NUMBERS[name] = float(value)


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test.

    Two strategies in one process hand out clashing collective instance keys
    on CPU ("Shape mismatch in the collective instance"), so tests share one.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    assert strategy.num_replicas_in_sync == 2
    return strategy


@pytest.fixture(autouse=True)
def _seed():
    tf.random.set_seed(1234)
    np.random.seed(1234)


def pytest_sessionfinish(session):
    """Under pytest-xdist, a worker hands its errors and numbers to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["tfp_nice_report"] = json.dumps(
            {"worst": [[k, d, v] for (k, d), v in _WORST.items()], "numbers": _NUMBERS})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The controller gathers each worker's report (see above) for the summary."""
    report = json.loads(getattr(node, "workeroutput", {}).get("tfp_nice_report", "{}"))
    for kind, dtype, value in report.get("worst", []):
        _WORST[(kind, dtype)] = max(_WORST.get((kind, dtype), 0.0), value)
    _NUMBERS.update(report.get("numbers", {}))


def pytest_terminal_summary(terminalreporter):
    if _WORST:
        terminalreporter.section("largest errors seen")
        for (kind, dtype), value in sorted(_WORST.items()):
            terminalreporter.write_line(f"{kind:<28} {dtype:<8} {value:.3e}")
    if _NUMBERS:
        terminalreporter.section("measured numbers")
        for name, value in sorted(_NUMBERS.items()):
            terminalreporter.write_line(f"{name:<60} {value:.4f}")

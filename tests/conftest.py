"""Shared test set-up: quiet TensorFlow, seeded randomness, and an error report."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_WORST = {}


def record_error(kind, dtype, value):
    """Keeps the largest error seen per (kind, dtype) for the summary."""
    key = (kind, tf.as_dtype(dtype).name)
    _WORST[key] = max(_WORST.get(key, 0.0), float(value))


@pytest.fixture(autouse=True)
def _seed():
    tf.random.set_seed(1234)
    np.random.seed(1234)


def pytest_terminal_summary(terminalreporter):
    if not _WORST:
        return
    terminalreporter.section("largest errors seen")
    for (kind, dtype), value in sorted(_WORST.items()):
        terminalreporter.write_line(f"{kind:<28} {dtype:<8} {value:.3e}")

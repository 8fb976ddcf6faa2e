"""Argument checks shared by every layer, with one message style (Keras's).

Each check returns the value it accepts (normalised) and raises `ValueError`
saying what was expected and what was received: "num_couplings must be an int
>= 1. Received: num_couplings=0".
"""

import math

import numpy as np

__all__ = ["check_choice", "check_flag", "check_int", "check_positive_float"]


def _is_int(value):
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def check_int(value, name, minimum=1):
    """An int (not a bool) `>= minimum` (default 1: a positive int)."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_positive_float(value, name):
    """A finite number > 0, as a float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number > 0. Received: {name}={value!r}")
    return number


def check_choice(value, choices, name):
    """One of `choices`."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}. Received: {name}={value!r}")
    return value


def check_flag(value, name):
    """`True` or `False` (not 0/1)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False. Received: {name}={value!r}")
    return value

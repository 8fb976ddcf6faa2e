"""The rescaling study's statistics and run cache (the study itself runs in CI's quick mode)."""

import math

import numpy as np
import pytest

from helpers import repo_module


@pytest.fixture(scope="module")
def study():
    return repo_module("examples/rescaling_study.py", "rescaling_study")


def test_summary_is_the_mean_sd_and_t_interval_by_hand(study):
    s = study.summary([1.0, 2.0, 3.0, 4.0, 5.0, None, float("nan")])
    assert s["n"] == 5
    assert s["mean"] == pytest.approx(3.0)
    assert s["std"] == pytest.approx(math.sqrt(2.5))  # sample sd (n - 1)
    # t quantile 0.975 with 4 degrees of freedom, from a table: 2.7764
    assert s["ci"] == pytest.approx(2.7764 * math.sqrt(2.5) / math.sqrt(5), rel=1e-4)
    # three seeds: t(0.975, 2) = 4.3027
    s3 = study.summary([2.0, 4.0, 9.0])
    assert s3["ci"] == pytest.approx(4.3027 * np.std([2, 4, 9], ddof=1) / math.sqrt(3), rel=1e-4)


def test_summary_of_one_or_no_finite_value(study):
    one = study.summary([float("inf"), 2.5])
    assert one["n"] == 1 and one["mean"] == 2.5 and math.isnan(one["std"])
    assert study.fmt(one) == "2.500"
    none = study.summary([None, float("nan")])
    assert none["n"] == 0 and study.fmt(none) == "diverged"


def test_a_run_is_cached_under_everything_that_defines_it(study):
    cfg = study.QUICK
    a = study.base_spec(cfg, "digits", "NICE", study.NVP, 0)
    assert study.spec_key(a) == study.spec_key(dict(reversed(list(a.items()))))
    for change in ({"seed": 1}, {"arch": study.VP}, {"epochs": a["epochs"] + 1},
                   {"beta_2": 0.01}, {"hidden": [8]}):
        assert study.spec_key({**a, **change}) != study.spec_key(a), change
    assert study.spec_key(study.base_spec(study.FULL, "digits", "NICE", study.NVP, 0)) \
        != study.spec_key(a)


def test_training_seconds_leave_out_the_first_epochs_tracing(study):
    # the first epoch (tracing included) counts as long as the median later one, by hand
    assert study.training_seconds([9.0, 1.0, 3.0, 2.0]) == pytest.approx([2.0, 3.0, 6.0, 8.0])
    # a first epoch shorter than the later ones counts as it was
    assert study.training_seconds([0.5, 1.0, 1.0]) == pytest.approx([0.5, 1.5, 2.5])
    assert study.training_seconds([4.0]) == pytest.approx([4.0])
    assert study.training_seconds([]) == []


def test_a_time_budget_stops_training_after_two_epochs_at_the_least(study):
    import tfp_nice as tn

    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")

    def fit(budget, epochs):
        model = tn.NICE((2,), num_couplings=2, hidden_units=(8,), seed=0)
        model.compile("adam")
        watch = study.Watch(lambda m: 0.0, budget)
        model.fit(x, epochs=epochs, batch_size=32, verbose=0, callbacks=[watch])
        return watch

    assert len(fit(0.0, 6).curve) == 2  # the budget is spent at once, two epochs still run
    assert len(fit(None, 4).curve) == 4  # no budget: every epoch
    assert len(fit(1e6, 4).curve) == 4  # a budget not reached: the epochs Keras was given

"""Numbers a user can check: held-out likelihoods against Gaussian baselines.

Short, seeded fits that fit CI time; each prints what it measured in the
"measured numbers" section of the pytest summary.
"""

import keras
import numpy as np
import pytest

import tfp_nice as tn
from conftest import record_number
from tfp_nice.data import (
    DIGITS_LEVELS,
    bits_per_dim,
    dequantize,
    gaussian_log_likelihood,
    load_digits,
    train_test_split,
    two_moons,
)

pytestmark = pytest.mark.slow


def fit_and_score(model, train, test, epochs, batch_size, learning_rate, early_stopping=False):
    model.compile(keras.optimizers.Adam(learning_rate))
    callbacks, split = [], 0.0
    if early_stopping:
        split = 0.2
        callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=20,
                                                   restore_best_weights=True)]
    model.fit(train, epochs=epochs, batch_size=batch_size, validation_split=split,
              callbacks=callbacks, verbose=0)
    return model.evaluate(test, batch_size=len(test), verbose=0, return_dict=True)


def test_two_moons_beats_the_full_covariance_gaussian():
    keras.utils.set_random_seed(0)
    train, test = two_moons(8000, seed=0), two_moons(2000, seed=1)
    model = tn.NICE((2,), num_couplings=4, hidden_units=(64, 64))
    result = fit_and_score(model, train, test, epochs=30, batch_size=128, learning_rate=1e-3)
    flow = -result["nll"]
    gaussian = float(np.mean(gaussian_log_likelihood(train, test)))
    record_number("two moons held-out LL, NICE (nats)", flow)
    record_number("two moons held-out LL, full-cov Gaussian (nats)", gaussian)
    assert flow > gaussian + 0.3


@pytest.fixture(scope="module")
def digits_split():
    train, test = train_test_split(load_digits()[0], test_fraction=0.2, seed=0)
    return dequantize(train, DIGITS_LEVELS, seed=0), dequantize(test, DIGITS_LEVELS, seed=1)


def digits_model(rescaling, **kwargs):
    keras.utils.set_random_seed(0)
    return tn.NICE((64,), num_couplings=4, hidden_units=(64, 64), rescaling=rescaling,
                   num_levels=DIGITS_LEVELS, **kwargs)


def gaussian_bpd(train, test, covariance):
    nll = -float(np.mean(gaussian_log_likelihood(train, test, covariance)))
    return bits_per_dim(nll, 64, DIGITS_LEVELS)


def test_digits_bits_per_dim_beat_the_diagonal_gaussian(digits_split):
    train, test = digits_split
    result = fit_and_score(digits_model(True), train, test, epochs=400, batch_size=64,
                           learning_rate=1e-3, early_stopping=True)
    diag, full = gaussian_bpd(train, test, "diag"), gaussian_bpd(train, test, "full")
    record_number("digits held-out bits/dim, NICE with rescaling", result["bits_per_dim"])
    record_number("digits held-out bits/dim, diagonal Gaussian", diag)
    record_number("digits held-out bits/dim, full-covariance Gaussian", full)
    assert diag == pytest.approx(3.38, abs=0.05)  # the 3.381, on this split
    assert result["bits_per_dim"] < diag - 0.3


def test_rescaling_layer_matters_on_digits(digits_split):
    train, test = digits_split
    budget = dict(epochs=60, batch_size=64, learning_rate=1e-3)
    with_scaling = fit_and_score(digits_model(True), train, test, **budget)
    without = fit_and_score(digits_model(False), train, test, **budget)
    record_number("digits bits/dim after 60 epochs, with rescaling", with_scaling["bits_per_dim"])
    record_number("digits bits/dim after 60 epochs, without rescaling", without["bits_per_dim"])
    assert with_scaling["bits_per_dim"] < without["bits_per_dim"] - 1.0


def test_data_start_of_the_log_scales_converges_faster(digits_split):
    train, test = digits_split
    budget = dict(epochs=30, batch_size=64, learning_rate=1e-3)
    data_start = fit_and_score(digits_model(True, rescaling_init="data"), train, test, **budget)
    zeros = fit_and_score(digits_model(True, rescaling_init="zeros"), train, test, **budget)
    record_number("digits bits/dim after 30 epochs, log-scales from data", data_start["bits_per_dim"])
    record_number("digits bits/dim after 30 epochs, log-scales zero (NICE)", zeros["bits_per_dim"])
    assert data_start["bits_per_dim"] < zeros["bits_per_dim"] - 1.0


def test_affine_coupling_on_digits_with_the_same_budget(digits_split):
    train, test = digits_split
    budget = dict(epochs=60, batch_size=64, learning_rate=1e-3)
    affine = fit_and_score(digits_model(True, coupling="affine"), train, test, **budget)
    record_number("digits bits/dim after 60 epochs, affine couplings + rescaling",
                  affine["bits_per_dim"])
    assert affine["bits_per_dim"] < 3.2


def test_inpainting_digits_beats_mean_filling(digits_split):
    train, test = digits_split
    model = digits_model(True)
    fit_and_score(model, train, test, epochs=60, batch_size=64, learning_rate=1e-3)
    observed = np.ones((8, 8), bool)
    observed[4:] = False  # the bottom half is missing
    observed = observed.reshape(64)
    x = test[:100]
    start = np.where(observed, x, train.mean(0)).astype("float32")
    out = model.inpaint(start, observed, seed=0).numpy()  # every default: steps, step, noise
    paper = model.inpaint(start, observed, step_size="paper", seed=0).numpy()
    mean_error = float(np.mean((start - x)[:, ~observed] ** 2))
    inpaint_error = float(np.mean((out - x)[:, ~observed] ** 2))
    paper_error = float(np.mean((paper - x)[:, ~observed] ** 2))
    before = float(np.mean(model.log_prob(start)))
    after = float(np.mean(model.log_prob(out)))
    after_paper = float(np.mean(model.log_prob(paper)))
    record_number("digits inpainting MSE of missing pixels, mean filling", mean_error)
    record_number("digits inpainting MSE of missing pixels, NICE inpainting (default)",
                  inpaint_error)
    record_number("digits inpainting MSE of missing pixels, the paper's step", paper_error)
    record_number("digits inpainting mean log p before (nats)", before)
    record_number("digits inpainting mean log p after, default (nats)", after)
    record_number("digits inpainting mean log p after, the paper's step (nats)", after_paper)
    np.testing.assert_array_equal(out[:, observed], start[:, observed])
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert inpaint_error < 0.8 * mean_error
    assert after > before + 10.0
    # What the docstring says of the paper's schedule on data in [0, 1].
    assert paper_error > mean_error and after_paper < before

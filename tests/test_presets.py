"""The paper's MNIST preset: architecture, optimiser reading, dequantization."""

import numpy as np
import pytest

import tfp_nice as tn


def test_nice_mnist_preset_is_the_papers_model():
    preset = tn.presets.nice_mnist()
    model = preset.model
    assert model.event_shape == (784,)
    assert model.num_couplings == 4 and model.hidden_units == (1000,) * 5
    assert model.partition == "odd_even" and model.rescaling and model.prior == "logistic"
    assert model.coupling == "additive" and model.num_levels == 256
    # 4 couplings x (392*1000 + 4*1000*1000 + 1000*392 + bias terms) + 784 log-scales
    expected = 4 * (392 * 1000 + 1000 + 4 * (1000 * 1000 + 1000) + 1000 * 392 + 392) + 784
    assert model.count_params() - 1 == expected  # the -1: the data_initialized flag
    config = preset.optimizer.get_config()
    assert config["learning_rate"] == pytest.approx(1e-3)
    assert config["beta_1"] == pytest.approx(0.9) and config["beta_2"] == pytest.approx(0.99)
    assert config["epsilon"] == pytest.approx(1e-4)


def test_nice_mnist_preprocess_dequantizes_256_levels():
    preset = tn.presets.nice_mnist(rescaling_init="zeros", adam_beta_2=0.01)
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28)).astype(np.uint8)
    x = preset.preprocess(images, seed=0)
    assert x.shape == (5, 784)
    np.testing.assert_array_equal(np.floor(x * 256), images.reshape(5, 784))
    assert preset.model.rescaling_init == "zeros"
    assert preset.optimizer.get_config()["beta_2"] == pytest.approx(0.01)

"""The MNIST presets: the paper's and the library's recipe, their optimisers, dequantization."""

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


def test_affine_mnist_preset_is_the_documented_recipe():
    preset = tn.presets.affine_mnist(seed=3)
    model = preset.model
    assert model.event_shape == (784,) and model.num_levels == 256 and model.seed == 3
    assert model.num_couplings == 16 and model.hidden_units == (256,) * 3
    assert model.coupling == "affine" and model.actnorm and model.logit_alpha == 0.05
    assert model.partition == "odd_even" and model.rescaling and model.prior == "logistic"
    assert model.permutation == "random"
    # 16 couplings x (392*256 + 2*256*256 + 256*784 + biases, + the affine scale vector of
    # 392), 16 ActNorms of 2*784 and permutations of 784 (not trained), the rescaling's 784;
    # the logit step has no weights
    coupling = 392 * 256 + 256 + 2 * (256 * 256 + 256) + 256 * 784 + 784 + 392
    assert model.count_params() - 1 == 16 * coupling + 16 * 3 * 784 + 784
    perms = [s.permutation.numpy() for s in model.steps if type(s).__name__ == "PermutationStep"]
    assert len(perms) == 16 and len({p.tobytes() for p in perms}) == 16
    config = preset.optimizer.get_config()
    assert config["learning_rate"] == pytest.approx(1e-3) and config["epsilon"] == pytest.approx(1e-4)
    assert config["beta_1"] == pytest.approx(0.9) and config["beta_2"] == pytest.approx(0.99)
    assert config["use_ema"] and config["ema_momentum"] == pytest.approx(0.99)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28)).astype(np.uint8)
    np.testing.assert_array_equal(np.floor(preset.preprocess(images, seed=0) * 256),
                                  images.reshape(3, 784))


def _mnist_like_digits():
    """scikit-learn's 8x8 digits (17 levels) as 28x28 uint8 images: MNIST-shaped, offline."""
    from sklearn.datasets import load_digits

    digits = load_digits().images  # values 0..16
    big = np.kron(digits, np.ones((3, 3)))  # 24x24
    images = np.zeros((len(digits), 28, 28), np.uint8)
    images[:, 2:26, 2:26] = (big * 15).astype(np.uint8)
    return images


def test_affine_mnist_quick_run_is_finite_and_improving():
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    images = _mnist_like_digits()
    train, held = images[:640], images[-300:]
    preset = tn.presets.affine_mnist()
    model = preset.model
    model.compile(preset.optimizer)
    held = tf.constant(preset.preprocess(held, seed=1))
    scores = []

    class Score(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with tn.averaged_weights(self.model):
                scores.append(float(tf.reduce_mean(self.model.log_prob(held))))

    batches = tn.dequantized_batches(train.reshape(len(train), -1), 256, 64, seed=0)
    model.fit(batches, epochs=4, verbose=0, callbacks=[Score()])
    assert np.all(np.isfinite(scores)), scores
    assert scores[-1] > scores[0] + 50, scores  # nats per image, held out, averaged weights
    final = float(tf.reduce_mean(model.log_prob(held)))  # fit left the averages in
    assert final == pytest.approx(scores[-1], abs=1e-3)


def test_glow_mnist_preset_is_the_documented_multiscale_flow():
    preset = tn.presets.glow_mnist()
    model = preset.model
    assert model.event_shape == (28, 28, 1) and model.latent_shape == (784,)
    assert model.prior == "normal" and model.num_levels == 256
    names = [type(s).__name__ for s in model.steps]
    assert names == ["LogitStep", "SqueezeStep"] + ["ActNormStep", "Conv1x1Step",
                                                    "CouplingStep"] * 8 + ["FactorOutStep"]
    exit_ = model.steps[-1]
    assert exit_.keep == 2 and exit_.learned_prior
    assert [type(s).__name__ for s in exit_.steps] == (
        ["SqueezeStep"] + ["ActNormStep", "Conv1x1Step", "CouplingStep"] * 8)
    couplings = [s for s in tn.steps.walk(model.steps) if isinstance(s, tn.CouplingStep)]
    assert all(c.coupling == "affine" and c.hidden_channels == (64, 64) for c in couplings)
    # per step at 14x14x4: ActNorm 2*4, 1x1 conv 2*16 + 4, network 3x3 2->64, 1x1 64->64,
    # 3x3 64->2*2 (with biases) and 2 bounds; the learned prior a 3x3 2->2*2 and 2 bounds;
    # per step at 7x7x8 likewise with 8 channels
    scale_0 = 8 + 36 + (2 * 9 * 64 + 64) + (64 * 64 + 64) + (64 * 9 * 4 + 4) + 2
    prior = 2 * 9 * 4 + 4 + 2
    scale_1 = 16 + 136 + (4 * 9 * 64 + 64) + (64 * 64 + 64) + (64 * 9 * 8 + 8) + 4
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 8 * scale_0 + prior + 8 * scale_1 == 152318
    config = preset.optimizer.get_config()
    assert config["learning_rate"] == pytest.approx(2e-3) and config["use_ema"]
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28)).astype(np.uint8)
    x = preset.preprocess(images, seed=0)
    assert x.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(np.floor(x[..., 0] * 256), images)


def test_glow_mnist_warm_up_rises_linearly_then_holds_and_survives_serialization():
    import keras

    preset = tn.presets.glow_mnist(steps_per_scale=1, warmup_steps=100, use_ema=False)
    optimizer = preset.optimizer
    assert not optimizer.get_config()["use_ema"]
    schedule = optimizer._learning_rate
    rates = [float(schedule(step)) for step in (0, 25, 50, 100, 101, 10_000)]
    np.testing.assert_allclose(rates, [0.0, 5e-4, 1e-3, 2e-3, 2e-3, 2e-3], rtol=1e-6, atol=1e-9)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert float(again._learning_rate(50)) == pytest.approx(1e-3)
    # without warm-up the rate is the plain float, from the first batch
    plain = tn.presets.glow_mnist(steps_per_scale=1).optimizer
    assert plain.get_config()["learning_rate"] == pytest.approx(2e-3)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_glow_mnist_refuses_a_warm_up_that_is_not_a_whole_number(bad):
    with pytest.raises((ValueError, TypeError), match="warmup_steps"):
        tn.presets.glow_mnist(steps_per_scale=1, warmup_steps=bad)

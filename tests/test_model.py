"""The Keras 3 NICE model: training, the distribution it exposes, saving, strategies."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from helpers import numpy_mlp, numpy_nice_log_prob
from tfp_nice.data import bits_per_dim

tfd = tfp.distributions


def small_model(event_shape=(6,), **kwargs):
    kwargs.setdefault("num_couplings", 4)
    kwargs.setdefault("hidden_units", (16, 16))
    partition = "odd_even" if len(event_shape) == 1 else "checkerboard"
    kwargs.setdefault("partition", partition)
    return tn.NICE(event_shape, **kwargs)


def data(n=256, event_shape=(6,), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n,) + event_shape) * 0.5 + 1.0).astype("float32")


def randomise(model, seed=0, scale=0.2):
    """Gives every weight a random value (a fresh model is the identity flow)."""
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(rng.normal(scale=scale, size=w.shape).astype(w.dtype))
    return model


# --- the distribution and its methods -------------------------------------------------


def test_fresh_model_is_identity_flow_over_the_prior():
    model = small_model()
    x = data(8)
    prior = tfd.Independent(tfd.Logistic(tf.zeros(6), 1.0), 1)
    np.testing.assert_allclose(model.log_prob(x), prior.log_prob(x), rtol=1e-6)
    np.testing.assert_array_equal(model.encode(x), x)


def test_distribution_log_prob_and_predict_are_nice_formula_in_numpy():
    """Every way to score (the TFP distribution, log_prob, predict, call) against NICE's
    eq. (3) computed in numpy from the weights and literal masks."""
    model = randomise(small_model(dtype="float64"))
    x = data(32).astype("float64")
    first = np.array([True, False] * 3)  # odd_even: entries 0, 2, 4 condition first
    expected = numpy_nice_log_prob(x, [first, ~first, first, ~first], model.coupling_networks,
                                   model.log_scale.numpy())
    dist = model.distribution
    # TFP hands back its non-composite-tensor TransformedDistribution class here,
    # since coupling networks are not tensors.
    assert type(dist).__name__.lstrip("_") == "TransformedDistribution"
    assert isinstance(dist, tfd.Distribution) and dist.event_shape == (6,)
    assert isinstance(dist.distribution.distribution, tfd.Logistic)
    for name, scored in [("distribution.log_prob", dist.log_prob(x)),
                         ("log_prob", model.log_prob(x)),
                         ("predict", model.predict(x, batch_size=8, verbose=0)),
                         ("call", model(x))]:
        np.testing.assert_allclose(scored, expected, rtol=1e-10, atol=1e-10, err_msg=name)
    assert expected.shape == (32,) and np.ptp(expected) > 1.0


@pytest.mark.parametrize("prior", ["logistic", "normal"])
def test_log_prob_is_nice_formula_in_numpy_from_the_weights(prior):
    """The reference knows only the weights, literal masks and NICE's eq. (3)."""
    model = randomise(small_model(prior=prior, dtype="float64"))
    x = data(16).astype("float64")
    first = np.array([True, False] * 3)  # odd_even: entries 0, 2, 4 condition first
    masks = [first, ~first, first, ~first]
    expected = numpy_nice_log_prob(x, masks, model.coupling_networks,
                                   model.log_scale.numpy(), prior=prior)
    np.testing.assert_allclose(model.log_prob(x), expected, rtol=1e-10, atol=1e-10)
    h = model.encode(x).numpy()  # and log p = log p_H(f(x)) + sum(s), in closed form
    log_p_h = (-np.abs(h) - 2 * np.log1p(np.exp(-np.abs(h))) if prior == "logistic"
               else -0.5 * h ** 2 - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(log_p_h.sum(1) + model.log_scale.numpy().sum(), expected,
                               rtol=1e-10, atol=1e-10)


def test_encode_decode_round_trip():
    model = randomise(small_model((4, 4, 2)))
    x = data(8, (4, 4, 2))
    back = model.decode(tf.identity(model.encode(x)))
    np.testing.assert_allclose(back, x, atol=1e-5)


@pytest.mark.parametrize("event_shape", [(6,), (4, 4, 2)], ids=["vector", "image"])
def test_sample_shapes_and_temperature(event_shape):
    model = randomise(small_model(event_shape))
    assert model.sample(5).shape == (5,) + event_shape
    assert model.sample(0).shape == (0,) + event_shape
    seed = tf.constant([3, 4], tf.int32)
    z = model.base_distribution.sample(200, seed=seed)
    cold = model.sample(200, temperature=0.5, seed=seed)
    np.testing.assert_allclose(model.encode(cold), 0.5 * z, rtol=1e-4, atol=1e-4)


def test_sample_with_a_stateless_seed_repeats():
    model = randomise(small_model())
    seed = tf.constant([1, 2], tf.int32)
    np.testing.assert_array_equal(model.sample(4, seed=seed), model.sample(4, seed=seed))


@pytest.mark.parametrize("prior", ["logistic", "normal"])
def test_named_priors(prior):
    model = small_model(prior=prior)
    base = model.base_distribution.distribution
    assert isinstance(base, tfd.Logistic if prior == "logistic" else tfd.Normal)


def test_custom_prior():
    prior = tfd.MultivariateNormalDiag(loc=tf.ones(6), scale_diag=2.0 * tf.ones(6))
    model = small_model(prior=prior)
    x = data(4)
    np.testing.assert_allclose(model.log_prob(x), prior.log_prob(x), rtol=1e-6)
    with pytest.raises(NotImplementedError, match="custom prior"):
        model.get_config()


def test_float64_model():
    model = randomise(small_model(dtype="float64"))
    x = data(8).astype("float64")
    lp = model.log_prob(x)
    assert lp.dtype == tf.float64
    back = model.decode(tf.identity(model.encode(x)))
    np.testing.assert_allclose(back, x, atol=1e-12)


# --- training ---------------------------------------------------------------------------


def test_fit_changes_every_trainable_weight_and_lowers_the_loss():
    model = small_model()
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(data(256), epochs=3, batch_size=32, verbose=0)
    assert len(before) == 4 * 6 + 1
    for w, b in zip(model.trainable_weights, before):
        assert not np.allclose(w.numpy(), b), f"{w.path} did not change"
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_logs_report_nll_in_nats_and_bits_per_dim():
    model = randomise(small_model(num_levels=256))
    x = data(64)
    model.compile("adam")
    result = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)
    nll = -float(np.mean(model.log_prob(x)))
    assert result["nll"] == pytest.approx(nll, rel=1e-5)
    assert result["loss"] == pytest.approx(nll, rel=1e-5)
    expected_bpd = (nll + 6 * np.log(256)) / (6 * np.log(2))
    assert result["bits_per_dim"] == pytest.approx(expected_bpd, rel=1e-5)
    history = model.fit(x, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "nll", "bits_per_dim"}


def test_fit_on_a_tf_data_dataset_trains_like_the_same_batches_as_arrays():
    x = data(128)
    reference = randomise(small_model(), seed=4, scale=0.1)
    model = randomise(small_model(), seed=4, scale=0.1)
    for m in (reference, model):
        m.compile(keras.optimizers.Adam(1e-2))
    ref = reference.fit(x, epochs=2, batch_size=32, shuffle=False, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(32)
    history = model.fit(ds, epochs=2, verbose=0)
    np.testing.assert_allclose(history.history["loss"], ref.history["loss"], rtol=1e-5)
    assert history.history["loss"][1] < history.history["loss"][0]
    for w, r in zip(model.weights, reference.weights):
        np.testing.assert_allclose(w.numpy(), r.numpy(), rtol=1e-4, atol=1e-6)


class CountingNICE(tn.NICE):
    """Counts the Python calls of the loss: one per trace of Keras's training step."""

    traces = 0

    def compute_loss(self, *args, **kwargs):
        type(self).traces += 1
        return super().compute_loss(*args, **kwargs)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fit_traces_its_training_step_once(optimizer):
    # Keras builds the optimizer in the first trace; its new variables made TF trace the
    # whole step a second time (half of a small model's start-up).
    CountingNICE.traces = 0
    model = CountingNICE((6,), num_couplings=4, hidden_units=(16, 16))
    model.compile(optimizer)
    history = model.fit(data(128), epochs=2, batch_size=32, verbose=0)
    assert CountingNICE.traces == 1
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(model.optimizer.iterations) == 8
    model.fit(data(64), epochs=1, batch_size=32, verbose=0)  # the traced step is reused
    assert CountingNICE.traces == 1


def _epochs_of(dataset, num_epochs, num_batches):
    batches = [b.numpy() for b in dataset.take(num_epochs * num_batches)]
    return [batches[k * num_batches:(k + 1) * num_batches] for k in range(num_epochs)]


def test_epoch_batches_shuffle_each_epoch_and_keep_the_partial_batch():
    x = np.arange(30, dtype="float32").reshape(10, 3)
    tf.random.set_seed(0)
    epochs = _epochs_of(tn.models.training.epoch_batches(x, 4), 3, 3)
    orders = []
    for batches in epochs:
        assert [len(b) for b in batches] == [4, 4, 2]
        rows = np.concatenate(batches)
        np.testing.assert_array_equal(np.sort(rows[:, 0]), x[:, 0])  # each row once
        np.testing.assert_array_equal(rows, x[(rows[:, 0] // 3).astype(int)])  # whole rows
        orders.append(tuple(rows[:, 0]))
    assert len(set(orders)) == 3  # a new permutation every epoch (10! orders to draw from)
    for batches in _epochs_of(tn.models.training.epoch_batches(x, 4, shuffle=False), 2, 3):
        np.testing.assert_array_equal(np.concatenate(batches), x)


def _fit_weights(fit, **kwargs):
    keras.utils.set_random_seed(5)
    model = randomise(small_model(rescaling_init="zeros"), seed=1)  # keras's fit: no data init
    model.compile(keras.optimizers.SGD(1e-2))
    history = fit(model, data(100), epochs=3, batch_size=32, verbose=0, **kwargs)
    return history, [w.numpy() for w in model.trainable_weights]


def test_fit_on_arrays_trains_like_keras_own_array_input():
    # NICE.fit feeds plain arrays through epoch_batches; keras.Model.fit is Keras's path.
    ours, ours_w = _fit_weights(tn.NICE.fit, shuffle=False)
    keras_h, keras_w = _fit_weights(keras.Model.fit, shuffle=False)
    np.testing.assert_allclose(ours.history["loss"], keras_h.history["loss"], rtol=1e-6)
    for a, b in zip(ours_w, keras_w):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert ours.params["steps"] == keras_h.params["steps"] == 4  # 32 + 32 + 32 + 4
    shuffled, _ = _fit_weights(tn.NICE.fit, validation_data=data(40, seed=3))
    assert len(shuffled.history["val_loss"]) == 3 and np.isfinite(shuffled.history["loss"]).all()


def _train_losses(jit_compile, steps_per_execution=1, epochs=2):
    keras.utils.set_random_seed(5)
    model = randomise(small_model(), seed=1)
    model.compile(keras.optimizers.SGD(1e-2), jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    history = model.fit(data(192), epochs=epochs, batch_size=32, shuffle=False, verbose=0)
    return history.history["loss"], model.log_prob(data(16, seed=9)).numpy()


@pytest.mark.parametrize("jit_compile,steps_per_execution",
                         [(True, 1), (False, 1), (False, 3), (True, 3)])
def test_jit_compile_and_steps_per_execution_give_the_same_training(jit_compile,
                                                                    steps_per_execution):
    reference_loss, reference_lp = _train_losses(False, 1)
    loss, lp = _train_losses(jit_compile, steps_per_execution)
    np.testing.assert_allclose(loss, reference_loss, rtol=1e-4)
    np.testing.assert_allclose(lp, reference_lp, rtol=1e-4, atol=1e-4)


def test_stock_callbacks(tmp_path):
    model = small_model()
    model.compile(keras.optimizers.Adam(1e-2))
    x = data(256)
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch-{epoch}.keras")),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=50),
        keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9),
        keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb")),
        keras.callbacks.TerminateOnNaN(),
    ]
    history = model.fit(x, epochs=3, batch_size=64, validation_split=0.25, verbose=0,
                        callbacks=callbacks)
    assert len(history.history["loss"]) == 3
    # best loss set at epoch 1; epochs 2 and 3 do not improve by min_delta: halved twice
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-2 * 0.5 ** 2)
    assert any((tmp_path / "tb").rglob("*tfevents*"))
    assert sorted(p.name for p in tmp_path.glob("*.keras")) == [
        "epoch-1.keras", "epoch-2.keras", "epoch-3.keras"]
    restored = keras.models.load_model(tmp_path / "epoch-3.keras")
    np.testing.assert_array_equal(restored.log_prob(x[:16]), model.log_prob(x[:16]))
    first = keras.models.load_model(tmp_path / "epoch-1.keras")
    assert not np.allclose(first.log_prob(x[:16]), model.log_prob(x[:16]))


def test_early_stopping_restores_the_best_weights():
    model = small_model()
    model.compile(keras.optimizers.Adam(3e-2))
    x = data(256)
    history = model.fit(
        x, epochs=60, batch_size=16, validation_split=0.5, verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=2,
                                                 restore_best_weights=True)])
    epochs = len(history.history["loss"])
    assert epochs < 60, "the model did not overfit; the test needs a stronger optimiser"
    best = min(history.history["val_loss"])
    val = model.evaluate(x[128:], batch_size=128, verbose=0, return_dict=True)["loss"]
    assert val == pytest.approx(best, rel=1e-4)


def test_terminate_on_nan_stops_training():
    model = small_model(rescaling_init="zeros")
    model.compile("adam")
    model.log_scale.assign(np.full(6, np.nan, "float32"))  # the loss is NaN from batch 1
    history = model.fit(data(128), epochs=5, batch_size=32, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1
    assert np.isnan(history.history["loss"][0])


def test_nan_loss_stops_training_with_a_clear_warning():
    model = small_model(rescaling_init="zeros")
    model.compile("adam")
    model.log_scale.assign(np.full(6, np.nan, "float32"))
    with pytest.warns(RuntimeWarning, match="loss became nan in epoch 1"):
        history = model.fit(data(128), epochs=5, batch_size=32, verbose=0)
    assert len(history.history["loss"]) == 1


def test_mirrored_strategy_matches_one_device(mirrored_strategy):
    x = data(128)
    reference = randomise(small_model(), seed=3)
    weights = reference.get_weights()
    reference.compile(keras.optimizers.SGD(1e-2))
    ref_history = reference.fit(x, epochs=2, batch_size=32, shuffle=False, verbose=0)

    with mirrored_strategy.scope():
        model = small_model()
        model.set_weights(weights)
        model.compile(keras.optimizers.SGD(1e-2))
    history = model.fit(x, epochs=2, batch_size=32, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], ref_history.history["loss"], rtol=1e-5)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# --- saving -------------------------------------------------------------------------------


@pytest.mark.parametrize("event_shape,kwargs", [
    ((6,), {}),
    ((4, 4, 2), {"prior": "normal", "num_levels": 256}),
    ((5,), {"partition": [True, False, False, True, False], "rescaling": False}),
], ids=["vector", "image-normal", "custom-mask-no-rescaling"])
def test_keras_file_round_trip(tmp_path, event_shape, kwargs):
    model = randomise(small_model(event_shape, **kwargs))
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(data(64, event_shape), epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, tn.NICE)
    x = data(16, event_shape, seed=4)
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))
    assert loaded.get_config() == model.get_config()
    loaded.fit(data(64, event_shape), epochs=1, verbose=0)  # the optimizer came back too


def test_config_round_trip():
    model = randomise(small_model(num_levels=17, activation="tanh"))
    config = model.get_config()
    json.dumps(config)
    clone = tn.NICE.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    x = data(8)
    np.testing.assert_array_equal(clone.log_prob(x), model.log_prob(x))


# --- bad input ---------------------------------------------------------------------------


def test_compile_rejects_a_loss():
    with pytest.raises(ValueError, match="takes no loss"):
        small_model().compile("adam", loss="mse")


def test_wrong_event_shape_in_log_prob_and_fit():
    model = small_model()
    with pytest.raises(ValueError, match=r"event shape \(6,\)"):
        model.log_prob(np.zeros((2, 5), "float32"))
    model.compile("adam")
    with pytest.raises(ValueError, match=r"\(6,\)"):
        model.fit(np.zeros((8, 7), "float32"), epochs=1, verbose=0)


def test_integer_data_is_refused():
    with pytest.raises(TypeError, match="dequantize"):
        small_model().log_prob(np.zeros((2, 6), "int32"))


@pytest.mark.parametrize("kwargs,message", [
    ({"event_shape": ()}, "event_shape"),
    ({"event_shape": (0,)}, "event_shape"),
    ({"num_couplings": 0}, "num_couplings"),
    ({"hidden_units": (8, -1)}, "hidden_units"),
    ({"partition": "diagonal"}, "partition"),
    ({"partition": [True] * 6}, "empty"),
    ({"prior": "cauchy"}, "Unknown prior"),
    ({"prior": tfd.Normal(0.0, 1.0)}, "event shape"),
    ({"rescaling": "yes"}, "rescaling"),
    ({"num_levels": 1}, "num_levels"),
], ids=lambda v: str(v) if isinstance(v, str) else None)
def test_bad_constructor_arguments(kwargs, message):
    args = {"event_shape": (6,), **kwargs}
    with pytest.raises(ValueError, match=message):
        tn.NICE(**args)


@pytest.mark.parametrize("num_samples,temperature,message", [
    (-1, 1.0, "num_samples"), (2.5, 1.0, "num_samples"),
    (3, 0.0, "temperature"), (3, -1.0, "temperature"), (3, float("nan"), "temperature"),
])
def test_bad_sample_arguments(num_samples, temperature, message):
    with pytest.raises(ValueError, match=message):
        small_model().sample(num_samples, temperature=temperature)


def test_bits_per_dim_is_the_closed_form():
    model = small_model((4, 4, 2), num_levels=256)
    # (nll + D ln 256) / (D ln 2), D = 32: 100 nats -> 12.508422 bits/dim
    expected = (100.0 + 32 * np.log(256)) / (32 * np.log(2))
    assert expected == pytest.approx(12.508422, abs=1e-6)
    assert model.bits_per_dim(100.0) == pytest.approx(expected, rel=1e-12)
    assert bits_per_dim(100.0, 32, 256) == pytest.approx(expected, rel=1e-12)
    assert bits_per_dim(100.0, 32) == pytest.approx(100.0 / (32 * np.log(2)), rel=1e-12)


# --- beyond NICE: affine couplings, permutations, ActNorm, data-dependent start ----------


GLOW_LIKE = dict(coupling="affine", permutation="lu", actnorm=True)


@pytest.mark.parametrize("kwargs", [
    dict(coupling="affine"),
    dict(permutation="reverse"),
    dict(permutation="random", seed=3),
    dict(permutation="lu"),
    dict(actnorm=True),
    GLOW_LIKE,
], ids=["affine", "reverse", "random", "lu", "actnorm", "glow-like"])
def test_variants_train_save_and_reload(tmp_path, kwargs):
    model = small_model(**kwargs)
    model.compile(keras.optimizers.Adam(1e-2))
    x = data(128)
    history = model.fit(x, epochs=3, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    back = model.decode(tf.identity(model.encode(x[:8])))
    np.testing.assert_allclose(back, x[:8], atol=1e-4)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.log_prob(x[:8]), model.log_prob(x[:8]))
    assert loaded.get_config() == model.get_config()


def test_random_permutation_is_seeded_and_saved():
    a, b, c = (small_model(permutation="random", seed=s) for s in (1, 1, 2))
    pa, pb, pc = (m.steps[0].permutation.numpy() for m in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(pa, pc)
    assert sorted(pa.tolist()) == list(range(6))
    assert a.steps[0].permutation.path in [w.path for w in a.non_trainable_weights]


def test_actnorm_initialisation_gives_zero_mean_unit_variance(tmp_path):
    model = small_model(actnorm=True, rescaling_init="zeros")
    x = data(64)
    x[:, 0] = 5.0 + 3.0 * x[:, 0]
    model.initialize_from_data(x)
    first = model.steps[0].bijector()  # actnorm_0
    h = first.forward(x).numpy()
    np.testing.assert_allclose(h.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(h.var(0), 1.0, rtol=1e-3)
    assert int(model.data_initialized.numpy()) == 1
    # The initialised values survive .keras, and fit does not reset them.
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.steps[0].shift.numpy(),
                                  model.steps[0].shift.numpy())
    assert not loaded.needs_data_init
    loaded.compile(keras.optimizers.SGD(0.0))
    loaded.fit(data(32, seed=5) * 10, epochs=1, verbose=0)
    np.testing.assert_array_equal(loaded.steps[0].shift.numpy(),
                                  model.steps[0].shift.numpy())


def _sorted_by_class(n_per_class=3000, classes=3, seed=0):
    """Rows sorted by class, each class far from the others (mean 4k, spread 1 + k)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([4.0 * k + (1.0 + k) * rng.normal(size=(n_per_class, 6))
                           for k in range(classes)]).astype("float32")


@pytest.mark.parametrize("validation_split", [0.0, 0.5])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["array", "tensor"])
def test_fit_starts_from_a_random_sample_of_the_training_rows(validation_split, as_tensor):
    """On data sorted by class the start sees every class of the training rows, not the
    first batch's one class, and none of the rows fit holds out for validation."""
    x = _sorted_by_class()
    train = x[: len(x) - int(len(x) * validation_split)]
    model = small_model(actnorm=True)
    model.compile(keras.optimizers.SGD(0.0))  # the start alone moves the weights
    model.fit(tf.constant(x) if as_tensor else x, epochs=1, batch_size=32,
              validation_split=validation_split, verbose=0)
    shift = model.steps[0].shift.numpy()
    log_scale = model.steps[0].log_scale.numpy()
    # 4096 of the training rows: the sample mean is within 4 standard errors of theirs.
    standard_error = train.std(0) / np.sqrt(4096)
    np.testing.assert_array_less(np.abs(-shift - train.mean(0)), 4 * standard_error)
    np.testing.assert_allclose(np.exp(-log_scale), train.std(0), rtol=0.06)
    first_batch_mean = x[:32].mean(0)
    assert np.all(np.abs(-shift - first_batch_mean) > 1.0)


def test_start_sample_is_seeded_and_takes_all_rows_when_fewer():
    from tfp_nice.models.training import start_sample

    x = _sorted_by_class()
    a, b, c = (start_sample(x, seed=s) for s in (0, 0, 1))
    assert a.shape == (4096, 6) and np.array_equal(a, b) and not np.array_equal(a, c)
    rows = {r.tobytes() for r in x}
    assert all(r.tobytes() in rows for r in a) and len({r.tobytes() for r in a}) == 4096
    np.testing.assert_array_equal(start_sample(x[:1000], seed=0), x[:1000])
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(1000)
    np.testing.assert_array_equal(start_sample(dataset), x[:4096])


def test_actnorm_initialisation_survives_saved_model_export(tmp_path):
    model = small_model(actnorm=True)
    x = data(64)
    model.initialize_from_data(x)
    tn.export_saved_model(model, tmp_path / "saved")
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.signatures["log_prob"](x=x)["log_prob"], model.log_prob(x),
                               rtol=1e-5)


@pytest.mark.parametrize("prior", ["logistic", "normal"])
def test_data_init_walks_the_couplings_in_numpy(prior):
    """With non-identity couplings, each ActNorm's input is what the couplings before it
    made: computed here in numpy from the weights and literal masks, not by the model."""
    model = randomise(small_model(actnorm=True, prior=prior, activation="tanh",
                                  dtype="float64"), scale=0.5)
    x = data(256).astype("float64") * np.array([0.1, 1, 3, 0.5, 2, 0.3])
    model.initialize_from_data(x)
    first = np.array([True, False] * 3)
    h = x.copy()
    for k in range(4):
        actnorm = model.steps[2 * k]  # actnorm_k, coupling_k, ..., rescaling
        s, b = actnorm.log_scale.numpy(), actnorm.shift.numpy()
        h = (h + b) * np.exp(s)
        np.testing.assert_allclose(h.mean(0), 0.0, atol=1e-8, err_msg=f"ActNorm {k}")
        np.testing.assert_allclose(h.std(0), 1.0, rtol=1e-5, err_msg=f"ActNorm {k}")
        m = first if k % 2 == 0 else ~first
        h[:, ~m] = h[:, ~m] + numpy_mlp(model.coupling_networks[k], h[:, m])
    spread = np.pi / np.sqrt(3) if prior == "logistic" else 1.0
    np.testing.assert_allclose((h * np.exp(model.log_scale.numpy())).std(0), spread, rtol=1e-5)


@pytest.mark.parametrize("prior", ["logistic", "normal"])
def test_rescaling_init_from_data_matches_the_prior_spread(prior):
    model = small_model(prior=prior)
    assert model.needs_data_init
    x = data(256) * np.array([0.1, 1, 3, 0.5, 2, 0.01], "float32")
    model.compile("adam")
    model.fit(x, epochs=1, batch_size=256, verbose=0)  # one step, after the start
    expected = np.pi / np.sqrt(3) if prior == "logistic" else 1.0
    fresh = randomise(small_model(prior=prior), scale=0.3)  # couplings that move the data
    fresh.initialize_from_data(x)
    np.testing.assert_allclose(fresh.encode(x).numpy().std(0), expected, rtol=1e-3)
    assert not model.needs_data_init


def test_zeros_rescaling_init_is_nice():
    model = small_model(rescaling_init="zeros")
    assert not model.needs_data_init
    model.compile("adam")
    before = model.log_scale.numpy().copy()
    model.fit(data(32), epochs=1, batch_size=32, verbose=0)
    assert np.all(np.abs(model.log_scale.numpy() - before) < 0.01)  # one Adam step


def test_data_init_under_mirrored_strategy_matches_one_device(mirrored_strategy):
    x = data(128)
    reference = small_model(actnorm=True)
    weights = reference.get_weights()
    reference.compile(keras.optimizers.SGD(1e-2))
    ref_history = reference.fit(x, epochs=1, batch_size=32, shuffle=False, verbose=0)
    with mirrored_strategy.scope():
        model = small_model(actnorm=True)
        model.set_weights(weights)
        model.compile(keras.optimizers.SGD(1e-2))
    history = model.fit(x, epochs=1, batch_size=32, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], ref_history.history["loss"], rtol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    ({"coupling": "quadratic"}, "coupling"),
    ({"permutation": "shuffle"}, "permutation"),
    ({"actnorm": 1}, "actnorm"),
    ({"rescaling_init": "ones"}, "rescaling_init"),
    ({"seed": 1.5}, "seed"),
])
def test_bad_variant_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tn.NICE((6,), **kwargs)


def test_initialize_from_data_needs_a_batch():
    with pytest.raises(ValueError, match="at least 2 examples"):
        small_model().initialize_from_data(np.zeros((1, 6), "float32"))


def test_inpaint_keeps_observed_entries_and_raises_log_prob():
    model = randomise(small_model(), scale=0.1)
    x = np.clip(data(16) * 0.2 + 0.2, 0, 1).astype("float32")
    observed = np.array([True, False, True, False, True, False])
    start = np.where(observed, x, 0.5).astype("float32")
    out = model.inpaint(start, observed, num_steps=50, step_size=1e-3, noise=0.0).numpy()
    np.testing.assert_array_equal(out[:, observed], start[:, observed])
    assert float(np.mean(model.log_prob(out))) > float(np.mean(model.log_prob(start)))
    noisy_a = model.inpaint(start, observed, num_steps=5, noise=1.0, seed=3).numpy()
    noisy_b = model.inpaint(start, observed, num_steps=5, noise=1.0, seed=3).numpy()
    np.testing.assert_array_equal(noisy_a, noisy_b)


@pytest.mark.parametrize("name,schedule", [
    (None, lambda i: 0.1 / (100 + i)),
    ("default", lambda i: 0.1 / (100 + i)),
    ("paper", lambda i: 10 / (100 + i)),
])
def test_inpaint_step_schedules_by_name(name, schedule):
    model = randomise(small_model(), scale=0.1)
    x = np.clip(data(8) * 0.2 + 0.2, 0, 1).astype("float32")
    observed = np.array([True, False, True, False, True, False])
    kwargs = dict(num_steps=20, noise=0.0, clip=None)
    named = model.inpaint(x, observed, **kwargs) if name is None else \
        model.inpaint(x, observed, step_size=name, **kwargs)
    np.testing.assert_allclose(named, model.inpaint(x, observed, step_size=schedule, **kwargs),
                               rtol=1e-6)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(observed_mask=np.ones(5, bool)), ValueError, "does not broadcast"),
    (dict(observed_mask=np.ones(6)), TypeError, "boolean"),
    (dict(observed_mask=np.ones(6, bool), num_steps=0), ValueError, "num_steps"),
    (dict(observed_mask=np.ones(6, bool), step_size=-1.0), ValueError, "step_size"),
    (dict(observed_mask=np.ones(6, bool), step_size="nice"), ValueError, "'default', 'paper'"),
])
def test_inpaint_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        small_model().inpaint(data(2), **kwargs)


@pytest.mark.parametrize("prior", ["logistic", "normal"])
@pytest.mark.parametrize("kwargs", [{}, {"coupling": "affine", "actnorm": True}],
                         ids=["nice", "affine-actnorm"])
def test_log_prob_far_from_the_data_is_finite(prior, kwargs):
    model = small_model(prior=prior, **kwargs)
    model.initialize_from_data(data(64))
    randomise(model, scale=0.3)
    far = np.array([[1e3] * 6, [-1e3] * 6, [1e3, -1e3, 0, 5e2, -5e2, 1]], "float32")
    log_p = model.log_prob(far).numpy()
    assert np.all(np.isfinite(log_p)), log_p
    assert np.all(log_p < model.log_prob(data(3)).numpy().min())


# ---- fresh dequantization every epoch ---------------------------------------------------


def _epochs(dataset, n):
    return [np.concatenate([b.numpy() for b in dataset]) for _ in range(n)]


def test_dequantized_batches_are_fresh_noise_over_every_row_each_epoch():
    levels, n = 17, 17 * 17
    rows = np.stack([np.arange(n) % levels, np.arange(n) // levels,
                     (np.arange(n) * 7) % levels], axis=1).astype(np.uint8)
    sizes = [int(b.shape[0]) for b in tn.dequantized_batches(rows, levels, 64, seed=3)]
    assert sizes == [64] * 4 + [33]
    first, second = _epochs(tn.dequantized_batches(rows, levels, batch_size=64, seed=3), 2)
    for epoch in (first, second):
        assert epoch.dtype == np.float32
        ints = np.floor(epoch * levels).astype(int)
        frac = epoch * levels - ints
        assert np.all((frac >= 0) & (frac < 1))
        # every row exactly once per epoch (rows are told apart by their first two values)
        ids = ints[:, 0] + levels * ints[:, 1]
        np.testing.assert_array_equal(np.sort(ids), np.arange(n))
        np.testing.assert_array_equal(ints, rows[ids])
        assert abs(frac.mean() - 0.5) < 0.03 and abs(frac.var() - 1 / 12) < 0.01
    assert not np.array_equal(np.floor(first * levels), np.floor(second * levels))  # reshuffled
    by_row = [e[np.argsort(np.floor(e[:, 0] * levels) + levels * np.floor(e[:, 1] * levels))]
              for e in (first, second)]
    assert np.mean(by_row[0] == by_row[1]) < 0.01  # new noise for the same entries
    again = _epochs(tn.dequantized_batches(rows, levels, batch_size=64, seed=3), 2)
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    unseeded = _epochs(tn.dequantized_batches(rows, levels, batch_size=64), 1)[0]
    assert not np.array_equal(unseeded, first)


def test_fit_on_dequantized_batches_trains_and_starts_from_the_data():
    rows = np.random.default_rng(0).integers(0, 17, size=(256, 6))
    model = small_model()
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(tn.dequantized_batches(rows, 17, 64, seed=0), epochs=3, verbose=0)
    assert int(model.data_initialized) == 1
    loss = history.history["loss"]
    assert len(loss) == 3 and np.all(np.isfinite(loss)) and loss[-1] < loss[0]


@pytest.mark.parametrize("x, levels, batch, message", [
    (np.array([[0.5, 1.0]]), 4, 2, r"whole numbers in \[0, 3\]; got 0.5 at index \(0, 0\)"),
    (np.array([[1, 4]]), 4, 2, r"whole numbers in \[0, 3\]; got 4 at index \(0, 1\)"),
    (np.array([[1, -1]]), 4, 2, r"got -1 at index \(0, 1\)"),
    (np.zeros((0, 2)), 4, 2, "empty array"),
    (np.zeros((3, 2)), 1, 2, "num_levels"),
    (np.zeros((3, 2)), 4, 0, "batch_size must be an int >= 1. Received: batch_size=0"),
    (np.zeros((3, 2)), 4, 2.0, "batch_size must be an int >= 1. Received: batch_size=2.0"),
])
def test_dequantized_batches_refuses_bad_input(x, levels, batch, message):
    with pytest.raises(ValueError, match=message):
        tn.dequantized_batches(x, levels, batch)


# --- averaged_weights: what fit would leave with an EMA optimizer --------------------------


class _Trajectory(keras.callbacks.Callback):
    """Records the raw weights after every step and, at each epoch's end, the weights seen
    inside `averaged_weights` and the raw weights before and after the block."""

    def __init__(self):
        super().__init__()
        self.steps, self.inside, self.before, self.after = [], [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([v.numpy().astype("float64") for v in self.model.trainable_variables])

    def on_epoch_end(self, epoch, logs=None):
        self.before.append([v.numpy() for v in self.model.trainable_variables])
        with tn.averaged_weights(self.model) as model:
            assert model is self.model
            self.inside.append([v.numpy() for v in model.trainable_variables])
        self.after.append([v.numpy() for v in self.model.trainable_variables])


def test_averaged_weights_are_keras_moving_average_mid_fit_and_put_back():
    momentum = 0.8
    model = small_model()
    model.compile(keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=momentum))
    trajectory = _Trajectory()
    model.fit(data(64), epochs=3, batch_size=16, verbose=0, shuffle=False,
              callbacks=[trajectory])
    # Keras's documented rule, by hand in float64: the first step's weights, then
    # average = momentum * average + (1 - momentum) * weights after each step.
    average = [w.copy() for w in trajectory.steps[0]]
    by_epoch = []
    for step, weights in enumerate(trajectory.steps[1:], start=2):
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights)]
        if step % 4 == 0:
            by_epoch.append([a.copy() for a in average])
    assert len(by_epoch) == len(trajectory.inside) == 3
    moved = 0.0
    for inside, expected, before, after in zip(trajectory.inside, by_epoch, trajectory.before,
                                               trajectory.after):
        for got, want, raw, back in zip(inside, expected, before, after):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(back, raw)  # training goes on from the raw weights
            moved = max(moved, float(np.max(np.abs(want - raw))))
    assert moved > 1e-3  # the averages differ from the raw weights: the check can fail
    # fit itself leaves the averages in, the same as the block showed after the last step
    for got, want in zip(model.trainable_variables, trajectory.inside[-1]):
        np.testing.assert_array_equal(got.numpy(), want)


def test_averaged_weights_without_averages_is_the_model_as_it_is():
    model = small_model()
    model.compile(keras.optimizers.Adam(1e-2))
    with tn.averaged_weights(model):  # compiled, no step yet
        pass
    model.fit(data(64), epochs=1, batch_size=16, verbose=0)
    raw = [v.numpy() for v in model.trainable_variables]
    with tn.averaged_weights(model):
        for v, w in zip(model.trainable_variables, raw):
            np.testing.assert_array_equal(v.numpy(), w)


def test_averaged_weights_needs_a_compiled_model():
    with pytest.raises(ValueError, match="needs a compiled model.*model.compile"):
        with tn.averaged_weights(small_model()):
            pass


class _RawAndAveraged(keras.callbacks.Callback):
    """The held-out NLL of the raw weights and of the averages, after every epoch."""

    def __init__(self, x):
        super().__init__()
        self.x, self.raw, self.averaged = x, [], []

    def _nll(self):
        return -float(np.mean(self.model.log_prob(self.x).numpy()))

    def on_epoch_end(self, epoch, logs=None):
        self.raw.append(self._nll())
        with tn.averaged_weights(self.model):
            self.averaged.append(self._nll())


def test_averaged_early_stopping_judges_the_averages_and_leaves_the_best_in():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    held = rng.normal(size=(200, 4)).astype("float32")
    keras.utils.set_random_seed(0)
    model = tn.NICE((4,), num_couplings=2, hidden_units=(64, 64))
    model.compile(keras.optimizers.Adam(3e-2, use_ema=True, ema_momentum=0.5))
    stop = tn.AveragedEarlyStopping(held, patience=2)
    seen = _RawAndAveraged(held)
    history = model.fit(x, epochs=200, batch_size=8, verbose=0, callbacks=[stop, seen]).history
    logged = history["val_averaged_nll"]
    # the figure judged is the averages' (log_prob by hand), not the raw weights'
    np.testing.assert_allclose(logged, seen.averaged, rtol=1e-5)
    assert max(abs(a - r) for a, r in zip(seen.averaged, seen.raw)) > 1e-2
    best = int(np.argmin(logged))
    assert stop.best_epoch == best and stop.best == pytest.approx(logged[best])
    assert len(logged) == best + 1 + 2 < 200  # stopped 2 epochs after the best (overfitting)
    assert stop.stopped_epoch == len(logged) - 1
    final = -float(np.mean(model.log_prob(held).numpy()))
    assert final == pytest.approx(logged[best], rel=1e-5)  # the best averages, not the last
    assert final < logged[-1]


def test_averaged_early_stopping_without_averages_is_keras_early_stopping():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4)).astype("float32")
    held = rng.normal(size=(200, 4)).astype("float32")
    runs = {}
    for name in ("ours", "keras"):
        keras.utils.set_random_seed(0)
        model = tn.NICE((4,), num_couplings=2, hidden_units=(64, 64))
        model.compile(keras.optimizers.Adam(3e-2))
        if name == "ours":
            stop = tn.AveragedEarlyStopping(held, patience=3)
            history = model.fit(x, epochs=200, batch_size=8, verbose=0, shuffle=False,
                                callbacks=[stop]).history["val_averaged_nll"]
        else:
            stop = keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
            history = model.fit(x, epochs=200, batch_size=8, verbose=0, shuffle=False,
                                validation_data=(held,), callbacks=[stop]).history["val_loss"]
        runs[name] = (history, [v.numpy() for v in model.trainable_variables])
    (ours, ours_weights), (theirs, their_weights) = runs["ours"], runs["keras"]
    assert 4 < len(ours) < 200
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)  # same epochs, same figures
    for a, b in zip(ours_weights, their_weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_averaged_early_stopping_refuses_bad_arguments_by_name():
    with pytest.raises(ValueError, match=r"patience must be an int >= 0. Received: patience=-1"):
        tn.AveragedEarlyStopping(data(8), patience=-1)
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1"):
        tn.AveragedEarlyStopping(data(8), patience=2, batch_size=0)
    model = small_model()
    model.compile("adam")
    stop = tn.AveragedEarlyStopping(data(8, event_shape=(5,)), patience=2)
    with pytest.raises(ValueError, match=r"AveragedEarlyStopping's x_val: .*shape \(6,\)"):
        model.fit(data(32), epochs=2, batch_size=16, verbose=0, callbacks=[stop])


# --- logit_alpha: RealNVP's logit preprocessing, first step of f -----------------------------


def _logit_model(alpha=0.1, **kwargs):
    return randomise(small_model(logit_alpha=alpha, dtype="float64", **kwargs))


def test_logit_log_prob_is_nice_formula_after_the_logit_in_numpy():
    alpha = 0.1
    model = _logit_model(alpha)
    x = np.random.default_rng(3).uniform(size=(16, 6))
    p = alpha + (1 - 2 * alpha) * x
    h = np.log(p) - np.log1p(-p)  # the logit, by hand
    first = np.array([True, False] * 3)
    expected = numpy_nice_log_prob(h, [first, ~first, first, ~first], model.coupling_networks,
                                   model.log_scale.numpy())
    expected += (np.log(1 - 2 * alpha) - np.log(p) - np.log1p(-p)).sum(axis=1)
    np.testing.assert_allclose(model.log_prob(x), expected, rtol=1e-10, atol=1e-10)


def test_logit_log_prob_matches_autodiff_change_of_variables():
    """log p(x) = log p_H(f(x)) + log |det df/dx|, the Jacobian by autodiff of encode."""
    model = _logit_model(0.05)
    x = tf.constant(np.random.default_rng(4).uniform(size=(5, 6)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = model.encode(x)
    jac = tape.batch_jacobian(h, x).numpy()
    h = h.numpy()
    log_p_h = (-np.abs(h) - 2 * np.log1p(np.exp(-np.abs(h)))).sum(axis=1)
    expected = log_p_h + np.linalg.slogdet(jac)[1]
    np.testing.assert_allclose(model.log_prob(x), expected, rtol=1e-9, atol=1e-9)


def test_logit_model_round_trips_samples_in_the_unit_box_and_saves(tmp_path):
    model = _logit_model(0.05)
    x = np.random.default_rng(5).uniform(size=(8, 6))
    np.testing.assert_allclose(model.decode(model.encode(x)), x, atol=1e-9)
    samples = model.sample(500, seed=1).numpy()
    low, high = -0.05 / 0.9, 1 + 0.05 / 0.9  # the support of a logit model
    assert samples.min() > low and samples.max() < high
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.logit_alpha == 0.05 and type(loaded.steps[0]).__name__ == "LogitStep"
    np.testing.assert_allclose(loaded.log_prob(x), model.log_prob(x), rtol=1e-12)


def test_logit_model_trains_and_refuses_data_outside_the_unit_box():
    model = small_model(logit_alpha=0.05, actnorm=True)
    x = np.random.default_rng(6).beta(0.5, 0.5, size=(256, 6)).astype("float32")
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(x, epochs=4, batch_size=64, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]
    bad = x.copy()
    bad[7, 2] = 1.5
    with pytest.raises(ValueError, match=r"the first step, 'logit', needs data in \[0, 1\].*"
                                         r"row 7 holds "
                                         r"values from .* to 1.5"):
        model.fit(bad, epochs=1, batch_size=64, verbose=0)
    fresh = small_model(logit_alpha=0.05, actnorm=True)  # a dataset: the start's rows checked
    fresh.compile("adam")
    with pytest.raises(ValueError, match=r"logit_alpha needs data in \[0, 1\] .*; the data-dependent "
                                         r"start's sample holds values from .* to 1.5"):
        fresh.fit(tf.data.Dataset.from_tensor_slices(bad[:64]).batch(64), epochs=1, verbose=0)


@pytest.mark.parametrize("alpha", [-0.1, 0.5, float("nan"), "0.1x", True])
def test_logit_alpha_out_of_range_is_named(alpha):
    with pytest.raises(ValueError, match=r"logit_alpha must be None or a number in \[0, 0.5\)"):
        small_model(logit_alpha=alpha)


def test_fit_on_a_dataset_does_not_warn_about_shuffle():
    model = small_model()
    model.compile("adam")
    batches = tf.data.Dataset.from_tensor_slices(data(64)).batch(16)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(batches, epochs=1, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]

"""Conditional flows, p(x | context): dense and convolutional steps given a context.

References independent of the code under test: autodiff Jacobians in float64 of the
map the flow applies at a fixed context, the closed-form conditional density of a
linear-Gaussian model (`x | c ~ N(A c + b, S)`), and the gradients that reach each
network's context inputs (a step whose network never sees the context gets none).
"""

import json
import math
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from test_multiscale import jacobian_log_det, randomize, uniform_images
from tfp_nice.steps import walk

tfd = tfp.distributions


def dense_steps(dim=3, context_shape=(2,), dtype=None, units=(16,)):
    mask = tn.partition_mask("halves", (dim,))
    return [tn.ActNormStep((dim,), dtype=dtype, name="actnorm"),
            tn.CouplingStep((dim,), mask, hidden_units=units, coupling="affine",
                            context_shape=context_shape, dtype=dtype, name="coupling_0"),
            tn.PermutationStep((dim,), np.arange(dim)[::-1].copy(), dtype=dtype,
                               name="reverse"),
            tn.CouplingStep((dim,), mask, hidden_units=units, coupling="additive",
                            context_shape=context_shape, dtype=dtype, name="coupling_1")]


def conditional_couplings(model):
    """Every conditional coupling of the flow, the factor-outs' learned priors included."""
    found = []
    for s in walk(model.steps):
        found += [s] + [getattr(s, "prior_coupling", None)]
    return [s for s in found
            if isinstance(s, tn.CouplingStep) and s.context_shape is not None]


def prior_log_prob(z):
    z = np.reshape(z, (len(z), -1))
    return -0.5 * np.sum(z ** 2, axis=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


# --- the change of variables at a fixed context -------------------------------------------


def test_dense_conditional_log_prob_is_the_autodiff_change_of_variables_float64():
    model = tn.Flow(dense_steps(dtype="float64"), context_shape=(2,), dtype="float64")
    randomize(model.steps, seed=3, scale=0.5)
    rng = np.random.default_rng(0)
    x, c = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    log_det = jacobian_log_det(lambda t: model.encode(t, context=c), x)
    expected = prior_log_prob(model.encode(x, context=c).numpy()) + log_det
    np.testing.assert_allclose(model.log_prob(x, context=c), expected, rtol=1e-10, atol=1e-10)
    # the context matters: the same x under other contexts has another density
    other = model.log_prob(x, context=c[::-1].copy()).numpy()
    assert np.abs(other - expected).max() > 1e-3
    # round trip at the context
    z = model.encode(x, context=c)
    np.testing.assert_allclose(model.decode(z, context=c), x, atol=1e-10)


@pytest.mark.parametrize("shape", [(4, 4, 2), (8, 8, 1)])
def test_conditional_multiscale_flow_log_prob_is_the_autodiff_change_of_variables(shape):
    steps = tn.multiscale_steps(shape, num_scales=2, steps_per_scale=1, hidden_channels=(4,),
                                logit_alpha=0.05, learned_prior=True, context_shape=(3,),
                                dtype="float64", seed=1)
    model = tn.Flow(steps, context_shape=(3,), dtype="float64")
    randomize(model.steps, seed=2, scale=0.2)
    x = uniform_images(3, shape)
    c = np.random.default_rng(1).normal(size=(3, 3))
    log_det = jacobian_log_det(lambda t: model.encode(t, context=c), x)
    expected = prior_log_prob(model.encode(x, context=c).numpy()) + log_det
    np.testing.assert_allclose(model.log_prob(x, context=c), expected, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(model.decode(model.encode(x, context=c), context=c), x,
                               atol=1e-9)
    # every coupling and both learned priors are conditional
    names = [s.name for s in conditional_couplings(model)]
    assert names == ["coupling_0_0", "factor_out_0_prior", "coupling_1_0"]


def test_conditional_nice_is_the_autodiff_change_of_variables_and_saves(tmp_path):
    model = tn.NICE((4,), num_couplings=3, hidden_units=(8,), coupling="affine",
                    actnorm=True, context_shape=(2,), dtype="float64", seed=0)
    randomize(model.steps, seed=4, scale=0.4)
    rng = np.random.default_rng(2)
    x, c = rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    log_det = jacobian_log_det(lambda t: model.encode(t, context=c), x)
    z = model.encode(x, context=c).numpy()
    prior = tfd.Logistic(np.float64(0), np.float64(1))  # NICE's prior, element-wise
    expected = prior.log_prob(z).numpy().sum(axis=1) + log_det
    np.testing.assert_allclose(model.log_prob(x, context=c), expected, rtol=1e-10, atol=1e-10)
    assert [s.name for s in conditional_couplings(model)] == [
        "coupling_0", "coupling_1", "coupling_2"]
    # saved by its flags, context_shape among them
    assert model.get_config()["context_shape"] == [2]
    assert "context_shape" not in tn.NICE((4,), hidden_units=(8,)).get_config()
    model.save(tmp_path / "nice.keras")
    loaded = keras.models.load_model(tmp_path / "nice.keras")
    assert isinstance(loaded, tn.NICE) and loaded.context_shape == (2,)
    np.testing.assert_allclose(loaded.log_prob(x, context=c), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="context_shape must be"):
        tn.NICE((4,), hidden_units=(8,), context_shape=(0,))


# --- the context reaches every step's network ---------------------------------------------


def _context_kernel(step):
    """The slice of the first layer's kernel that multiplies the context."""
    net = step.network
    layer = (net.hidden_layers or [net.output_layer])[0]
    kernel = layer.kernel
    if kernel.shape.rank == 4:  # conv: (k, k, c_in, c_out), context maps last
        return kernel, (..., slice(kernel.shape[2] - net.context_units, None), slice(None))
    return kernel, (slice(kernel.shape[0] - net.context_units, None), slice(None))


@pytest.mark.parametrize("kind", ["dense", "nice", "multiscale"])
def test_the_context_reaches_every_conditional_network(kind):
    if kind in ("dense", "nice"):
        model = (tn.Flow(dense_steps(), context_shape=(2,)) if kind == "dense" else
                 tn.NICE((3,), num_couplings=4, hidden_units=(8,), context_shape=(2,)))
        x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
        c = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")
    else:
        steps = tn.multiscale_steps((4, 4, 2), num_scales=2, steps_per_scale=2,
                                    hidden_channels=(4,), context_shape=(2,), seed=0)
        model = tn.Flow(steps, context_shape=(2,))
        x = uniform_images(8, (4, 4, 2)).astype("float32")
        c = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")
    randomize(model.steps, seed=5, scale=0.3)
    steps = conditional_couplings(model)
    kernels = [_context_kernel(s) for s in steps]
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.log_prob(x, context=c))
    grads = tape.gradient(loss, [k for k, _ in kernels])
    for step, (kernel, where), grad in zip(steps, kernels, grads):
        assert grad is not None, step.name
        norm = float(tf.norm(tf.convert_to_tensor(grad)[where]))
        assert norm > 1e-6, f"{step.name}: no gradient reaches its context inputs"


# --- a closed-form conditional density ----------------------------------------------------

A = np.array([[1.5, -0.5], [0.3, 2.0]])
B = np.array([0.5, -1.0])
L = np.array([[0.6, 0.0], [0.4, 0.3]])  # S = L L^T


def linear_gaussian(n, seed):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 2))
    x = c @ A.T + B + rng.normal(size=(n, 2)) @ L.T
    return x.astype("float32"), c.astype("float32")


def gaussian_log_prob(x, mean, cov):
    d = np.asarray(x, float) - mean
    solved = np.linalg.solve(cov, d.T).T
    return -0.5 * (np.sum(d * solved, axis=1) + np.linalg.slogdet(cov)[1]
                   + len(cov) * math.log(2 * math.pi))


def true_log_prob(x, c):
    return gaussian_log_prob(x, c @ A.T + B, L @ L.T)


@pytest.fixture(scope="module")
def trained_linear_gaussian():
    keras.utils.set_random_seed(0)
    x, c = linear_gaussian(4096, seed=0)
    mask = tn.partition_mask("halves", (2,))
    steps = [tn.ActNormStep((2,), name="actnorm")]
    for k in range(4):
        steps.append(tn.CouplingStep((2,), mask if k % 2 == 0 else ~mask, hidden_units=(32,),
                                     coupling="affine", context_shape=(2,),
                                     name=f"coupling_{k}"))
    model = tn.Flow(steps, context_shape=(2,), seed=0)
    schedule = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=2400, alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule))
    model.fit(x, c, epochs=150, batch_size=256, verbose=0)
    return model


def test_a_conditional_flow_learns_a_closed_form_conditional_density(trained_linear_gaussian):
    model = trained_linear_gaussian
    x, c = linear_gaussian(2000, seed=1)
    truth = true_log_prob(x, c)
    got = model.log_prob(x, context=c).numpy()
    # the mean log-ratio is the KL divergence averaged over the contexts
    kl = float(np.mean(truth - got))
    assert abs(kl) < 0.05, kl
    assert np.mean(np.abs(truth - got)) < 0.15
    # an unconditional flow of the same data cannot: the marginal is far wider
    marginal = gaussian_log_prob(x, B, A @ A.T + L @ L.T)
    assert np.mean(truth - marginal) > 1.0


def test_conditional_samples_follow_their_own_context_row(trained_linear_gaussian):
    model = trained_linear_gaussian
    c = np.array([[2.0, 0.0], [-1.0, 1.0], [0.0, -2.0]], "float32")
    samples = model.sample(4000, context=c, seed=3).numpy()
    assert samples.shape == (4000, 3, 2)
    means = samples.mean(axis=0)
    np.testing.assert_allclose(means, c @ A.T + B, atol=0.06)
    cov = np.cov(samples[:, 1].T)
    np.testing.assert_allclose(cov, L @ L.T, atol=0.05)
    assert model.sample(0, context=c).shape == (0, 3, 2)


def test_the_bound_distribution_is_the_models_log_prob_and_tracks_its_weights(
        trained_linear_gaussian):
    model = trained_linear_gaussian
    x, c = linear_gaussian(64, seed=2)
    dist = model.conditional_distribution(c)
    assert isinstance(dist, tfd.Distribution) and dist.bijector.name == model.name
    np.testing.assert_allclose(dist.log_prob(x), model.log_prob(x, context=c), rtol=1e-6)
    assert len(dist.trainable_variables) == len(model.trainable_weights)
    np.testing.assert_allclose(model.conditional_bijector(c).inverse(x),
                               model.encode(x, context=c), rtol=1e-6)


# --- fit, evaluate and early stopping take the pairs the Keras way ------------------------


def _small_model():
    return tn.Flow(dense_steps(dim=2), context_shape=(2,), seed=0)


@pytest.mark.parametrize("form", ["x_y", "tuple", "dict", "dataset"])
def test_fit_takes_the_pairs_every_keras_way(form):
    x, c = linear_gaussian(512, seed=0)
    keras.utils.set_random_seed(0)
    model = _small_model()
    model.compile(keras.optimizers.Adam(1e-2))
    before = float(-tf.reduce_mean(model.log_prob(x, context=c)))
    kwargs = dict(epochs=5, verbose=0)
    if form == "x_y":
        history = model.fit(x, c, batch_size=64, **kwargs)
    elif form == "tuple":
        history = model.fit((x, c), batch_size=64, **kwargs)
    elif form == "dict":
        history = model.fit({"x": x, "context": c}, batch_size=64, **kwargs)
    else:
        data = tf.data.Dataset.from_tensor_slices((x, c)).shuffle(512, seed=0).batch(64)
        history = model.fit(data, **kwargs)
    assert int(model.data_initialized.numpy()) == 1  # the ActNorm started from data
    after = float(-tf.reduce_mean(model.log_prob(x, context=c)))
    assert after < before - 0.5, (before, after)
    assert history.history["nll"][-1] == pytest.approx(after, abs=0.3)
    evaluated = model.evaluate((x, c), batch_size=128, verbose=0, return_dict=True)["nll"]
    assert evaluated == pytest.approx(after, rel=1e-4, abs=1e-4)


def test_the_data_start_sees_the_context_of_its_rows():
    # ActNorm starts on x; the first coupling is the identity at the start, so the
    # ActNorm standardises x itself: the start must be computed from the same rows.
    x, c = linear_gaussian(300, seed=0)
    model = _small_model()
    model.compile(keras.optimizers.Adam(0.0))
    model.fit(x, c, epochs=1, batch_size=300, verbose=0)
    h = model.steps[0].bijector().forward(x).numpy()
    np.testing.assert_allclose(h.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(h.std(0), 1.0, atol=1e-3)


def test_averaged_early_stopping_takes_validation_pairs():
    x, c = linear_gaussian(512, seed=0)
    xv, cv = linear_gaussian(128, seed=1)
    model = _small_model()
    model.compile(keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9))
    stop = tn.AveragedEarlyStopping((xv, cv), patience=2)
    model.fit(x, c, epochs=4, batch_size=64, verbose=0, callbacks=[stop])
    assert np.isfinite(stop.best)
    nll = float(-tf.reduce_mean(model.log_prob(xv, context=cv)))
    assert stop.best == pytest.approx(nll, rel=1e-4, abs=1e-4)


def test_dequantized_batches_keep_each_row_with_its_context_and_fit_takes_them():
    rng = np.random.default_rng(0)
    levels = 17
    x = rng.integers(0, levels, size=(200, 2))
    c = np.stack([np.arange(200), -np.arange(200)], 1).astype("float32")  # names its row
    batches = list(tn.dequantized_batches(x, levels, 64, seed=1, context=c))
    assert [int(b.shape[0]) for b, _ in batches] == [64, 64, 64, 8]
    xs = np.concatenate([b.numpy() for b, _ in batches])
    cs = np.concatenate([k.numpy() for _, k in batches])
    rows = cs[:, 0].astype(int)
    assert sorted(rows) == list(range(200))  # every row once, shuffled
    assert not np.array_equal(rows, np.arange(200))
    np.testing.assert_array_equal(cs[:, 1], -rows)  # the context is never noised
    # each dequantized x lies in its own row's cell: x <= L * x_deq < x + 1
    scaled = xs * levels
    assert np.all(scaled >= x[rows] - 1e-4) and np.all(scaled < x[rows] + 1)
    model = _small_model()
    model.compile(keras.optimizers.Adam(1e-2))
    onehot = np.eye(2, dtype="float32")[rng.integers(0, 2, 200)]
    history = model.fit(tn.dequantized_batches(x, levels, 64, seed=0, context=onehot),
                        epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert int(model.data_initialized.numpy()) == 1
    with pytest.raises(ValueError, match="200 examples but 10 context rows"):
        tn.dequantized_batches(x, levels, 64, context=onehot[:10])
    with pytest.raises(ValueError, match="NaN or inf in row 3"):
        bad = onehot.copy()
        bad[3, 0] = np.nan
        tn.dequantized_batches(x, levels, 64, context=bad)
    with pytest.raises(TypeError, match="numbers"):
        tn.dequantized_batches(x, levels, 64, context=onehot > 0)


# --- save and load ------------------------------------------------------------------------


def test_a_conditional_flow_survives_keras_saving(tmp_path):
    steps = tn.multiscale_steps((4, 4, 2), num_scales=2, steps_per_scale=1,
                                hidden_channels=(4,), context_shape=(3,), seed=0)
    model = tn.Flow(steps, context_shape=(3,), num_levels=256)
    randomize(model.steps, seed=1, scale=0.1)
    model.compile(keras.optimizers.Adam(1e-3))
    x = uniform_images(4, (4, 4, 2)).astype("float32")
    c = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    path = str(tmp_path / "conditional.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.context_shape == (3,)
    np.testing.assert_allclose(loaded.log_prob(x, context=c), model.log_prob(x, context=c),
                               rtol=1e-6)


# --- SavedModel: the signatures take the context, served by TensorFlow alone ---------------

SERVE_CONDITIONAL = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    path, in_file, out_file = sys.argv[1:4]
    given = np.load(in_file)
    x, c, cs = (tf.constant(given[k]) for k in ("x", "c", "cs"))
    sig = tf.saved_model.load(path).signatures
    out = {"log_prob": sig["log_prob"](x=x, context=c)["log_prob"].numpy(),
           "default": sig["serving_default"](x=x, context=c)["log_prob"].numpy(),
           "encode": sig["encode"](x=x, context=c)["z"].numpy()}
    out["decode"] = sig["decode"](z=tf.constant(out["encode"]), context=c)["x"].numpy()
    for name, seed in [("seeded_a", 5), ("seeded_b", 5)]:
        out[name] = sig["sample"](num_samples=tf.constant(int(given["n"])),
                                  temperature=tf.constant(float(given["temperature"]) if
                                                          "temperature" in given else 1.0,
                                                          x.dtype),
                                  seed=tf.constant(seed, tf.int64), context=cs)["x"].numpy()
    meta = {k: v.numpy() for k, v in sig["metadata"]().items()}
    np.savez(out_file, **out)
    print(json.dumps({"tfp_nice_imported": "tfp_nice" in sys.modules,
                      "tfp_imported": any(m.startswith("tensorflow_probability")
                                          for m in sys.modules),
                      "context_shape": meta["context_shape"].tolist(),
                      "inputs": {k: sorted(sig[k].structured_input_signature[1])
                                 for k in ("log_prob", "encode", "decode", "sample")}}))
""")


def serve_fresh(path, tmp_path, **arrays):
    np.savez(tmp_path / "in.npz", **arrays)
    (tmp_path / "serve.py").write_text(SERVE_CONDITIONAL)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "serve.py"), str(path), str(tmp_path / "in.npz"),
         str(tmp_path / "out.npz")], cwd=tmp_path, capture_output=True, text=True,
        timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), dict(np.load(tmp_path / "out.npz"))


def test_served_signatures_take_the_context_in_a_tensorflow_only_process(
        trained_linear_gaussian, tmp_path):
    model = trained_linear_gaussian
    x, c = linear_gaussian(50, seed=5)
    cs = np.array([[2.0, 0.0], [-1.0, 1.0], [0.0, -2.0]], "float32")
    meta = model.export(str(tmp_path / "served"))
    assert meta["context_shape"] == [2]
    status, out = serve_fresh(tmp_path / "served", tmp_path, x=x, c=c, cs=cs, n=4000)
    assert not status["tfp_nice_imported"] and not status["tfp_imported"]
    assert status["context_shape"] == [2]
    assert status["inputs"] == {"log_prob": ["context", "x"], "encode": ["context", "x"],
                                "decode": ["context", "z"],
                                "sample": ["context", "num_samples", "seed", "temperature"]}
    expected = model.log_prob(x, context=c).numpy()
    np.testing.assert_allclose(out["log_prob"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["default"], expected, rtol=1e-5, atol=1e-5)
    # and against the closed form the flow was trained to match
    assert np.mean(np.abs(out["log_prob"] - true_log_prob(x, c))) < 0.15
    np.testing.assert_allclose(out["encode"], model.encode(x, context=c), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(out["decode"], x, atol=1e-4)
    # n per row, [:, i] given row i: the exact conditional mean and covariance
    samples = out["seeded_a"]
    assert samples.shape == (4000, 3, 2)
    np.testing.assert_array_equal(samples, out["seeded_b"])
    np.testing.assert_allclose(samples.mean(axis=0), cs @ A.T + B, atol=0.06)
    np.testing.assert_allclose(np.cov(samples[:, 2].T), L @ L.T, atol=0.05)


def test_served_multiscale_conditional_flow_agrees_in_process(tmp_path):
    steps = tn.multiscale_steps((4, 4, 2), num_scales=2, steps_per_scale=1,
                                hidden_channels=(4,), learned_prior=True, context_shape=(3,),
                                seed=0)
    model = tn.Flow(steps, context_shape=(3,), num_levels=256)
    randomize(model.steps, seed=1, scale=0.2)
    x = uniform_images(5, (4, 4, 2)).astype("float32")
    c = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1]]
    tn.export_saved_model(model, tmp_path / "served")
    status, out = serve_fresh(tmp_path / "served", tmp_path, x=x, c=c, cs=c[:2], n=3)
    expected = model.log_prob(x, context=c).numpy()
    np.testing.assert_allclose(out["log_prob"], expected, rtol=1e-5, atol=1e-4)
    # the served log_prob depends on the context it is given
    other = model.log_prob(x, context=c[::-1].copy()).numpy()
    assert np.abs(other - out["log_prob"]).max() > 1e-3
    np.testing.assert_allclose(out["decode"], x, atol=1e-4)
    assert out["seeded_a"].shape == (3, 2, 4, 4, 2)


def test_served_signatures_refuse_a_bad_context(trained_linear_gaussian, tmp_path):
    model = trained_linear_gaussian
    tn.export_saved_model(model, tmp_path / "served")
    sig = tf.saved_model.load(str(tmp_path / "served")).signatures
    x = tf.zeros((4, 2))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"context must have shape "
                       r"\[batch, 2\] float32"):
        sig["log_prob"](x=x, context=tf.zeros((4, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one context row per row"):
        sig["log_prob"](x=x, context=tf.zeros((3, 2)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one context row per row"):
        sig["decode"](z=x, context=tf.zeros((5, 2)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or inf"):
        sig["encode"](x=x, context=tf.fill((4, 2), np.nan))
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or inf"):
        sig["sample"](num_samples=tf.constant(2), temperature=tf.constant(1.0),
                      seed=tf.constant(0, tf.int64), context=tf.fill((1, 2), np.inf))
    with pytest.raises(TypeError):
        sig["log_prob"](x=x)  # the context is a required input


# --- an embedding network maps the raw context once per call -----------------------------


def _embedding(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)],
                            name="embedding")


def test_the_steps_see_the_embedded_context_and_its_gradients_train_the_embedding():
    embedding = _embedding()
    steps = dense_steps(dim=3, context_shape=(2,))
    model = tn.Flow(steps, context_shape=(5,), embedding=embedding)
    randomize(model.steps, seed=1, scale=0.4)
    plain = tn.Flow(steps, context_shape=(2,))  # the same steps, given the embedding's output
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3)).astype("float32")
    raw = rng.normal(size=(6, 5)).astype("float32")
    np.testing.assert_allclose(model.log_prob(x, context=raw),
                               plain.log_prob(x, context=embedding(raw)), rtol=1e-6)
    np.testing.assert_allclose(model.encode(x, context=raw),
                               plain.encode(x, context=embedding(raw)), rtol=1e-6, atol=1e-6)
    assert model.sample(4, context=raw[:2], seed=0).shape == (4, 2, 3)
    assert {w.path for w in embedding.trainable_weights} <= {
        w.path for w in model.trainable_weights}
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.log_prob(x, context=raw))
    grads = tape.gradient(loss, embedding.trainable_weights)
    assert all(g is not None and float(tf.norm(g)) > 1e-6 for g in grads)


def test_fit_trains_the_embedding_and_it_saves_and_serves_with_the_flow(tmp_path):
    x, c = linear_gaussian(512, seed=0)
    raw = np.concatenate([c, np.random.default_rng(1).normal(size=(512, 3))], 1)
    raw = raw.astype("float32")  # the context and three columns of noise
    model = tn.NICE((2,), num_couplings=4, hidden_units=(16,), prior="normal",
                    context_shape=(5,), embedding=_embedding(), seed=0)
    assert model.steps[0].context_shape == (2,)
    before = [w.numpy().copy() for w in model.embedding.trainable_weights]
    model.compile(keras.optimizers.Adam(1e-2))
    model.fit(x, raw, epochs=3, batch_size=64, verbose=0)
    assert all(np.abs(w.numpy() - b).max() > 1e-4
               for w, b in zip(model.embedding.trainable_weights, before))
    expected = model.log_prob(x[:20], context=raw[:20]).numpy()
    model.save(tmp_path / "embedded.keras")
    loaded = keras.models.load_model(tmp_path / "embedded.keras")
    np.testing.assert_allclose(loaded.log_prob(x[:20], context=raw[:20]), expected, rtol=1e-6)
    model.export(str(tmp_path / "served"))
    status, out = serve_fresh(tmp_path / "served", tmp_path, x=x[:20], c=raw[:20],
                              cs=raw[:2], n=3)
    assert not status["tfp_nice_imported"] and status["context_shape"] == [5]
    np.testing.assert_allclose(out["log_prob"], expected, rtol=1e-5, atol=1e-5)
    assert out["seeded_a"].shape == (3, 2, 2)


def test_an_embedding_is_refused_when_it_cannot_serve_the_steps():
    steps = dense_steps(dim=3, context_shape=(2,))
    with pytest.raises(ValueError, match=r"maps a context row of shape \(5,\) to shape "
                       r"\(3,\).*context_shape=\(3,\)"):
        tn.Flow(steps, context_shape=(5,), embedding=keras.layers.Dense(3))
    with pytest.raises(ValueError, match="needs context_shape"):
        tn.Flow(steps, embedding=keras.layers.Dense(2))
    with pytest.raises(TypeError, match="embedding must be a Keras layer"):
        tn.Flow(steps, context_shape=(5,), embedding=lambda c: c[:, :2])


# --- inpainting given the context ---------------------------------------------------------


def test_inpainting_holds_the_context_fixed(trained_linear_gaussian):
    model = trained_linear_gaussian
    x, c = linear_gaussian(200, seed=4)
    observed = np.array([True, False])
    start = np.where(observed, x, x.mean(0)).astype("float32")
    filled = model.inpaint(start, observed, num_steps=300, step_size=0.05, noise=0.0,
                           clip=None, context=c).numpy()
    np.testing.assert_array_equal(filled[:, 0], x[:, 0])
    # the conditional mean of x_2 given x_1 and c, in closed form
    mean = c @ A.T + B
    s = L @ L.T
    expected = mean[:, 1] + s[1, 0] / s[0, 0] * (x[:, 0] - mean[:, 0])
    assert np.mean((filled[:, 1] - expected) ** 2) < 0.1 * np.mean((start[:, 1] - expected) ** 2)


# --- bad input: one clear error each ------------------------------------------------------


def test_a_conditional_flow_refuses_a_missing_or_malformed_context():
    model = _small_model()
    x = np.zeros((4, 2), "float32")
    c = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match="needs context="):
        model.log_prob(x)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        model.log_prob(x, context=np.zeros((4, 3), "float32"))
    with pytest.raises(ValueError, match="3 rows for 4 examples"):
        model.log_prob(x, context=c[:3])
    with pytest.raises(TypeError, match="numbers"):
        model.log_prob(x, context=np.zeros((4, 2), bool))
    with pytest.raises(ValueError, match="NaN or inf"):
        model.log_prob(x, context=np.full((4, 2), np.nan, "float32"))
    with pytest.raises(ValueError, match="conditional_distribution"):
        model.distribution
    with pytest.raises(ValueError, match="needs context="):
        model.sample(3)
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="8 examples but 7 context rows"):
        model.fit(np.zeros((8, 2), "float32"), np.zeros((7, 2), "float32"), verbose=0)
    with pytest.raises(ValueError, match="NaN or inf in row 2"):
        bad = np.zeros((8, 2), "float32")
        bad[2, 1] = np.inf
        model.fit(np.zeros((8, 2), "float32"), bad, verbose=0)
    with pytest.raises(ValueError, match="needs context="):
        model.fit(np.zeros((8, 2), "float32"), verbose=0)


def test_an_unconditional_flow_refuses_a_context():
    model = tn.Flow([tn.ActNormStep((2,))])
    with pytest.raises(ValueError, match="not conditional"):
        model.log_prob(np.zeros((2, 2), "float32"), context=np.zeros((2, 1), "float32"))
    with pytest.raises(ValueError, match="not conditional"):
        model.conditional_distribution(np.zeros((2, 1), "float32"))


def test_the_flows_context_shape_must_be_its_steps():
    with pytest.raises(ValueError, match="no step takes a context"):
        tn.Flow([tn.ActNormStep((2,))], context_shape=(2,))
    with pytest.raises(ValueError, match=r"give context_shape=\(2,\)"):
        tn.Flow(dense_steps(dim=2))
    with pytest.raises(ValueError, match="different shapes"):
        tn.Flow(dense_steps(dim=2)[:2] + [tn.CouplingStep(
            (2,), tn.partition_mask("halves", (2,)), hidden_units=(4,), context_shape=(5,),
            name="other")], context_shape=(2,))
    with pytest.raises(ValueError, match="context_shape must be"):
        tn.CouplingStep((2,), tn.partition_mask("halves", (2,)), hidden_units=(4,),
                        context_shape=(0,))
    with pytest.raises(ValueError, match="learned_prior=True"):
        tn.FactorOutStep((2, 2, 2), [tn.ActNormStep((2, 2, 1))], context_shape=(2,))


# --- the simulation-based-inference example's reference -----------------------------------


def test_the_sbi_examples_exact_posterior_is_the_joint_gaussians_conditional():
    from helpers import repo_module

    example = repo_module("examples/sbi_linear_gaussian.py", "sbi_example")
    m, s = example.M, example.NOISE
    # (theta, x) is jointly Gaussian: condition it the textbook way, independently of the
    # example's precision form
    cov_tx = m.T
    cov_xx = m @ m.T + s ** 2 * np.eye(len(m))
    x = np.random.default_rng(0).normal(size=(4, len(m)))
    mean, cov = example.exact_posterior(x)
    np.testing.assert_allclose(mean, x @ np.linalg.solve(cov_xx, cov_tx.T), atol=1e-10)
    np.testing.assert_allclose(cov, np.eye(2) - cov_tx @ np.linalg.solve(cov_xx, cov_tx.T),
                               atol=1e-10)
    theta = np.random.default_rng(1).normal(size=(4, 2))
    expected = tfd.MultivariateNormalTriL(mean, np.linalg.cholesky(cov)).log_prob(theta)
    np.testing.assert_allclose(example.gaussian_log_prob(theta, mean, cov), expected,
                               rtol=1e-10)


# --- a prior given the context ------------------------------------------------------------

MU = np.array([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]])
SIGMA = np.array([[0.5, 1.0, 2.0], [1.5, 0.3, 0.8]])


def _class_prior_flow():
    reverse = tn.PermutationStep((3,), np.array([2, 1, 0]), name="reverse")
    model = tn.Flow([reverse, tn.CouplingStep((3,), tn.partition_mask("halves", (3,)),
                                              hidden_units=(4,), context_shape=(2,),
                                              name="coupling")],
                    context_shape=(2,), conditional_prior=True, seed=0)
    # the prior's location and log-scale of class k, by hand: one-hot rows pick them
    kernel = np.concatenate([MU, np.log(SIGMA)], axis=1)
    model.prior_network.kernel.assign(kernel.astype("float32"))
    return model


def test_a_conditional_prior_is_the_closed_form_class_conditional_density():
    model = _class_prior_flow()  # the coupling is the identity at the start
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3)).astype("float32")
    y = np.array([0, 1, 1, 0, 1, 0])
    onehot = np.eye(2, dtype="float32")[y]
    z = x[:, ::-1]
    expected = tfd.Normal(MU[y], SIGMA[y]).log_prob(z).numpy().sum(1)
    np.testing.assert_allclose(model.log_prob(x, context=onehot), expected, rtol=1e-5)
    np.testing.assert_allclose(model.conditional_distribution(onehot).log_prob(x), expected,
                               rtol=1e-5)
    # samples: each class's location and spread; the temperature scales the spread only
    for t in (1.0, 0.5):
        drawn = model.sample(20000, temperature=t, seed=1, context=np.eye(2, dtype="float32"))
        latent = drawn.numpy()[..., ::-1]  # (n, 2 classes, 3)
        np.testing.assert_allclose(latent.mean(0), MU, atol=0.05 * SIGMA.max() / 0.5)
        np.testing.assert_allclose(latent.std(0), t * SIGMA, rtol=0.03)


def test_the_conditional_distribution_draws_one_example_per_row_as_documented():
    rows = np.eye(2, dtype="float32")[np.arange(4000) % 2]
    with_prior = _class_prior_flow().conditional_distribution(rows)
    assert with_prior.batch_shape == (4000,)
    drawn = with_prior.sample(seed=2).numpy()[:, ::-1]  # one per row, given its row
    assert drawn.shape == (4000, 3)
    np.testing.assert_allclose(drawn[0::2].mean(0), MU[0], atol=0.1)
    np.testing.assert_allclose(drawn[1::2].mean(0), MU[1], atol=0.1)
    np.testing.assert_allclose(drawn[1::2].std(0), SIGMA[1], rtol=0.06)
    plain = tn.Flow(dense_steps(), context_shape=(2,)).conditional_distribution(rows[:6])
    assert plain.batch_shape == () and plain.sample(6, seed=3).shape == (6, 3)


def test_a_conditional_prior_trains_saves_and_serves(tmp_path):
    model = _class_prior_flow()
    y = np.random.default_rng(0).integers(0, 2, 2000)
    x = (MU[y] + SIGMA[y] * np.random.default_rng(1).normal(size=(2000, 3)))[:, ::-1]
    x = x.astype("float32")
    onehot = np.eye(2, dtype="float32")[y]
    model.prior_network.kernel.assign(np.zeros((2, 6), "float32"))  # start standard
    model.compile(keras.optimizers.Adam(5e-2))
    model.fit(x, onehot, epochs=30, batch_size=200, verbose=0)
    truth = tfd.Normal(MU[y], SIGMA[y]).log_prob(x[:, ::-1]).numpy().sum(1)
    assert abs(float(np.mean(truth - model.log_prob(x, context=onehot)))) < 0.05
    model.save(tmp_path / "prior.keras")
    loaded = keras.models.load_model(tmp_path / "prior.keras")
    assert loaded.conditional_prior
    np.testing.assert_allclose(loaded.log_prob(x[:50], context=onehot[:50]),
                               model.log_prob(x[:50], context=onehot[:50]), rtol=1e-6)
    model.export(str(tmp_path / "served"))
    status, out = serve_fresh(tmp_path / "served", tmp_path, x=x[:50], c=onehot[:50],
                              cs=np.eye(2, dtype="float32"), n=4000)
    np.testing.assert_allclose(out["log_prob"], model.log_prob(x[:50], context=onehot[:50]),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["seeded_a"][..., ::-1].mean(0), MU, atol=0.15)
    np.testing.assert_allclose(out["seeded_a"][..., ::-1].std(0), SIGMA, rtol=0.1)


def test_a_conditional_nice_prior_is_saved(tmp_path):
    model = tn.NICE((3,), num_couplings=2, hidden_units=(4,), context_shape=(2,),
                    conditional_prior=True)
    model.prior_network.kernel.assign(np.full((2, 6), 0.3, "float32"))
    x, c = np.ones((2, 3), "float32"), np.eye(2, dtype="float32")
    model.save(tmp_path / "nice.keras")
    loaded = keras.models.load_model(tmp_path / "nice.keras")
    assert loaded.conditional_prior
    np.testing.assert_allclose(loaded.log_prob(x, context=c), model.log_prob(x, context=c),
                               rtol=1e-6)


def test_a_conditional_prior_needs_a_context_and_a_named_prior():
    mask = tn.partition_mask("halves", (2,))
    with pytest.raises(ValueError, match="conditional_prior=True needs a conditional flow"):
        tn.Flow([tn.CouplingStep((2,), mask, hidden_units=(4,))], conditional_prior=True)
    custom = tfd.Independent(tfd.Normal(tf.zeros(2), 1.0), 1)
    with pytest.raises(ValueError, match="named prior"):
        tn.Flow([tn.CouplingStep((2,), mask, hidden_units=(4,), context_shape=(2,))],
                context_shape=(2,), prior=custom, conditional_prior=True)

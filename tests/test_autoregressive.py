"""Autoregressive flows: MADE, MAF and IAF steps, against independent references.

References: MADE's masks written in NumPy from the degrees' definition (and a NumPy
forward pass over its weights), autodiff Jacobians in float64 (the log-det, and the
Jacobian's triangle in the step's order), TFP's own `tfb.MaskedAutoregressiveFlow` given
the same shift-and-log-scale function, the change of variables by hand for a flow, and a
conditional Gaussian whose density is known in closed form.
"""

import json
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from helpers import unit_roundoff
from user_transformer import SinhArcsinh

tfb, tfd = tfp.bijectors, tfp.distributions


def _randomize(layer, seed, scale=0.4):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(scale * rng.normal(size=w.shape))


def _numpy_masks(order, hidden, p):
    """MADE's masks from the definition: entry order[k] has degree k + 1; hidden units
    degrees 1..D-1 in turn; a hidden unit sees degrees <= its own, an output its entry's
    degree > the unit's."""
    d = len(order)
    deg_in = np.zeros(d, int)
    for k, i in enumerate(order):
        deg_in[i] = k + 1
    masks, below = [], deg_in
    for units in hidden:
        deg = np.array([(k % max(1, d - 1)) + (1 if d > 1 else 0) for k in range(units)])
        masks.append(np.array([[deg[j] >= below[i] for j in range(units)]
                               for i in range(len(below))], float))
        below = deg
    out = np.array([deg_in[i] for i in range(d) for _ in range(p)])
    masks.append(np.array([[out[j] > below[i] for j in range(d * p)]
                           for i in range(len(below))], float))
    return masks


def _numpy_made(made, x, context=None):
    masks = _numpy_masks(made.order.tolist(), made.hidden_units, made.params_per_entry)
    h = np.asarray(x, float)
    last = len(masks) - 1
    for k, mask in enumerate(masks):
        pre = h @ (made.kernels[k].numpy() * mask) + made.biases[k].numpy()
        if context is not None:
            pre = pre + np.asarray(context, float) @ made.context_kernels[k].numpy()
        if k == last:
            h = pre
        elif made.residual and k > 0:
            h = h + np.maximum(pre, 0)
        else:
            h = np.maximum(pre, 0)
    return h.reshape(len(x), made.event_size, made.params_per_entry)


# --- MADE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["natural", "reversed", "random", [2, 0, 4, 1, 3]])
@pytest.mark.parametrize("residual", [False, True])
def test_made_is_the_masked_network_of_its_definition(order, residual):
    made = tn.MADE(5, params_per_entry=3, hidden_units=(7, 7), order=order, seed=1,
                   residual=residual, dtype="float64")
    made.build((None, 5))
    _randomize(made, seed=2)
    x = np.random.default_rng(3).normal(size=(6, 5))
    np.testing.assert_allclose(made(x).numpy(), _numpy_made(made, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", ["natural", "reversed", "random", [2, 0, 4, 1, 3]])
def test_each_output_depends_on_exactly_the_entries_before_it(order):
    """Autodiff: d params_i / d x_j is nonzero iff j comes before i in the order."""
    made = tn.MADE(5, params_per_entry=2, hidden_units=(16, 16), order=order, seed=4,
                   activation="tanh", dtype="float64")
    made.build((None, 5))
    _randomize(made, seed=5)
    x = tf.constant(np.random.default_rng(6).normal(size=(3, 5)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = made(x)
    jac = np.abs(tape.batch_jacobian(out, x).numpy()).max(axis=(0, 2))  # [D_out, D_in]
    rank = {int(i): k for k, i in enumerate(made.order)}
    for i in range(5):
        for j in range(5):
            before = rank[j] < rank[i]
            assert (jac[i, j] > 1e-8) == before, (order, i, j, jac[i, j])


def test_a_partial_made_sees_the_first_w_entries_of_the_order_at_most():
    """Narrower than D - 1 with partial=True (TFP's and nflows' behaviour at 2x512 over
    784): entry i sees the entries before it among the first w of the order only."""
    made = tn.MADE(6, params_per_entry=1, hidden_units=(3, 4), order=[5, 1, 0, 3, 2, 4],
                   partial=True, activation="tanh", dtype="float64")
    made.build((None, 6))
    _randomize(made, seed=22)
    x = tf.constant(np.random.default_rng(23).normal(size=(3, 6)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = made(x)
    jac = np.abs(tape.batch_jacobian(out, x).numpy()).max(axis=(0, 2))
    rank = {int(i): k for k, i in enumerate(made.order)}
    for i in range(6):
        for j in range(6):
            assert (jac[i, j] > 1e-8) == (rank[j] < min(rank[i], 3)), (i, j, jac[i, j])
    with pytest.raises(ValueError, match=r"hidden layer 0 has 3 units.*partial=True accepts"):
        tn.MADE(6, hidden_units=(3, 4))


def test_a_conditional_made_sees_the_context_at_every_entry():
    made = tn.MADE(3, params_per_entry=2, hidden_units=(8,), context_units=4, dtype="float64")
    made.build((None, 3))
    _randomize(made, seed=7)
    x = np.random.default_rng(8).normal(size=(2, 3))
    c = tf.constant(np.random.default_rng(9).normal(size=(2, 4)))
    np.testing.assert_allclose(made(x, context=c).numpy(), _numpy_made(made, x, c.numpy()),
                               rtol=1e-12, atol=1e-12)
    with tf.GradientTape() as tape:
        tape.watch(c)
        out = made(x, context=c)
    assert (np.abs(tape.batch_jacobian(out, c).numpy()).max(axis=(0, 2, 3)) > 1e-8).all()
    with pytest.raises(ValueError, match="needs a context"):
        made(x)


def test_a_fresh_made_gives_zero_parameters():
    made = tn.MADE(4, params_per_entry=3, hidden_units=(8,))
    assert np.all(made(np.ones((2, 4), "float32")).numpy() == 0)


@pytest.mark.parametrize("kwargs,message", [
    ({"order": [0, 1, 1, 3]}, r"order must be a permutation of range\(4\)"),
    ({"order": [0, 1, 2]}, r"order must be a permutation of range\(4\)"),
    ({"order": [0.0, 1.0, 2.0, 3.0]}, r"order must be a permutation of range\(4\)"),
    ({"order": "sideways"}, r"order must be one of \('natural', 'reversed', 'random'\)"),
    ({"hidden_units": (8, 2)}, r"hidden layer 1 has 2 units; over 4 entries each hidden layer "
                               r"needs at least 3"),
    ({"hidden_units": (8, 6), "residual": True}, "hidden layers need one width"),
])
def test_made_bad_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tn.MADE(4, **{"hidden_units": (8,), **kwargs})


# --- the steps: exact against autodiff, triangular, TFP's MAF ------------------------------


def _step(transformer, inverse, order="random", **kwargs):
    keras.utils.set_random_seed(0)
    step = tn.AutoregressiveStep((2, 3), transformer=transformer, hidden_units=(12, 12),
                                 order=order, inverse=inverse, seed=11, dtype="float64",
                                 **kwargs)
    _randomize(step.network, seed=12, scale=0.3)
    return step


TRANSFORMERS = ["additive", "affine", tn.Affine("sigmoid"), "spline", SinhArcsinh()]


@pytest.mark.parametrize("inverse", [False, True], ids=["maf", "iaf"])
@pytest.mark.parametrize("transformer", TRANSFORMERS, ids=lambda t: repr(t))
def test_a_step_is_exact_and_triangular_in_its_order(transformer, inverse):
    step = _step(transformer, inverse)
    x = tf.constant(np.random.default_rng(13).normal(size=(4, 2, 3)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = step.bijector().forward(x * 1.0)  # a new tensor: not TFP's cached result
    jac = tape.batch_jacobian(z, x).numpy().reshape(4, 6, 6)
    _, expected = np.linalg.slogdet(jac)
    np.testing.assert_allclose(step.bijector().forward_log_det_jacobian(x + 0.0, 2), expected,
                               rtol=1e-10, atol=1e-10)
    in_order = jac[:, step.order][:, :, step.order]
    assert np.abs(np.triu(in_order, 1)).max() == 0  # no entry sees one after it
    assert np.abs(np.tril(in_order, -1)).max() > 1e-3  # and they do see those before
    back = step.bijector().inverse(z.numpy() * 1.0)
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(step.bijector().inverse_log_det_jacobian(z.numpy() + 0.0, 2),
                               -expected, rtol=1e-10, atol=1e-10)


def _tfp_fn(step):
    """TFP's shift-and-log-scale function over the step's MADE, such that TFP's one-pass
    inverse `(y - shift) exp(-log_scale)` is our affine map `y exp(s) + t`."""
    def fn(y):
        params = step.network(y)
        t, s = params[..., 0], params[..., 1]
        return -t * tf.exp(-s), -s
    return fn


def test_a_maf_step_is_tfps_masked_autoregressive_flow_both_ways():
    step = tn.AutoregressiveStep((5,), transformer="affine", hidden_units=(16, 16),
                                 order="natural", dtype="float64")
    _randomize(step.network, seed=14, scale=0.3)
    tfp_maf = tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=_tfp_fn(step))
    x = np.random.default_rng(15).normal(size=(8, 5))
    ours = step.bijector()
    np.testing.assert_allclose(ours.forward(x), tfp_maf.inverse(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.forward_log_det_jacobian(x, 1),
                               tfp_maf.inverse_log_det_jacobian(x, 1), rtol=1e-12, atol=1e-12)
    z = np.random.default_rng(16).normal(size=(8, 5))  # the entry-by-entry direction
    np.testing.assert_allclose(step.bijector().inverse(z), tfp_maf.forward(z), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(step.bijector().inverse_log_det_jacobian(z, 1),
                               tfp_maf.forward_log_det_jacobian(z, 1), rtol=1e-10, atol=1e-10)


def test_an_iaf_step_is_tfps_inverse_autoregressive_flow_both_ways():
    step = tn.AutoregressiveStep((5,), transformer="affine", hidden_units=(16, 16),
                                 order="natural", inverse=True, dtype="float64")
    _randomize(step.network, seed=17, scale=0.3)
    # TFP's IAF is Invert(MAF): its forward (noise -> samples) is one pass, our f^{-1}
    tfp_iaf = tfb.Invert(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=_tfp_fn(step)))
    z = np.random.default_rng(18).normal(size=(8, 5))
    ours = step.bijector()  # f: data -> latent; its inverse samples in one pass
    np.testing.assert_allclose(ours.inverse(z), tfp_iaf.forward(z), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.inverse_log_det_jacobian(z, 1),
                               tfp_iaf.forward_log_det_jacobian(z, 1), rtol=1e-12, atol=1e-12)
    x = np.random.default_rng(19).normal(size=(8, 5))  # the entry-by-entry direction
    np.testing.assert_allclose(step.bijector().forward(x), tfp_iaf.inverse(x), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(step.bijector().forward_log_det_jacobian(x, 1),
                               tfp_iaf.inverse_log_det_jacobian(x, 1), rtol=1e-10, atol=1e-10)


def test_a_fresh_step_is_the_identity():
    for inverse in (False, True):
        step = tn.AutoregressiveStep((3,), hidden_units=(4,), inverse=inverse)
        x = np.float32([[1.0, -2.0, 3.0]])
        np.testing.assert_array_equal(step.bijector().forward(x), x)


def test_the_constant_log_det_of_an_additive_step_needs_no_network_call():
    calls = []

    class Counting(keras.layers.Layer):
        def call(self, u):
            calls.append(1)
            return tf.zeros_like(u)

    step = tn.AutoregressiveStep((3,), transformer="additive", network=Counting())
    calls.clear()
    assert step.constant_log_det
    np.testing.assert_array_equal(step.bijector().forward_log_det_jacobian(
        np.ones((2, 3), "float32"), 1), [0.0, 0.0])
    assert not calls


# --- flows of them ------------------------------------------------------------------------


@pytest.mark.parametrize("inverse", [False, True], ids=["maf", "iaf"])
def test_a_flow_of_autoregressive_steps_is_the_change_of_variables(inverse):
    steps = tn.autoregressive_steps((4,), num_steps=3, hidden_units=(8, 8), inverse=inverse,
                                    transformer="spline", actnorm=True, seed=2, dtype="float64")
    model = tn.Flow(steps, prior="normal", dtype="float64")
    for step in steps:
        if isinstance(step, tn.AutoregressiveStep):
            _randomize(step.network, seed=20, scale=0.3)
    x = tf.constant(np.random.default_rng(21).normal(size=(5, 4)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = model.encode(x)
    _, log_det = np.linalg.slogdet(tape.batch_jacobian(z, x).numpy())
    expected = -0.5 * np.sum(z.numpy() ** 2, 1) - 2 * np.log(2 * np.pi) + log_det
    np.testing.assert_allclose(model.log_prob(x), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.decode(z), x, atol=1e-10)
    assert [s.order.tolist() for s in steps if hasattr(s, "order")] == [
        [0, 1, 2, 3], [3, 2, 1, 0], [0, 1, 2, 3]]


def _conditional_gaussian(n, seed):
    """x = (c + e1, 0.5 c x1 + 0.3 e2) given c ~ U(-2, 2): a density known in closed form."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-2, 2, size=(n, 1))
    x1 = c[:, 0] + rng.normal(size=n)
    x2 = 0.5 * c[:, 0] * x1 + 0.3 * rng.normal(size=n)
    return np.stack([x1, x2], 1).astype("float32"), c.astype("float32")


def _true_log_prob(x, c):
    from scipy import stats

    return stats.norm.logpdf(x[:, 0], c[:, 0]) + stats.norm.logpdf(
        x[:, 1], 0.5 * c[:, 0] * x[:, 0], 0.3)


def test_a_conditional_maf_learns_a_conditional_gaussian():
    """One affine MAF step can represent this density exactly (x2's shift and scale given
    x1 and c); trained, its held-out log-density is the closed form's."""
    keras.utils.set_random_seed(0)
    x, c = _conditional_gaussian(4000, seed=0)
    steps = tn.autoregressive_steps((2,), num_steps=1, hidden_units=(32, 32),
                                    context_shape=(1,), transformer=tn.Affine("bounded",
                                                                              bound=3.0))
    model = tn.Flow(steps, prior="normal", context_shape=(1,))
    model.compile(keras.optimizers.Adam(3e-3))
    model.fit(x, c, epochs=40, batch_size=200, verbose=0)
    xt, ct = _conditional_gaussian(2000, seed=1)
    gap = float(np.mean(_true_log_prob(xt, ct) - model.log_prob(xt, context=ct).numpy()))
    assert 0 <= gap + 0.03 and gap < 0.05, gap  # KL estimate: near 0, not below by noise
    # the context matters: another context gives another density
    moved = model.log_prob(xt[:50], context=-ct[:50]).numpy() - model.log_prob(
        xt[:50], context=ct[:50]).numpy()
    assert np.abs(moved).max() > 1.0


# --- served, saved, mixed precision -------------------------------------------------------


SERVE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, x_file = sys.argv[1:3]
    sig = tf.saved_model.load(path).signatures
    x = tf.constant(np.load(x_file))
    log_prob = sig["log_prob"](x=x)["log_prob"].numpy()
    samples = sig["sample"](num_samples=tf.constant(6), seed=tf.constant(3, tf.int64),
                            temperature=tf.constant(1.0))["x"].numpy()
    print(json.dumps({"log_prob": log_prob.tolist(), "samples": samples.tolist(),
                      "tfp_nice": "tfp_nice" in sys.modules,
                      "tfp": any(m.startswith("tensorflow_probability") for m in sys.modules)}))
""")


@pytest.mark.parametrize("inverse", [False, True], ids=["maf", "iaf"])
def test_a_trained_flow_saves_loads_and_serves_both_directions(inverse, tmp_path):
    """The entry-by-entry direction (a MAF's sample, an IAF's log_prob) runs in a
    tf.function and in a SavedModel served by a TensorFlow-only process."""
    keras.utils.set_random_seed(0)
    x = tn.data.two_moons(1000, seed=0)
    steps = tn.autoregressive_steps((2,), num_steps=3, hidden_units=(16, 16), inverse=inverse,
                                    transformer=SinhArcsinh() if inverse else "spline")
    model = tn.Flow(steps)
    model.compile(keras.optimizers.Adam(3e-3))
    model.fit(x, epochs=3, batch_size=100, verbose=0)
    probe = x[:7]
    eager = model.log_prob(probe).numpy()
    graph = tf.function(lambda t: model.log_prob(t))(tf.constant(probe)).numpy()
    np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-5)
    z = np.random.default_rng(1).normal(size=(7, 2)).astype("float32")
    decoded = tf.function(lambda t: model.decode(t))(tf.constant(z))
    np.testing.assert_allclose(model.encode(decoded), z, atol=1e-4)

    model.save(tmp_path / "ar.keras")
    loaded = keras.models.load_model(tmp_path / "ar.keras")
    assert [s.order.tolist() for s in loaded.steps] == [s.order.tolist() for s in steps]
    np.testing.assert_array_equal(loaded.log_prob(probe), eager)

    model.export(str(tmp_path / "served"))
    np.save(tmp_path / "x.npy", probe)
    (tmp_path / "serve.py").write_text(SERVE)
    done = subprocess.run([sys.executable, str(tmp_path / "serve.py"), str(tmp_path / "served"),
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert not served["tfp_nice"] and not served["tfp"]
    np.testing.assert_allclose(served["log_prob"], eager, rtol=1e-5, atol=1e-5)
    samples = np.array(served["samples"], "float32")
    assert samples.shape == (6, 2) and np.isfinite(samples).all()
    # served samples are the flow's: mapped back, they are latent draws the flow scores
    z_back = model.encode(samples).numpy()
    np.testing.assert_allclose(model.decode(z_back), samples, atol=1e-4)


def test_under_mixed_precision_the_made_computes_in_half_and_densities_stay_float32():
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    steps = tn.autoregressive_steps((6,), num_steps=2, hidden_units=(16,),
                                    transformer="affine", seed=0)
    mixed_steps = tn.autoregressive_steps((6,), num_steps=2, hidden_units=(16,),
                                          transformer="affine", seed=0, dtype="mixed_bfloat16")
    model, mixed = tn.Flow(steps), tn.Flow(mixed_steps, dtype="mixed_bfloat16")
    for s in mixed.steps:
        assert s.network.compute_dtype == "bfloat16" and s.network.variable_dtype == "float32"
    for s in model.steps:
        _randomize(s.network, seed=1, scale=0.3)
    mixed.set_weights(model.get_weights())
    got, exact = mixed.log_prob(x).numpy(), model.log_prob(x).numpy()
    assert mixed.log_prob(x).dtype == tf.float32
    # First-order worst case of bfloat16 rounding: each layer's pre-activation errs by at
    # most (n + 2) u (|h| |W| + |b|); log p moves by the sum of |d log p / d pre| times that.
    u = unit_roundoff("bfloat16")
    bound = np.zeros(len(x))
    h = x.astype("float64")
    for s in model.steps:
        made = s.network
        sens = _pre_activation_sensitivities(model, x, made)
        masks = _numpy_masks(made.order.tolist(), made.hidden_units, made.params_per_entry)
        a = h
        for k, mask in enumerate(masks):
            w, b = made.kernels[k].numpy() * mask, made.biases[k].numpy()
            n = a.shape[1]
            bound += ((n + 2) * u * (np.abs(a) @ np.abs(w) + np.abs(b)) * np.abs(sens[k])).sum(1)
            a = np.maximum(a @ w + b, 0)
        h = s.bijector().forward(h.astype("float32")).numpy().astype("float64")
    moved = np.abs(got - exact)
    assert (moved <= bound).all(), (moved, bound)
    assert moved.max() > 0  # it did compute in bfloat16
    mixed.compile(keras.optimizers.Adam(1e-3))
    assert np.isfinite(mixed.fit(x, epochs=2, batch_size=8, verbose=0).history["loss"]).all()


def _pre_activation_sensitivities(model, x, made):
    """d log p_i / d pre_j of each layer of `made`, per example, by autodiff: the bias's
    gradient with one example at a time."""
    out = []
    for row in x:
        with tf.GradientTape() as tape:
            lp = model.log_prob(row[None])
        out.append([g.numpy() for g in tape.gradient(lp, made.biases)])
    return [np.stack([o[k] for o in out]) for k in range(len(made.biases))]


# --- bad input ----------------------------------------------------------------------------


def test_bad_networks_and_options_get_one_clear_error_each():
    with pytest.raises(ValueError, match=r"order must be a permutation of range\(3\)"):
        tn.AutoregressiveStep((3,), order=[0, 0, 1], hidden_units=(4,))
    with pytest.raises(ValueError, match=r"hidden layer 0 has 2 units; over 4 entries"):
        tn.AutoregressiveStep((4,), hidden_units=(2,))
    with pytest.raises(ValueError, match="give hidden_units .* or network, not both"):
        tn.AutoregressiveStep((3,), hidden_units=(4,), network=keras.layers.Dense(3))
    wrong = keras.layers.Dense(5)  # 5 values, not 3 entries x 2
    with pytest.raises(ValueError, match=r"must return \[batch, 3, 2\] or \[batch, 6\] "
                                         r"\(2 raw values per entry for Affine"):
        tn.AutoregressiveStep((3,), network=wrong, name="wrong")
    with pytest.raises(TypeError, match="network must be a Keras layer or a factory"):
        tn.AutoregressiveStep((3,), network=3)
    with pytest.raises(ValueError, match="orders must be 'alternate' or 'random'"):
        tn.autoregressive_steps((3,), orders="shuffled")
    step = tn.AutoregressiveStep((3,), hidden_units=(4,), context_shape=(2,), name="cond")
    with pytest.raises(ValueError, match="cond is conditional"):
        step.bijector()


def test_the_stack_builder_passes_its_activation_to_every_made():
    steps = tn.autoregressive_steps((3,), num_steps=2, hidden_units=(8,), activation="tanh")
    assert [keras.activations.serialize(s.network.activation) for s in steps] == ["tanh"] * 2
    x = np.linspace(-2.0, 2.0, 12, dtype="float32").reshape(4, 3)
    relu = tn.autoregressive_steps((3,), num_steps=1, hidden_units=(8,))[0]
    relu(x)
    steps[0](x)
    rng = np.random.default_rng(0)  # the last layer starts at zero: random weights, shared
    weights = [rng.normal(size=w.shape).astype("float32") for w in relu.network.get_weights()]
    relu.network.set_weights(weights)
    steps[0].network.set_weights(weights)
    tanh_out = steps[0].network(x).numpy()
    assert not np.allclose(tanh_out, relu.network(x).numpy())  # used, not only recorded
    tfd = tfp.distributions
    posterior = tn.sbi.posterior_flow(tfd.Sample(tfd.Normal(0.0, 1.0), 3), (2,), num_steps=2,
                                      flow="autoregressive", hidden_units=(8,),
                                      activation="tanh")
    mades = [s.network for s in posterior.steps if isinstance(s, tn.AutoregressiveStep)]
    assert [keras.activations.serialize(m.activation) for m in mades] == ["tanh"] * 2


# --- the command line ---------------------------------------------------------------------


def test_the_cli_trains_a_maf_and_its_record_rebuilds_it(tmp_path, capsys):
    from tfp_nice.cli import architectures, main

    out = tmp_path / "maf"
    assert main(["train", "--data", "moons", "--num-points", "300", "--flow", "maf", "--steps",
                 "2", "--hidden", "8", "--coupling", "spline", "--num-bins", "4", "--epochs",
                 "1", "--verbose", "0", "--out", str(out)]) == 0
    assert "training a MAF on moons" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["builder"] == {"builder": "maf", "kwargs": {
        "num_steps": 2, "hidden_units": [8], "transformer": "spline", "num_bins": 4,
        "tail_bound": 3.0, "actnorm": False, "prior": "normal", "context_shape": None,
        "learning_rate": 0.001, "num_levels": None, "seed": 0}}
    saved = keras.models.load_model(out / "model.keras")
    rebuilt, _ = architectures.model_from_record(metrics)
    rebuilt.set_weights(saved.get_weights())
    probe = tn.data.two_moons(5, seed=3)
    np.testing.assert_array_equal(rebuilt.log_prob(probe), saved.log_prob(probe))
    assert [type(s.transformer).__name__ for s in saved.steps] == ["Spline", "Spline"]
    assert saved.steps[0].transformer.num_bins == 4


@pytest.mark.parametrize("argv,message", [
    (["--flow", "maf", "--partition", "halves"], "--flow maf builds autoregressive steps .* "
                                                 "drop --partition"),
    (["--flow", "iaf", "--scales", "2"], "drop --scales"),
    (["--flow", "nice", "--steps", "3"], "--flow nice does not take --steps"),
    (["--flow", "multiscale", "--steps", "3"], "drop --steps"),
])
def test_the_cli_refuses_another_flows_options(argv, message, tmp_path, capsys):
    from tfp_nice.cli import main

    assert main(["train", "--data", "moons", *argv, "--out", str(tmp_path / "o")]) == 2
    assert re.search(message, capsys.readouterr().err)

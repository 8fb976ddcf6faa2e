"""Transformers: the elementwise maps of couplings, apart from the networks that
parameterise them.

References independent of the code under test: the derivative of each elementwise map
by autodiff (float64), the maps written in NumPy from their definitions, the coupling's
Jacobian determinant by autodiff, and `tfb.RealNVP` for the affine coupling.
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
from test_multiscale import jacobian_log_det
from user_transformer import SinhArcsinh

tfb = tfp.bijectors

TRANSFORMERS = {
    "additive": tn.Additive(),
    "affine": tn.Affine(),
    "affine_bounded": tn.Affine("bounded", bound=1.5),
    "affine_sigmoid": tn.Affine("sigmoid"),
    "spline": tn.Spline(num_bins=5, tail_bound=2.0),
    "user_sinh_arcsinh": SinhArcsinh(),
}


def _random(transformer, dtype, seed=0, n=7, d=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * 1.5
    params = rng.normal(size=(n, d, transformer.params_per_entry))
    return tf.constant(x, dtype), tf.constant(params, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("key", list(TRANSFORMERS))
def test_a_transformers_log_det_is_the_derivative_of_its_map(key, dtype):
    transformer = TRANSFORMERS[key]
    x, params = _random(transformer, dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, log_det = transformer.forward(x, params)
    # elementwise: d sum(y) / dx is the derivative of each entry's map
    derivative = tape.gradient(y, x)
    tol = 1e-10 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(log_det, np.log(np.abs(derivative)), atol=tol, rtol=tol)
    assert y.shape == x.shape and log_det.shape == x.shape and y.dtype == x.dtype
    back, inverse_log_det = transformer.inverse(tf.identity(y), params)
    np.testing.assert_allclose(back, x, atol=1e-9 if dtype == "float64" else 1e-4)
    np.testing.assert_allclose(inverse_log_det, -log_det, atol=tol * 10, rtol=tol * 10)


@pytest.mark.parametrize("key", [k for k in TRANSFORMERS if k != "affine_sigmoid"])
def test_zero_parameters_give_the_identity(key):
    transformer = TRANSFORMERS[key]
    x, params = _random(transformer, "float64")
    y, log_det = transformer.forward(x, tf.zeros_like(params))
    np.testing.assert_allclose(y, x, atol=1e-12)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-12)


def test_the_affine_scales_are_their_closed_forms():
    rng = np.random.default_rng(1)
    x, shift, raw = rng.normal(size=(3, 5, 4))
    params = np.stack([shift, raw], -1)
    sigmoid_s = np.log(1.0 / (1.0 + np.exp(-(raw + 2.0))))
    for transformer, s in [(tn.Affine(), raw), (tn.Affine("bounded", bound=0.5),
                                                 0.5 * np.tanh(raw / 0.5)),
                           (tn.Affine("sigmoid"), sigmoid_s)]:
        y, log_det = transformer.forward(tf.constant(x), tf.constant(params))
        np.testing.assert_allclose(y, x * np.exp(s) + shift, rtol=1e-12)
        np.testing.assert_allclose(log_det, s, rtol=1e-12)
    assert tn.Affine().affine and tn.Additive().constant_log_det
    assert not tn.Spline().affine and not tn.Spline().constant_log_det


def test_a_transformer_refuses_bad_options():
    with pytest.raises(ValueError, match="scale must be one of"):
        tn.Affine("softplus")
    with pytest.raises(ValueError, match="needs a finite bound > 0"):
        tn.Affine("bounded")
    with pytest.raises(ValueError, match="bound shapes scale='bounded'"):
        tn.Affine("sigmoid", bound=2.0)
    with pytest.raises(ValueError, match="num_bins must be an int >= 2"):
        tn.Spline(num_bins=1)

    class NoCount(tn.Transformer):
        params_per_entry = 0

    with pytest.raises(ValueError, match="params_per_entry must be an int >= 1"):
        tn.Coupling(lambda a: a, [True, False], NoCount())
    with pytest.raises(TypeError, match="must be a tfp_nice Transformer"):
        tn.Coupling(lambda a: a, [True, False], tfb.Exp())
    with pytest.raises(ValueError, match="transformer must be one of"):
        tn.Coupling(lambda a: a, [True, False], "quadratic")


# --- the coupling of any transformer -------------------------------------------------------


def _dense(n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    w = tf.constant(rng.normal(size=(n_in, n_out)) * 0.4)
    return lambda a: tf.tanh(a @ w)


@pytest.mark.parametrize("key", list(TRANSFORMERS))
def test_a_coupling_of_any_transformer_is_the_autodiff_change_of_variables(key):
    transformer = TRANSFORMERS[key]
    mask = tn.partition_mask("odd_even", (5,))
    p = transformer.params_per_entry
    bij = tn.Coupling(_dense(3, 2 * p, seed=2), mask, transformer)
    x = np.random.default_rng(3).normal(size=(4, 5))
    fldj = bij.forward_log_det_jacobian(tf.constant(x), event_ndims=1)
    np.testing.assert_allclose(fldj, jacobian_log_det(bij.forward, x), atol=1e-10)
    y = bij.forward(tf.constant(x))
    np.testing.assert_allclose(bij.inverse(tf.identity(y)), x, atol=1e-9)
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=1),
                               -fldj, atol=1e-10)
    np.testing.assert_array_equal(y.numpy()[:, mask], x[:, mask])  # part A untouched
    assert not bij._is_constant_jacobian  # the Jacobian matrix depends on x


def test_the_affine_transformers_coupling_is_tfps_real_nvp():
    mask = np.array([True, True, False, False, False])
    fn = _dense(2, 6, seed=4)

    def shift_and_log_scale(a, output_units, **kwargs):  # TFP's signature
        out = fn(a)
        return out[:, :3], out[:, 3:]

    x = tf.constant(np.random.default_rng(5).normal(size=(6, 5)))
    ours = tn.Coupling(lambda a: tf.stack(shift_and_log_scale(a, 3), -1), mask, tn.Affine())
    theirs = tfb.RealNVP(num_masked=2, shift_and_log_scale_fn=shift_and_log_scale)
    np.testing.assert_allclose(ours.forward(x), theirs.forward(x), rtol=1e-12)
    np.testing.assert_allclose(ours.forward_log_det_jacobian(x, 1),
                               theirs.forward_log_det_jacobian(x, 1), rtol=1e-12)


class _TwiceTheShift(tn.Affine):
    """An Affine whose subclass changes the map: `y = x exp(s) + 2 t`."""

    def forward(self, x, params):
        return super().forward(x, tf.stack([2.0 * params[..., 0], params[..., 1]], -1))

    def inverse(self, y, params):
        return super().inverse(y, tf.stack([2.0 * params[..., 0], params[..., 1]], -1))


@pytest.mark.parametrize("key", list(TRANSFORMERS) + ["affine_subclass"])
def test_parameters_given_apart_map_as_the_same_parameters_stacked(key):
    # A network giving one tensor per parameter reaches the transformer through
    # apply_parts (the built-ins skip the stacking); the result must be forward(x, params)
    # of the stacked parameters, and a subclass that changes forward keeps its change.
    transformer = TRANSFORMERS.get(key) or _TwiceTheShift()
    p = transformer.params_per_entry
    mask = tn.partition_mask("odd_even", (5,))
    fns = [_dense(3, 2, seed=10 + i) for i in range(p)]
    apart = tn.Coupling(lambda a: tuple(fn(a) for fn in fns), mask, transformer)
    stacked = tn.Coupling(lambda a: tf.stack([fn(a) for fn in fns], -1), mask, transformer)
    x = tf.constant(np.random.default_rng(6).normal(size=(4, 5)))
    for name in ("forward", "inverse"):
        np.testing.assert_allclose(getattr(apart, name)(x), getattr(stacked, name)(x),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(getattr(apart, f"{name}_log_det_jacobian")(x, 1),
                                   getattr(stacked, f"{name}_log_det_jacobian")(x, 1),
                                   rtol=1e-12, atol=1e-12)
    # By hand, from the definitions, for the affine ones.
    if key in ("affine", "affine_subclass"):
        a = x.numpy()[:, mask]
        shift, log_scale = (fn(tf.constant(a)).numpy() for fn in fns)
        if key == "affine_subclass":
            shift = 2.0 * shift
        want = x.numpy().copy()
        want[:, ~mask] = x.numpy()[:, ~mask] * np.exp(log_scale) + shift
        np.testing.assert_allclose(apart.forward(x), want, rtol=1e-12)


def test_an_affine_couplings_shift_and_log_scale_are_not_stacked_and_sliced():
    # Stacking (shift, log_scale) on a last axis and slicing them back cost an affine
    # coupling of 392 entries 2 ms a batch of 256, forward and backward (13% of an
    # affine_mnist epoch): the graph of a training step holds no such stack or slice.
    mask = tn.partition_mask("halves", (6,))
    bij = tn.AffineCoupling(tn.CouplingMLP((8,), 3, affine=True, name="net"), mask)

    @tf.function
    def loss_and_gradient(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(bij.inverse_log_det_jacobian(x, 1)) \
                + tf.reduce_sum(bij.inverse(x))
        return tape.gradient(loss, bij.trainable_variables)

    graph = loss_and_gradient.get_concrete_function(
        tf.TensorSpec((None, 6), tf.float32)).graph
    ops = [op for op in graph.get_operations()]
    for function in graph._functions.values():
        ops += list(function.graph.get_operations())
    stacked = [op.name for op in ops if op.type == "Pack" and op.outputs[0].shape.rank == 3]
    slice_grads = [op.name for op in ops  # the network's own split of its output aside
                   if op.type == "StridedSliceGrad" and not re.search(r"/net(_\d+)?/", op.name)]
    assert not stacked and not slice_grads, (stacked, slice_grads)


def test_a_constant_log_det_transformer_gives_its_constant_without_the_network():
    class DoubleShift(tn.Transformer):  # y = 2 x + p: a constant log-det of log 2
        params_per_entry = 1
        constant_log_det = True
        affine = True

        def forward(self, x, params):
            return 2.0 * x + params[..., 0], tf.fill(tf.shape(x), tf.math.log(2.0))

        def inverse(self, y, params):
            return (y - params[..., 0]) / 2.0, tf.fill(tf.shape(y), -tf.math.log(2.0))

    calls = []

    def network(a):
        calls.append(1)
        return a

    mask = tn.partition_mask("halves", (4,))
    first = tn.Coupling(network, mask, DoubleShift())
    block = tn.CouplingBlock([first, tn.Coupling(network, ~mask, DoubleShift())])
    x = tf.ones((3, 4))
    for bij, count in ((first, 2), (block, 4)):
        fldj = bij.forward_log_det_jacobian(x, event_ndims=1)
        np.testing.assert_allclose(fldj, count * np.log(2.0), rtol=1e-6)
    assert not calls  # the constant needed no network
    np.testing.assert_allclose(jacobian_log_det(block.forward, x.numpy()),
                               4 * np.log(2.0), rtol=1e-5)


def test_a_network_of_the_wrong_size_for_the_transformer_is_named():
    mask = tn.partition_mask("halves", (4,))
    bij = tn.Coupling(lambda a: tf.zeros((tf.shape(a)[0], 5)), mask, SinhArcsinh(),
                      name="skewed")
    with pytest.raises(ValueError, match=r"skewed: params_fn must return \[batch, 4\] or "
                                         r"\[batch, 2, 2\] \(2 raw values per transformed "
                                         r"entry for SinhArcsinh\(\)\), got shape \(3, 5\)"):
        bij.forward(tf.zeros((3, 4)))
    paired = tn.Coupling(lambda a: (a, a, a), mask, SinhArcsinh(), name="three")
    with pytest.raises(ValueError, match="three: params_fn returned 3 values; the "
                                         r"SinhArcsinh\(\) transformer takes 2 per entry"):
        paired.forward(tf.zeros((3, 4)))


# --- steps: transformer= ------------------------------------------------------------------


def test_a_step_takes_a_transformer_by_name_or_instance_and_coupling_keeps_working():
    mask = tn.partition_mask("halves", (4,))
    by_coupling = tn.CouplingStep((4,), mask, hidden_units=(8,), coupling="affine")
    by_name = tn.CouplingStep((4,), mask, hidden_units=(8,), transformer="affine")
    assert by_coupling.get_config()["coupling"] == by_name.get_config()["coupling"] == "affine"
    assert isinstance(by_name.bijector(), tn.AffineCoupling)
    spline = tn.CouplingStep((4,), mask, hidden_units=(8,), transformer=tn.Spline(num_bins=5))
    assert spline.num_bins == 5 and spline.network.output_units == 2 * 14
    assert isinstance(spline.bijector(), tn.SplineCoupling)
    glow = tn.CouplingStep((4,), mask, hidden_units=(8,), transformer=tn.Affine("sigmoid"))
    assert glow.network.output_units == 4 and not glow.network.affine  # raw, 2 per entry
    with pytest.raises(ValueError, match="give coupling or transformer, not both"):
        tn.CouplingStep((4,), mask, hidden_units=(8,), coupling="affine", transformer="affine")
    with pytest.raises(ValueError, match="num_bins and tail_bound shape a spline"):
        tn.CouplingStep((4,), mask, hidden_units=(8,), transformer=tn.Spline(), num_bins=4)
    with pytest.raises(ValueError, match="transformer must be one of"):
        tn.CouplingStep((4,), mask, hidden_units=(8,), transformer="cubic")


def _heavy_tailed(n, seed):
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = 2.0 * (rng.standard_t(3, size=n) + x1)
    return np.stack([x1, x2], 1).astype("float32")


SERVE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, x_file = sys.argv[1:3]
    sig = tf.saved_model.load(path).signatures
    x = tf.constant(np.load(x_file))
    out = sig["log_prob"](x=x)["log_prob"].numpy()
    print(json.dumps({"log_prob": out.tolist(), "tfp_nice": "tfp_nice" in sys.modules}))
""")


def test_a_users_transformer_trains_saves_loads_and_serves(tmp_path):
    keras.utils.set_random_seed(0)
    mask = tn.partition_mask("halves", (2,))
    steps = [tn.CouplingStep((2,), mask, hidden_units=(16,), transformer=SinhArcsinh(),
                             name="coupling_0"),
             tn.CouplingStep((2,), ~mask, hidden_units=(16,), transformer=SinhArcsinh(),
                             name="coupling_1")]
    model = tn.Flow(steps)
    # the exact change of variables, float64 twin by autodiff
    x = _heavy_tailed(2000, seed=0)
    model.compile(keras.optimizers.Adam(1e-2))
    before = -float(np.mean(model.log_prob(x)))
    model.fit(x, epochs=15, batch_size=200, verbose=0)
    after = -float(np.mean(model.log_prob(x)))
    assert after < before - 0.5, (before, after)
    probe = x[:5]
    z = model.encode(probe)
    log_det = jacobian_log_det(lambda t: model.encode(t), probe.astype("float32"))
    expected = -0.5 * np.sum(z.numpy() ** 2, 1) - np.log(2 * np.pi) + log_det
    np.testing.assert_allclose(model.log_prob(probe), expected, rtol=1e-4, atol=1e-4)
    config = steps[0].get_config()
    assert config["transformer"]["registered_name"] == "user>SinhArcsinh"
    model.save(tmp_path / "user.keras")
    loaded = keras.models.load_model(tmp_path / "user.keras")
    assert isinstance(loaded.steps[0].transformer, SinhArcsinh)
    np.testing.assert_allclose(loaded.log_prob(probe), model.log_prob(probe), rtol=1e-6)
    model.export(str(tmp_path / "served"))
    np.save(tmp_path / "x.npy", probe)
    (tmp_path / "serve.py").write_text(SERVE)
    done = subprocess.run([sys.executable, str(tmp_path / "serve.py"), str(tmp_path / "served"),
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert not served["tfp_nice"]
    np.testing.assert_allclose(served["log_prob"], model.log_prob(probe), rtol=1e-5, atol=1e-5)

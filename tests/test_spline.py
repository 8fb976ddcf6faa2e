"""Spline couplings: the rational-quadratic spline of Neural Spline Flows (Durkan et al.
2019), against the paper's formulas in NumPy, autodiff log-dets in float32 and float64, at
and beyond the interval's bounds, round trips, the inverse where rounding makes the
quadratic's discriminant negative, and the steps, models, files and command line that
offer it."""

import json
import math
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from helpers import TOL, half_precision_log_prob_tolerance, unit_roundoff
from test_flow import TF_ONLY, autodiff_log_prob
from test_multiscale import jacobian_log_det, randomize, uniform_images


# --- the paper's spline in NumPy (float64), written from the paper's equations ----------


def softplus(v):
    return np.log1p(np.exp(-np.abs(v))) + np.maximum(v, 0.0)


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def paper_spline(x, raw, num_bins, bound, minimum=1e-3):
    """One entry's `(g(x), log g'(x))`: eq. 4 (the rational quadratic in a bin) and
    eq. 5 (its derivative) of arXiv 1906.04032 over knots from the documented map of the
    raw values; the identity outside `[-bound, bound]`."""
    k = num_bins
    widths = 2 * bound * (minimum + (1 - k * minimum) * softmax(raw[:k]))
    heights = 2 * bound * (minimum + (1 - k * minimum) * softmax(raw[k:2 * k]))
    inner = minimum + softplus(raw[2 * k:] + math.log(math.expm1(1 - minimum)))
    slopes = np.concatenate([[1.0], inner, [1.0]])
    xk = -bound + np.concatenate([[0.0], np.cumsum(widths)])
    yk = -bound + np.concatenate([[0.0], np.cumsum(heights)])
    if x <= -bound or x >= bound:
        return x, 0.0
    b = min(int(np.searchsorted(xk, x, side="right")) - 1, k - 1)
    xi = (x - xk[b]) / widths[b]
    s = heights[b] / widths[b]
    d0, d1 = slopes[b], slopes[b + 1]
    denominator = s + (d1 + d0 - 2 * s) * xi * (1 - xi)
    y = yk[b] + heights[b] * (s * xi ** 2 + d0 * xi * (1 - xi)) / denominator
    derivative = s ** 2 * (d1 * xi ** 2 + 2 * s * xi * (1 - xi) + d0 * (1 - xi) ** 2)
    return y, math.log(derivative / denominator ** 2)


class RawParameters(keras.layers.Layer):
    """A dense network of part A to every raw spline parameter of part B, random weights of
    spread `scale` (a fresh coupling network is zero: the identity)."""

    def __init__(self, n_a, n_out, scale, seed, dtype):
        super().__init__(dtype=dtype)
        rng = np.random.default_rng(seed)
        self.w = tf.constant(rng.normal(scale=scale / math.sqrt(n_a), size=(n_a, n_out)),
                             dtype)
        self.b = tf.constant(rng.normal(scale=scale, size=(n_out,)), dtype)

    def call(self, x_a):
        return tf.tanh(x_a) @ self.w + self.b


def edge_points(n, d, bound, dtype, seed):
    """Rows mixing ordinary values with the interval's bounds, values a rounding step inside
    or outside them, and values far beyond them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.6 * bound, size=(n, d))
    tiny = 4 * float(np.finfo(np.dtype(dtype)).eps) * bound
    special = np.array([-bound, bound, bound - tiny, -bound + tiny, bound + tiny,
                        -bound - tiny, 3 * bound, -10 * bound, 0.0])
    x[:, d // 2:] = np.where(rng.uniform(size=(n, d - d // 2)) < 0.5,
                             rng.choice(special, size=(n, d - d // 2)), x[:, d // 2:])
    return x.astype(dtype)


@pytest.mark.parametrize("num_bins,bound", [(8, 3.0), (3, 1.5)])
def test_the_coupling_is_the_papers_spline_of_each_transformed_entry(num_bins, bound):
    mask = tn.partition_mask("halves", (6,))
    p = tn.spline_parameter_count(num_bins)
    assert p == 3 * num_bins - 1
    net = RawParameters(3, 3 * p, scale=1.5, seed=3, dtype="float64")
    coupling = tn.SplineCoupling(net, mask, num_bins=num_bins, tail_bound=bound)
    x = edge_points(40, 6, bound, "float64", seed=4)
    y = coupling.forward(x).numpy()
    log_det = coupling.forward_log_det_jacobian(x, event_ndims=1).numpy()
    raw = net(x[:, :3]).numpy().reshape(40, 3, p)  # each entry's values side by side
    expected_y, expected_ld = x.copy(), np.zeros(40)
    for i in range(40):
        for j in range(3):
            value, ld = paper_spline(x[i, 3 + j], raw[i, j], num_bins, bound)
            expected_y[i, 3 + j] = value
            expected_ld[i] += ld
    np.testing.assert_allclose(y, expected_y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(log_det, expected_ld, rtol=0, atol=1e-10)
    assert np.abs(y - x).max() > 0.1 and np.abs(log_det).max() > 0.1  # not the identity
    beyond = np.abs(x[:, 3:]) > bound + 1e-9  # exactly the identity there
    assert beyond.any() and np.array_equal(y[:, 3:][beyond], x[:, 3:][beyond])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_one_pass_spline_is_tfps_rational_quadratic_spline(dtype):
    from tfp_nice.bijectors.spline_coupling import rational_quadratic_spline

    rng = np.random.default_rng(21)
    raw = tf.constant(rng.normal(scale=1.0, size=(500, 3, tn.spline_parameter_count(6))),
                      dtype)
    coupling = tn.SplineCoupling(lambda x_a: raw, tn.partition_mask("halves", (6,)),
                                 num_bins=6, tail_bound=2.0)
    widths, heights, slopes = coupling.spline_parameters(raw)
    reference = tfp.bijectors.RationalQuadraticSpline(widths, heights, slopes, range_min=-2.0)
    x = tf.constant(edge_points(500, 6, 2.0, dtype, seed=22)[:, 3:])
    y, log_det = rational_quadratic_spline(x, widths, heights, slopes, 2.0)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, reference.forward(tf.identity(x)), rtol=0, atol=tol)
    expected = reference.forward_log_det_jacobian(tf.identity(x), event_ndims=0).numpy()
    # TFP's last knot is -B + sum(widths), ours exactly B: in float32 the two differ by a
    # rounding, which moves the log-derivative of a steep last bin right at the bound by
    # however much that bin amplifies it (0.7e-3 seen with oneDNN off): compared away from
    # the bounds in float32, everywhere in float64
    away = (np.abs(np.abs(x.numpy()) - 2.0) > 1e-5 if dtype == "float32"
            else np.ones(x.shape, bool))
    assert away.mean() > 0.5  # the rest: the bounds and a rounding step either side
    np.testing.assert_allclose(log_det.numpy()[away], expected[away], rtol=0, atol=10 * tol)
    back, back_log_det = rational_quadratic_spline(y, widths, heights, slopes, 2.0,
                                                   inverse=True)
    np.testing.assert_allclose(back, reference.inverse(tf.identity(y)), rtol=0,
                               atol=100 * tol)
    np.testing.assert_allclose(back_log_det, log_det, rtol=0, atol=100 * tol)
    assert np.abs(y - x).max() > 0.1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["dense", "image"])
def test_log_dets_match_autodiff_and_round_trips_hold_at_and_beyond_the_bounds(dtype, layout):
    bound, num_bins = 2.5, 6
    p = tn.spline_parameter_count(num_bins)
    if layout == "dense":
        shape, mask = (6,), tn.partition_mask("odd_even", (6,))
        net = RawParameters(3, 3 * p, scale=0.5, seed=7, dtype=dtype)
        x = edge_points(64, 6, bound, dtype, seed=8)
    else:  # a channel mask: the network sees an image and returns c_B * P channels
        shape, mask = (3, 3, 4), tn.partition_mask("channel", (3, 3, 4))
        conv = keras.layers.Conv2D(2 * p, 3, padding="same", dtype=dtype,
                                   kernel_initializer=keras.initializers.RandomNormal(
                                       stddev=0.15, seed=9),
                                   bias_initializer=keras.initializers.RandomNormal(
                                       stddev=0.3, seed=10))
        net = keras.Sequential([keras.layers.Activation("tanh", dtype=dtype), conv])
        net.build((None, 3, 3, 2))
        x = edge_points(64, 36, bound, dtype, seed=8).reshape((64,) + shape)
    coupling = tn.SplineCoupling(net, mask, num_bins=num_bins, tail_bound=bound)
    ndims = len(shape)
    tol = TOL[tf.as_dtype(dtype)]
    fldj = coupling.forward_log_det_jacobian(tf.constant(x), event_ndims=ndims)
    np.testing.assert_allclose(fldj, jacobian_log_det(coupling.forward, x),
                               rtol=0, atol=tol["log_det"])
    y = coupling.forward(tf.constant(x))
    ildj = coupling.inverse_log_det_jacobian(tf.identity(y), event_ndims=ndims)
    np.testing.assert_allclose(ildj, jacobian_log_det(coupling.inverse, y.numpy()),
                               rtol=0, atol=tol["log_det"])
    np.testing.assert_allclose(ildj, -fldj, rtol=0, atol=tol["log_det"])
    assert np.abs(fldj).max() > 0.05
    # both round trips, fresh tensors (not TFP's cache of the forward pass)
    np.testing.assert_allclose(coupling.inverse(tf.identity(y)), x, rtol=0,
                               atol=tol["round_trip"] * 10 * bound)
    z = tf.constant(edge_points(64, math.prod(shape), bound, dtype, seed=11).reshape(x.shape))
    np.testing.assert_allclose(coupling.forward(coupling.inverse(z)), z, rtol=0,
                               atol=tol["round_trip"] * 10 * bound)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_are_finite_at_and_beyond_the_bounds(dtype):
    bound = 3.0
    mask = tn.partition_mask("halves", (4,))
    net = tn.CouplingMLP((8,), 2 * tn.spline_parameter_count(8), dtype=dtype)
    net.build((None, 2))
    rng = np.random.default_rng(12)
    for w in net.weights:
        w.assign(rng.normal(scale=0.5, size=w.shape))
    coupling = tn.SplineCoupling(net, mask, tail_bound=bound)
    tiny = 4 * float(np.finfo(np.dtype(dtype)).eps) * bound
    edges = [-bound, bound, bound - tiny, -bound + tiny, bound + tiny, -bound - tiny,
             10 * bound, -10 * bound, 0.0, 1e30, -1e30]
    # each edge value under 32 conditioning halves: 32 different splines per edge
    parts = np.random.default_rng(13).normal(size=(32, 2))
    x = tf.constant([[a, b, e, -e] for e in edges for a, b in parts], dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        terms = [coupling.forward(x), coupling.forward_log_det_jacobian(x, event_ndims=1),
                 coupling.inverse(tf.identity(x)),
                 coupling.inverse_log_det_jacobian(tf.identity(x), event_ndims=1)]
    for term in terms:
        assert np.isfinite(term.numpy()).all()
        for grad in tape.gradient(term, [x] + net.trainable_weights):
            assert grad is not None and np.isfinite(grad.numpy()).all()
    # beyond the bounds (edges 6 and 7): the identity, slope 1, log-det 0
    far = slice(6 * 32, 8 * 32)
    np.testing.assert_array_equal(terms[0].numpy()[far], x.numpy()[far])
    np.testing.assert_array_equal(terms[1].numpy()[far], 0.0)
    dy_dx = tape.batch_jacobian(terms[0], x).numpy()
    np.testing.assert_array_equal(dy_dx[far, 2:, 2:], np.broadcast_to(np.eye(2), (64, 2, 2)))


@pytest.mark.parametrize("which", ["one pass (the coupling's)", "spline(raw), TFP's bijector"])
def test_the_inverse_stays_finite_where_rounding_makes_the_discriminant_negative(which):
    # float32 values at and a rounding step beside the knots of steep splines: here TFP's
    # own inverse takes the square root of a slightly negative discriminant (NaN), or
    # finds a root a rounding error outside its bin.
    from tfp_nice.bijectors.spline_coupling import rational_quadratic_spline

    rng = np.random.default_rng(1)
    n, num_bins, bound = 4000, 8, 3.0
    raw = tf.constant(rng.normal(scale=3.0, size=(n, 1, tn.spline_parameter_count(8))),
                      tf.float32)
    coupling = tn.SplineCoupling(lambda x_a: raw, tn.partition_mask("halves", (2,)))
    spline = coupling.spline(raw)
    heights, widths = spline.bin_heights.numpy()[:, 0], spline.bin_widths.numpy()[:, 0]
    knots_y = -bound + np.concatenate([np.zeros((n, 1)), np.cumsum(heights, -1)], -1)
    knots_x = -bound + np.concatenate([np.zeros((n, 1)), np.cumsum(widths, -1)], -1)
    pick = rng.integers(1, num_bins, n)
    y = knots_y[np.arange(n), pick] * (1 + rng.choice([0, 1, -1, 2, -2], size=n) * 6e-8)
    y = y.astype("float32")[:, None]
    if which.startswith("one pass"):
        parameters = coupling.spline_parameters(raw)

        def forward(x):
            return rational_quadratic_spline(tf.constant(x), *parameters, bound)

        ours = rational_quadratic_spline(tf.constant(y), *parameters, bound, inverse=True)
        ours = ours[0].numpy()
    else:
        def forward(x):
            x = tf.constant(x)
            return spline.forward(x), spline.forward_log_det_jacobian(x, 0)

        ours = spline.inverse(tf.constant(y)).numpy()
    assert np.isfinite(ours).all()
    # each value lands in the bin its y lies in: x_k <= x <= x_k+1, up to the knots' rounding
    k = np.array([np.searchsorted(knots_y[i, :-1], y[i, 0], side="right") - 1
                  for i in range(n)])
    rows = np.arange(n)
    slack = 4 * unit_roundoff(tf.float32) * bound
    assert (ours[:, 0] >= knots_x[rows, k] - slack).all()
    assert (ours[:, 0] <= knots_x[rows, k + 1] + slack).all()
    # where TFP's own inverse is NaN, ours maps back to y to float32's rounding
    naive = tfp.bijectors.RationalQuadraticSpline(
        spline.bin_widths, spline.bin_heights, spline.knot_slopes,
        range_min=-bound).inverse(tf.constant(y)).numpy()
    failed = ~np.isfinite(naive)
    print("TFP's inverse is NaN at", int(failed.sum()), "of", n)
    back, log_slope = (t.numpy() for t in forward(ours))
    slope = np.exp(log_slope)
    rounding = 8 * unit_roundoff(tf.float32) * (np.abs(y) + bound) * (1 + slope)
    assert (np.abs(back - y)[failed] <= rounding[failed]).all()


def test_a_fresh_spline_step_is_the_identity_dense_and_convolutional():
    x = np.random.default_rng(2).normal(size=(8, 6)).astype("float32") * 2
    step = tn.CouplingStep((6,), tn.partition_mask("halves", (6,)), hidden_units=(8,),
                           coupling="spline", num_bins=5, tail_bound=2.0)
    assert step.network.output_units == 3 * 14 and step.network_output_shape == (42,)
    assert not step.constant_log_det
    np.testing.assert_allclose(step.bijector().forward(x), x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(step.bijector().forward_log_det_jacobian(x, 1), 0, atol=1e-5)
    shape = (4, 4, 2)
    conv = tn.CouplingStep(shape, tn.partition_mask("channel", shape), hidden_channels=(4,),
                           coupling="spline", num_bins=4)
    assert conv.network.output_channels == 11 and conv.network_output_shape == (4, 4, 11)
    images = np.random.default_rng(3).normal(size=(8,) + shape).astype("float32") * 2
    np.testing.assert_allclose(conv.bijector().forward(images), images, rtol=0, atol=1e-6)


def test_spline_flows_match_the_change_of_variables_by_autodiff():
    keras.utils.set_random_seed(3)
    x = np.random.default_rng(3).normal(size=(16, 6))
    nice = tn.NICE((6,), num_couplings=3, hidden_units=(8,), coupling="spline",
                   prior="normal", rescaling=False, num_bins=4, tail_bound=2.0,
                   dtype="float64")
    randomize(nice.steps, seed=4, scale=0.4)
    np.testing.assert_allclose(nice.log_prob(x), autodiff_log_prob(nice, x), rtol=0,
                               atol=1e-9)
    shape = (4, 4, 2)
    steps = tn.multiscale_steps(shape, num_scales=2, steps_per_scale=2, hidden_channels=(4,),
                                coupling="spline", num_bins=4, dtype="float64")
    flow = tn.Flow(steps, prior="normal", dtype="float64")
    randomize(flow.steps, seed=5, scale=0.2)
    images = uniform_images(8, shape, seed=6)
    np.testing.assert_allclose(flow.log_prob(images), autodiff_log_prob(flow, images),
                               rtol=0, atol=1e-9)


def bimodal_pairs(n, seed):
    """x1 ~ N(0, 1); given x1, x2 is one of two modes, x1 / 2 +- 1.5, each of sd 0.25."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = x1 / 2 + rng.choice([-1.5, 1.5], size=n) + 0.25 * rng.normal(size=n)
    return np.stack([x1, x2], 1).astype("float32")


def bimodal_log_prob(x):
    def normal(v, m, s):
        return -0.5 * ((v - m) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
    mode = np.logaddexp(normal(x[:, 1], x[:, 0] / 2 - 1.5, 0.25),
                        normal(x[:, 1], x[:, 0] / 2 + 1.5, 0.25)) - math.log(2)
    return normal(x[:, 0], 0.0, 1.0) + mode


def test_one_spline_coupling_splits_a_mode_that_an_affine_one_cannot():
    # One coupling, x2 given x1, over a normal prior: an affine map keeps x2 | x1 normal;
    # a monotone spline can make it bimodal, and its fit reaches the closed form.
    train, test = bimodal_pairs(8000, seed=1), bimodal_pairs(2000, seed=2)
    mask = np.array([True, False])
    gaps = {}
    for kind, options in (("spline", {"num_bins": 8, "tail_bound": 4.0}), ("affine", {})):
        keras.utils.set_random_seed(0)
        step = tn.CouplingStep((2,), mask, hidden_units=(32, 32), coupling=kind, **options)
        flow = tn.Flow([step], prior="normal")
        flow.compile(keras.optimizers.Adam(3e-3))
        flow.fit(train, epochs=25, batch_size=128, verbose=0)
        gaps[kind] = float(np.mean(bimodal_log_prob(test) - flow.log_prob(test).numpy()))
    print("KL estimates (nats):", gaps)
    assert gaps["spline"] < 0.08
    assert gaps["affine"] > 0.4  # one normal per x1 where the truth has two modes


def test_spline_models_keep_their_bins_in_keras_files_and_serve_without_tfp(tmp_path):
    keras.utils.set_random_seed(4)
    x = bimodal_pairs(512, seed=3)
    model = tn.NICE((2,), num_couplings=2, hidden_units=(16,), coupling="spline",
                    prior="normal", num_bins=5, tail_bound=4.0)
    model.compile(keras.optimizers.Adam(3e-3))
    model.fit(x, epochs=3, batch_size=64, verbose=0)
    config = model.get_config()
    assert (config["num_bins"], config["tail_bound"]) == (5, 4.0)
    assert "num_bins" not in tn.NICE((2,), hidden_units=(4,)).get_config()  # others as before
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [s.num_bins for s in loaded.steps if isinstance(s, tn.CouplingStep)] == [5, 5]
    np.testing.assert_array_equal(loaded.log_prob(x[:20]), model.log_prob(x[:20]))
    model.export(tmp_path / "served")
    probe = x[:20]
    np.save(tmp_path / "x.npy", probe)
    (tmp_path / "serve.py").write_text(TF_ONLY)
    done = subprocess.run([sys.executable, str(tmp_path / "serve.py"), str(tmp_path / "served"),
                           str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["modules"] == []
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["log_prob"], model.log_prob(probe), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["z"], model.encode(probe), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["decoded"], probe, rtol=0, atol=1e-4)
    assert np.abs(out["z"] - probe).max() > 0.01  # trained away from the identity


def test_spline_couplings_under_mixed_precision_give_float32_densities():
    x = bimodal_pairs(64, seed=5)
    model = tn.NICE((2,), num_couplings=2, hidden_units=(16,), coupling="spline",
                    prior="normal", dtype="mixed_bfloat16")
    randomize(model.steps, seed=6, scale=0.3)
    twin = tn.NICE((2,), num_couplings=2, hidden_units=(16,), coupling="spline",
                   prior="normal")
    twin.set_weights(model.get_weights())
    got = model.log_prob(x)
    assert got.dtype == tf.float32 and np.isfinite(got.numpy()).all()
    # the networks compute in bfloat16: the densities move by its rounding, not more (the
    # tolerance derived from the dtype and the networks' sums, per example)
    moved = np.abs(got.numpy() - twin.log_prob(x).numpy())
    np.testing.assert_array_less(moved, half_precision_log_prob_tolerance(model, x))
    assert moved.max() > 0  # it did round


@pytest.mark.parametrize("make,message", [
    (lambda: tn.SplineCoupling(lambda a: tf.zeros((a.shape[0], 7)),
                               tn.partition_mask("halves", (4,))).forward(np.zeros((3, 4),
                                                                                   "float32")),
     r"must return \[batch, 46\] or \[batch, 2, 23\].*23 raw values.*num_bins=8.*\(3, 7\)"),
    (lambda: tn.SplineCoupling(lambda a: a, [True, False], num_bins=1), "num_bins must be"),
    (lambda: tn.SplineCoupling(lambda a: a, [True, False], num_bins=2.5), "num_bins must be"),
    (lambda: tn.SplineCoupling(lambda a: a, [True, False], num_bins=True), "num_bins must be"),
    (lambda: tn.SplineCoupling(lambda a: a, [True, False], tail_bound=0), "tail_bound must be"),
    (lambda: tn.SplineCoupling(lambda a: a, [True, False], tail_bound=float("nan")),
     "tail_bound must be"),
    (lambda: tn.SplineCoupling(lambda a: a, [True, False], tail_bound=float("inf")),
     "tail_bound must be"),
    (lambda: tn.SplineCoupling(lambda a: a, [True, False], num_bins=10, min_bin_width=0.1),
     r"min_bin_width must lie in \[0, 1 / num_bins\)"),
    (lambda: tn.SplineCoupling(lambda a: a, [True, False], min_slope=1.0), "min_slope"),
    (lambda: tn.CouplingStep((4,), tn.partition_mask("halves", (4,)), hidden_units=(4,),
                             num_bins=4), "num_bins and tail_bound shape a spline coupling"),
    (lambda: tn.CouplingStep((4,), tn.partition_mask("halves", (4,)), hidden_units=(4,),
                             coupling="spline", scale="sigmoid"), "a spline coupling has none"),
    (lambda: tn.CouplingStep((4,), tn.partition_mask("halves", (4,)), hidden_units=(4,),
                             coupling="spline", tail_bound=-1.0), "tail_bound must be"),
    (lambda: tn.NICE((4,), hidden_units=(4,), tail_bound=2.0),
     "num_bins and tail_bound shape a spline coupling"),
])
def test_bad_spline_settings_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_command_line_trains_a_spline_nice_and_refuses_bins_without_one(tmp_path):
    from test_cli import run_cli

    done = run_cli("train", "--out", "run", "--epochs", "2", "--coupling", "spline",
                   "--num-bins", "4", "--tail-bound", "2.5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    kwargs = metrics["builder"]["kwargs"]
    assert (kwargs["coupling"], kwargs["num_bins"], kwargs["tail_bound"]) == ("spline", 4, 2.5)
    loaded = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert {(s.num_bins, s.tail_bound) for s in loaded.steps
            if isinstance(s, tn.CouplingStep)} == {(4, 2.5)}
    for args, message in ((("--num-bins", "4"), "--num-bins shape spline couplings"),
                          (("--preset", "nice_mnist", "--tail-bound", "2"),
                           "drop --tail-bound")):
        done = run_cli("train", "--out", "bad", "--epochs", "1", *args, cwd=tmp_path)
        assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]
        assert not (tmp_path / "bad").exists()

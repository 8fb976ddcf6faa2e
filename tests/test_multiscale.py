"""Multi-scale convolutional image flows: Glow's steps, the factor-out, `multiscale_steps`.

References independent of the code under test: TFP's `tfb.ScaleMatvecLU` applied at
every pixel for the 1x1 convolution, `tf.nn.space_to_depth` for the squeeze, autodiff
Jacobians with `slogdet` in float64, and a whole two-scale flow's `log_prob` computed
by hand from its steps' weights (the change of variables written out step by step).
"""

import math
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from test_export import _cli, _parse_cli_array
from test_flow import TF_ONLY, autodiff_log_prob
from tfp_nice.steps import walk

tfb = tfp.bijectors


def randomize(steps, seed, scale=0.2):
    """Every trainable weight of `steps` (and the steps they hold) drawn at random, so that
    no step is the identity it starts as."""
    rng = np.random.default_rng(seed)
    for step in walk(steps):
        for w in step.trainable_weights:
            w.assign(rng.normal(scale=scale, size=w.shape))


def uniform_images(n, shape, seed=0):
    return np.random.default_rng(seed).uniform(0.02, 0.98, size=(n,) + tuple(shape))


def jacobian_log_det(fn, x):
    """log|det| of the Jacobian of `fn` at each example of `x` (input and output of the same
    size, any shapes), by autodiff."""
    x = tf.constant(x)
    n = x.shape[0]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reshape(fn(x), (n, -1))
    jac = tape.batch_jacobian(y, x).numpy().reshape(n, y.shape[1], -1)
    return np.linalg.slogdet(jac)[1]


# --- the 1x1 convolution ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 4, 2), (8, 8, 3), (2, 3, 5)])
def test_conv1x1_is_tfps_scale_matvec_lu_at_every_pixel(shape):
    step = tn.Conv1x1Step(shape, seed=4, dtype="float64")
    randomize([step], seed=1)
    bij = step.bijector()
    x = np.random.default_rng(0).normal(size=(3,) + shape)
    reference = tfb.ScaleMatvecLU(bij.lower_upper(), tf.cast(step.permutation, tf.int32))
    np.testing.assert_allclose(bij.forward(x), reference.forward(x), atol=1e-12)
    np.testing.assert_allclose(bij.inverse(x), reference.inverse(x), atol=1e-12)
    # TFP gives one value for its constant Jacobian: one per pixel, broadcast
    per_pixel = tf.broadcast_to(reference.forward_log_det_jacobian(x, event_ndims=1),
                                (3,) + shape[:2])
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=3),
                               tf.reduce_sum(per_pixel, axis=[1, 2]), atol=1e-10)
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(x, event_ndims=3),
                               -tf.reduce_sum(per_pixel, axis=[1, 2]), atol=1e-10)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=3),
                               jacobian_log_det(bij.forward, x), atol=1e-10)
    assert bij.is_constant_jacobian
    # c^2 weights, whatever the image's size
    assert step.lower.shape == (shape[-1], shape[-1])


def test_conv1x1_refuses_other_events():
    with pytest.raises(ValueError, match="1x1 convolution needs an \\(h, w, c\\) event"):
        tn.Conv1x1Step((6,))
    bij = tn.Conv1x1Step((2, 2, 3)).bijector()
    with pytest.raises(ValueError, match="expects x with an \\(h, w, 3\\) event"):
        bij.forward(np.zeros((1, 2, 2, 4), np.float32))


# --- the squeeze and the scaling steps ----------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 4, 2), (8, 8, 1), (8, 8, 3), (4, 6, 2)])
def test_squeeze_is_tf_space_to_depth(shape):
    x = np.random.default_rng(0).normal(size=(2,) + shape).astype(np.float32)
    bij = tn.SqueezeStep(shape).bijector()
    np.testing.assert_array_equal(bij.forward(x), tf.nn.space_to_depth(x, 2))
    y = tf.nn.space_to_depth(x, 2)
    np.testing.assert_array_equal(bij.inverse(y), tf.nn.depth_to_space(y, 2))


@pytest.mark.parametrize("kind", ["actnorm", "rescaling"])
@pytest.mark.parametrize("shape", [(4, 4, 2), (8, 8, 1), (8, 8, 3)])
def test_per_channel_scaling_steps_match_autodiff_and_start_per_channel(kind, shape):
    make = tn.ActNormStep if kind == "actnorm" else (
        lambda s, **kw: tn.RescalingStep(s, init="data", target_std=0.5, **kw))
    step = make(shape, per_channel=True, dtype="float64")
    assert step.log_scale.shape == (shape[-1],)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64,) + shape) * rng.uniform(0.5, 3, size=shape[-1]) + 2.0
    h = step.adapt(x).numpy()
    spread = h.std(axis=(0, 1, 2))
    np.testing.assert_allclose(spread, 1.0 if kind == "actnorm" else 0.5, rtol=1e-6)
    if kind == "actnorm":
        np.testing.assert_allclose(h.mean(axis=(0, 1, 2)), 0.0, atol=1e-9)
    bij = step.bijector()
    probe = x[:3]
    np.testing.assert_allclose(bij.forward_log_det_jacobian(probe, event_ndims=3),
                               jacobian_log_det(bij.forward, probe), atol=1e-10)


def test_per_channel_needs_an_image_event():
    with pytest.raises(ValueError, match="per_channel needs an \\(h, w, c\\) event"):
        tn.ActNormStep((6,), per_channel=True)
    with pytest.raises(ValueError, match="target_std must be a float or have shape \\(3,\\)"):
        tn.RescalingStep((2, 2, 3), per_channel=True, target_std=[1.0, 2.0])


# --- convolutional couplings --------------------------------------------------------------


@pytest.mark.parametrize("coupling,scale", [("additive", "bounded"), ("affine", "bounded"),
                                            ("affine", "sigmoid")])
@pytest.mark.parametrize("shape", [(4, 4, 2), (8, 8, 3)])
def test_conv_coupling_step_matches_autodiff_and_round_trips(coupling, scale, shape):
    mask = tn.partition_mask("channel", shape)
    step = tn.CouplingStep(shape, mask, coupling=coupling, scale=scale, hidden_channels=(8, 8),
                           dtype="float64")
    assert isinstance(step.network, tn.CouplingConvNet)
    fresh = step.bijector()
    x = np.random.default_rng(1).normal(size=(3,) + shape)
    if scale == "bounded":  # the zero-initialised last layer: the identity
        np.testing.assert_array_equal(fresh.forward(x), x)
    else:  # Glow's sigmoid(raw + 2): part B scaled by sigmoid(2) at the start
        c_a = shape[-1] // 2
        np.testing.assert_allclose(fresh.forward(x)[..., c_a:],
                                   x[..., c_a:] / (1 + math.exp(-2.0)), rtol=1e-12)
    randomize([step], seed=2)
    bij = step.bijector()
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=3),
                               jacobian_log_det(bij.forward, x), atol=1e-9)
    y = bij.forward(x)
    np.testing.assert_allclose(bij.inverse(tf.identity(y)), x, atol=1e-12)
    assert step.constant_log_det == (coupling == "additive")


def test_conv_coupling_step_saves_its_sizes_and_weights(tmp_path):
    shape = (4, 4, 2)
    steps = [tn.CouplingStep(shape, tn.partition_mask("channel", shape), coupling="affine",
                             scale="sigmoid", hidden_channels=(4,), name="c")]
    model = tn.Flow(steps)
    randomize(model.steps, seed=3)
    path = tmp_path / "m.keras"
    model.save(path)
    config = model.get_config()["steps"][0]["config"]
    assert config["hidden_channels"] == [4] and config["scale"] == "sigmoid"
    assert "network" not in config
    x = uniform_images(4, shape)
    np.testing.assert_array_equal(keras.models.load_model(path).log_prob(x), model.log_prob(x))


# --- the factor-out -----------------------------------------------------------------------


@pytest.mark.parametrize("learned_prior", [False, True])
@pytest.mark.parametrize("shape", [(4, 4, 2), (4, 4, 4), (2, 2, 3)])
def test_factor_out_step_matches_autodiff_and_the_split_by_hand(shape, learned_prior):
    h, w, c = shape
    keep = c // 2
    kept = (h, w, keep)
    inner = [tn.ActNormStep(kept, dtype="float64", name="a"),
             tn.RescalingStep(kept, dtype="float64", name="r")]
    step = tn.FactorOutStep(shape, inner, learned_prior=learned_prior, dtype="float64",
                            name="fo")
    assert step.output_event_shape == (h * w * c,)
    randomize([step], seed=4)
    bij = step.bijector()
    x = np.random.default_rng(2).normal(size=(3,) + shape)
    y = bij.forward(x).numpy()
    # by hand: the exits (after the learned prior's standardisation), then the kept
    # channels through ActNorm and the rescaling
    exits = x[..., keep:]
    log_det = np.zeros(3)
    if learned_prior:
        shift, log_scale = (t.numpy() for t in step.prior_coupling.network(x[..., :keep]))
        exits = exits * np.exp(log_scale) + shift
        log_det += log_scale.reshape(3, -1).sum(1)
    a, r = inner
    go = (x[..., :keep] + a.shift.numpy()) * np.exp(a.log_scale.numpy())
    go = go * np.exp(r.log_scale.numpy())
    log_det += a.log_scale.numpy().sum() + r.log_scale.numpy().sum()
    np.testing.assert_allclose(y, np.concatenate([exits.reshape(3, -1), go.reshape(3, -1)], 1),
                               atol=1e-12)
    fldj = bij.forward_log_det_jacobian(x, event_ndims=3).numpy()
    np.testing.assert_allclose(fldj, log_det, atol=1e-10)
    np.testing.assert_allclose(fldj, jacobian_log_det(bij.forward, x), atol=1e-10)
    np.testing.assert_allclose(bij.inverse(tf.identity(y)), x, atol=1e-12)
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=1),
                               -log_det, atol=1e-10)
    assert step.constant_log_det == (not learned_prior)
    assert step.affine == (not learned_prior) and bij.is_constant_jacobian == step.affine


def test_factor_out_step_refuses_what_does_not_fit():
    kept = (2, 2, 1)
    with pytest.raises(ValueError, match="needs an \\(h, w, c\\) event with c >= 2"):
        tn.FactorOutStep((2, 2, 1), [tn.ActNormStep(kept)])
    with pytest.raises(ValueError, match="keep must be in \\[1, 2\\)"):
        tn.FactorOutStep((2, 2, 2), [tn.ActNormStep(kept)], keep=2)
    with pytest.raises(ValueError, match="the kept channels have shape \\(2, 2, 1\\), but the "
                                         "first step, 'a', takes events of shape \\(2, 2, 2\\)"):
        tn.FactorOutStep((2, 2, 2), [tn.ActNormStep((2, 2, 2), name="a")])
    with pytest.raises(ValueError, match="at least one step"):
        tn.FactorOutStep((2, 2, 2), [])
    with pytest.raises(ValueError, match="'a' repeat"):  # names are unique across the scales
        tn.Flow([tn.ActNormStep((2, 2, 2), name="a"),
                 tn.FactorOutStep((2, 2, 2), [tn.ActNormStep(kept, name="a")], name="f")])
    with pytest.raises(ValueError, match="keeps float32 weights, this step float64"):
        tn.FactorOutStep((2, 2, 2), [tn.ActNormStep(kept)], dtype="float64")


# --- a whole two-scale flow -----------------------------------------------------------------


def hand_log_prob(steps, x):
    """log p(x) of a flow of these steps under a standard normal prior, by the change of
    variables written out here from each step's weights (not its bijector)."""
    h, log_det = np.asarray(x, np.float64), np.zeros(len(x))
    n = len(x)

    def run(steps, h, log_det):
        for step in steps:
            if isinstance(step, tn.LogitStep):
                a = step.alpha
                p = a + (1 - 2 * a) * h
                log_det = log_det + np.sum(np.log(1 - 2 * a) - np.log(p) - np.log1p(-p),
                                           axis=(1, 2, 3))
                h = np.log(p) - np.log1p(-p)
            elif isinstance(step, tn.SqueezeStep):
                h = tf.nn.space_to_depth(h, 2).numpy()
            elif isinstance(step, tn.ActNormStep):
                s = step.log_scale.numpy()
                h = (h + step.shift.numpy()) * np.exp(s)
                log_det = log_det + np.broadcast_to(s, h.shape[1:]).sum()
            elif isinstance(step, tn.RescalingStep):
                s = step.log_scale.numpy()
                h = h * np.exp(s)
                log_det = log_det + np.broadcast_to(s, h.shape[1:]).sum()
            elif isinstance(step, tn.Conv1x1Step):
                lu = step.bijector().lower_upper()
                ref = tfb.ScaleMatvecLU(lu, tf.cast(step.permutation, tf.int32))
                per_pixel = tf.broadcast_to(ref.forward_log_det_jacobian(h, 1), h.shape[:3])
                log_det = log_det + per_pixel.numpy().sum((1, 2))
                h = ref.forward(h).numpy()
            elif isinstance(step, tn.CouplingStep):
                c_a = int(step.mask[0, 0].sum())
                assert step.mask[..., :c_a].all() and not step.mask[..., c_a:].any()
                out = step.network(h[..., :c_a])
                if step.coupling == "additive":
                    h = np.concatenate([h[..., :c_a], h[..., c_a:] + out.numpy()], -1)
                else:
                    shift, s = (t.numpy() for t in out)
                    h = np.concatenate([h[..., :c_a], h[..., c_a:] * np.exp(s) + shift], -1)
                    log_det = log_det + s.reshape(n, -1).sum(1)
            elif isinstance(step, tn.FactorOutStep):
                if step.learned_prior:
                    h, log_det = run([step.prior_coupling], h, log_det)
                k = step.keep
                exits = h[..., k:].reshape(n, -1)
                rest, log_det = run(step.steps, h[..., :k], log_det)
                h = np.concatenate([exits, rest.reshape(n, -1)], 1)
            else:
                raise AssertionError(f"no reference for {type(step).__name__}")
        return h, log_det

    z, log_det = run(steps, h, log_det)
    z = z.reshape(n, -1)
    return -0.5 * np.sum(z ** 2, 1) - 0.5 * z.shape[1] * math.log(2 * math.pi) + log_det


@pytest.mark.parametrize("coupling,scale", [("affine", "bounded"), ("affine", "sigmoid"),
                                            ("additive", "bounded")])
def test_a_two_scale_flows_log_prob_is_the_change_of_variables_by_hand(coupling, scale):
    shape = (8, 8, 1)
    steps = tn.multiscale_steps(shape, num_scales=2, steps_per_scale=2, hidden_channels=(8,),
                                coupling=coupling, scale=scale, rescaling=True,
                                dtype="float64")
    model = tn.Flow(steps, dtype="float64")
    assert model.latent_shape == (64,)
    randomize(model.steps, seed=5, scale=0.15)
    x = uniform_images(4, shape)
    ours = model.log_prob(x).numpy()
    np.testing.assert_allclose(ours, hand_log_prob(model.steps, x), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours, autodiff_log_prob(model, x), rtol=0, atol=1e-9)


@pytest.mark.parametrize("shape,scales", [((4, 4, 2), 2), ((8, 8, 3), 2), ((8, 8, 1), 3)])
def test_multiscale_flows_of_other_shapes_match_autodiff(shape, scales):
    steps = tn.multiscale_steps(shape, num_scales=scales, steps_per_scale=1,
                                hidden_channels=(4,), dtype="float64")
    model = tn.Flow(steps, dtype="float64")
    randomize(model.steps, seed=6, scale=0.15)
    x = uniform_images(3, shape)
    np.testing.assert_allclose(model.log_prob(x), hand_log_prob(model.steps, x), atol=1e-9)
    np.testing.assert_allclose(model.log_prob(x), autodiff_log_prob(model, x), atol=1e-9)
    z = model.encode(x)
    np.testing.assert_allclose(model.decode(tf.identity(z)), x, atol=1e-10)


def test_multiscale_steps_says_which_sides_the_scales_need():
    with pytest.raises(ValueError, match="2 scales halve the sides 2 times, so they need an "
                                         "\\(h, w, c\\) event with h and w multiples of 4. "
                                         "Received: event_shape=\\(6, 8, 1\\)"):
        tn.multiscale_steps((6, 8, 1), num_scales=2)
    with pytest.raises(ValueError, match="multiples of 8"):
        tn.multiscale_steps((28, 28, 1), num_scales=3)
    with pytest.raises(ValueError, match="num_scales must be an int >= 1"):
        tn.multiscale_steps((8, 8, 1), num_scales=0)
    with pytest.raises(ValueError, match="coupling must be one of"):
        tn.multiscale_steps((8, 8, 1), coupling="quadratic")


def test_a_multiscale_flow_does_what_every_flow_does(tmp_path):
    """fit with the data start (reaching the steps inside the factor-out), sample with
    temperature, encode/decode, bits/dim, inpaint, summary, .keras, a TF-only server."""
    keras.utils.set_random_seed(0)
    shape = (8, 8, 1)
    model = tn.Flow(tn.multiscale_steps(shape, num_scales=2, steps_per_scale=2,
                                        hidden_channels=(8,)), num_levels=256, name="glow")
    x = uniform_images(128, shape, seed=1).astype(np.float32)
    model.compile(keras.optimizers.Adam(1e-3))
    inner_actnorm = next(s for s in walk(model.steps) if s.name == "actnorm_1_1")
    assert inner_actnorm not in model.steps  # it sits in the factor-out's steps
    history = model.fit(x, epochs=3, batch_size=32, verbose=0).history
    assert int(model.data_initialized.numpy()) == 1
    assert float(np.abs(inner_actnorm.shift.numpy()).max()) > 0  # started from data
    assert history["loss"][-1] < history["loss"][0]
    assert set(history) >= {"loss", "nll", "bits_per_dim"}
    for t in (0.7, 1.0):
        assert model.sample(5, temperature=t, seed=2).shape == (5,) + shape
    z = model.encode(x[:4])
    assert z.shape == (4, 64)
    np.testing.assert_allclose(model.decode(tf.identity(z)), x[:4], atol=1e-4)
    nll = -float(tf.reduce_mean(model.log_prob(x)))
    assert model.bits_per_dim(nll) == pytest.approx(
        (nll / 64 + math.log(256)) / math.log(2), rel=1e-6)
    observed = np.ones(shape, bool)
    observed[4:] = False
    filled = model.inpaint(np.where(observed, x[:2], 0.5), observed, num_steps=5)
    np.testing.assert_array_equal(filled.numpy()[:, :4], x[:2, :4])
    lines = []
    model.summary(print_fn=lines.append)
    assert any("factor_out_0" in line for line in lines)

    path = tmp_path / "glow.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    probe = x[:5]
    np.testing.assert_array_equal(reloaded.log_prob(probe), model.log_prob(probe))
    assert reloaded.count_params() == model.count_params()

    served = tmp_path / "served"
    reloaded.export(served)
    np.save(tmp_path / "x.npy", probe)
    (tmp_path / "serve.py").write_text(TF_ONLY)
    done = subprocess.run([sys.executable, str(tmp_path / "serve.py"), str(served),
                           str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["log_prob"], model.log_prob(probe), rtol=1e-5, atol=1e-4)
    assert out["z"].shape == (5, 64) and out["sample"].shape == (3,) + shape
    np.testing.assert_allclose(out["decoded"], probe, atol=1e-4)
    # graph-mode serving: saved_model_cli runs log_prob, and decode takes the flat latent
    printed = _parse_cli_array(_cli("run", "--dir", str(served), "--tag_set", "serve",
                                    "--signature_def", "log_prob",
                                    "--inputs", f"x={tmp_path / 'x.npy'}"), "log_prob")
    np.testing.assert_allclose(printed, model.log_prob(probe), rtol=1e-5, atol=1e-4)
    np.save(tmp_path / "z.npy", out["z"])  # 5 x 64 values: printed in full (under 1000)
    decoded = _parse_cli_array(_cli("run", "--dir", str(served), "--tag_set", "serve",
                                    "--signature_def", "decode",
                                    "--inputs", f"z={tmp_path / 'z.npy'}"), "x")
    np.testing.assert_allclose(decoded.reshape(probe.shape), probe, atol=1e-3)


def test_a_multiscale_flow_under_mixed_bfloat16_keeps_float32_log_densities():
    shape = (8, 8, 1)
    x = uniform_images(4, shape).astype(np.float32)
    full = tn.Flow(tn.multiscale_steps(shape, steps_per_scale=1, hidden_channels=(8,)))
    randomize(full.steps, seed=7, scale=0.1)
    steps = tn.multiscale_steps(shape, steps_per_scale=1, hidden_channels=(8,),
                                dtype="mixed_bfloat16")
    mixed = tn.Flow(steps, dtype="mixed_bfloat16")
    mixed.set_weights(full.get_weights())
    ours = mixed.log_prob(x)
    assert ours.dtype == tf.float32
    # only the coupling networks compute in bfloat16: each of the 4 couplings' outputs is
    # off by a few eps of bfloat16, summed over the 64 dimensions of the event
    eps = float(tf.experimental.numpy.finfo(tf.bfloat16).eps)
    reference = full.log_prob(x).numpy()
    np.testing.assert_allclose(ours, reference, rtol=2 * eps, atol=4 * 64 * eps)
    assert not np.array_equal(ours.numpy(), reference)  # the networks did run in bfloat16

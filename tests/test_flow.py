"""`tn.Flow` over hand-written steps: shapes, networks of the user's, saving, serving, math.

The references are independent of the code under test: autodiff Jacobians of
`encode` in float64 with `slogdet`, the prior's density written out in numpy,
numpy's own indexing for the squeeze, and a process that imports TensorFlow
alone.
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

tfd = tfp.distributions

EVENT = (8, 8, 2)


def conv_network(part_shape, output_shape):
    """A user's factory: a Conv2D stack over the image part, as the issue's flows use."""
    assert len(part_shape) == 3  # a channel split arrives as an image
    return keras.Sequential([  # no Input: the step builds it for its part, in its dtype
        keras.layers.Conv2D(8, 3, padding="same", activation="tanh"),
        keras.layers.Conv2D(output_shape[-1], 3, padding="same",
                            kernel_initializer=keras.initializers.RandomNormal(stddev=0.05)),
    ])


def image_steps(dtype="float64"):
    """ActNorm, two conv couplings over a channel split, a squeeze, an MLP coupling on
    the squeezed image, an LU map and the rescaling: data (8, 8, 2) -> latent (4, 4, 8)."""
    mask = tn.partition_mask("channel", EVENT)
    own_layer = keras.Sequential([
        keras.Input((8, 8, 1), dtype=dtype),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", dtype=dtype),
        keras.layers.Conv2D(1, 1, dtype=dtype,
                            kernel_initializer=keras.initializers.RandomNormal(stddev=0.05)),
    ])
    squeezed = tn.bijectors.squeezed_shape(EVENT)
    return [
        tn.ActNormStep(EVENT, dtype=dtype, name="actnorm"),
        tn.CouplingStep(EVENT, mask, coupling="affine", network=conv_network, dtype=dtype,
                        name="conv_affine"),
        tn.CouplingStep(EVENT, ~mask, network=own_layer, dtype=dtype, name="conv_additive"),
        tn.SqueezeStep(EVENT, dtype=dtype, name="squeeze"),
        tn.CouplingStep(squeezed, tn.partition_mask("channel", squeezed), hidden_units=(16,),
                        dtype=dtype, name="mlp"),
        tn.LULinearStep(squeezed, seed=3, dtype=dtype, name="lu"),
        tn.RescalingStep(squeezed, init="data", dtype=dtype, name="rescaling"),
    ]


def images(n, seed=0):
    """Smooth random images: neighbouring pixels and the two channels are correlated."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 4, 4, 1))
    up = np.repeat(np.repeat(base, 2, axis=1), 2, axis=2)
    return np.concatenate([up, 0.5 * up], -1) + 0.3 * rng.normal(size=(n,) + EVENT)


def autodiff_log_prob(model, x):
    """log p(x) = log N(f(x); 0, I) + log|det df/dx|, the Jacobian by autodiff."""
    x = tf.constant(x)
    n = x.shape[0]
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = model.encode(x)
        z_flat = tf.reshape(z, (n, -1))
    jac = tape.batch_jacobian(z_flat, x).numpy().reshape(n, z_flat.shape[1], -1)
    log_det = np.linalg.slogdet(jac)[1]
    zz = z_flat.numpy()
    log_prior = -0.5 * np.sum(zz ** 2, axis=1) - 0.5 * zz.shape[1] * math.log(2 * math.pi)
    return log_prior + log_det


TF_ONLY = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    path, x_file, out_file = sys.argv[1:4]
    served = tf.saved_model.load(path)
    x = tf.constant(np.load(x_file))
    sig = served.signatures
    z = sig["encode"](x=x)["z"]
    np.savez(out_file, log_prob=sig["log_prob"](x=x)["log_prob"].numpy(), z=z.numpy(),
             decoded=sig["decode"](z=z)["x"].numpy(),
             sample=sig["sample"](num_samples=tf.constant(3), temperature=tf.constant(
                 1.0, x.dtype), seed=tf.constant(5, tf.int64))["x"].numpy())
    meta = {k: v.numpy().tolist() for k, v in sig["metadata"]().items()
            if k in ("event_shape", "latent_shape")}
    print(json.dumps({"modules": sorted({m.split(".")[0] for m in sys.modules} & {
        "tfp_nice", "tensorflow_probability"}), **meta}))
""")


def test_a_users_flow_trains_saves_serves_and_matches_autodiff(tmp_path):
    """The issue's done-when: steps by hand, a user's Conv2D network over a channel split
    of an (8, 8, 2) event, fit, .keras, export, a TensorFlow-only process, float64."""
    keras.utils.set_random_seed(1)
    x = images(96)
    model = tn.Flow(image_steps(), prior="normal", dtype="float64", seed=0)
    assert model.latent_shape == (4, 4, 8) and model.event_shape == EVENT
    model.compile(keras.optimizers.Adam(3e-3))
    history = model.fit(x, epochs=3, batch_size=32, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert int(model.data_initialized.numpy()) == 1

    probe = x[:5]
    ours = model.log_prob(probe).numpy()
    np.testing.assert_allclose(ours, autodiff_log_prob(model, probe), rtol=0, atol=1e-9)

    path = tmp_path / "flow.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert type(reloaded) is tn.Flow
    assert [type(s).__name__ for s in reloaded.steps] == [type(s).__name__ for s in model.steps]
    np.testing.assert_array_equal(reloaded.log_prob(probe), ours)
    assert reloaded.optimizer.iterations.numpy() == model.optimizer.iterations.numpy()
    np.testing.assert_allclose(reloaded.log_prob(probe), autodiff_log_prob(reloaded, probe),
                               rtol=0, atol=1e-9)

    served = tmp_path / "served"
    reloaded.export(served)
    np.save(tmp_path / "x.npy", probe)
    (tmp_path / "serve.py").write_text(TF_ONLY)
    done = subprocess.run([sys.executable, str(tmp_path / "serve.py"), str(served),
                           str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    status = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == {"modules": [], "event_shape": list(EVENT), "latent_shape": [4, 4, 8]}
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["log_prob"], ours, rtol=1e-12, atol=1e-10)
    assert out["z"].shape == (5, 4, 4, 8)
    np.testing.assert_allclose(out["decoded"], probe, atol=1e-10)
    assert out["sample"].shape == (3,) + EVENT and np.isfinite(out["sample"]).all()


def test_the_data_start_walks_every_step():
    """ActNorm first, the rescaling last: after the start, the latent has unit spread in
    every entry, which only holds if the start reached the last step through the others."""
    x = images(64)
    model = tn.Flow(image_steps(), dtype="float64")
    assert model.needs_data_init
    model.initialize_from_data(x)
    assert not model.needs_data_init
    z = model.encode(x).numpy().reshape(64, -1)
    np.testing.assert_allclose(np.sqrt(z.var(axis=0) + 1e-8), 1.0, rtol=1e-6)
    h = model.steps[0].bijector().forward(x).numpy().reshape(64, -1)
    np.testing.assert_allclose(h.mean(axis=0), 0.0, atol=1e-9)


def test_the_conv_networks_see_the_image_parts():
    seen = []

    def factory(part_shape, output_shape):
        seen.append((tuple(part_shape), tuple(output_shape)))
        return conv_network(part_shape, output_shape)

    mask = tn.partition_mask("channel", (8, 8, 4))
    affine = tn.CouplingStep((8, 8, 4), mask, coupling="affine", network=factory)
    additive = tn.CouplingStep((8, 8, 4), ~mask, network=factory)
    assert seen == [((8, 8, 2), (8, 8, 4)), ((8, 8, 2), (8, 8, 2))]
    calls = []
    for step in (affine, additive):
        original = step.network.call
        step.network.call = lambda h, _call=original, **kw: (calls.append(tuple(h.shape)),
                                                             _call(h, **kw))[1]
    h = tf.random.normal((3, 8, 8, 4))
    tn.Flow([affine, additive]).log_prob(h)
    assert calls and all(shape == (3, 8, 8, 2) for shape in calls)


def test_a_flow_asks_its_steps():
    shape = (4,)
    mask = tn.partition_mask("halves", shape)
    plain = tn.Flow([tn.CouplingStep(shape, mask, hidden_units=(4,), name="a"),
                     tn.CouplingStep(shape, ~mask, hidden_units=(4,), name="b")])
    assert not plain.needs_data_init  # nothing to start from data
    float(plain.entropy())  # additive couplings: exact
    adapting = tn.Flow([tn.ActNormStep(shape), tn.CouplingStep(shape, mask, hidden_units=(4,),
                                                                coupling="affine")])
    assert adapting.needs_data_init
    with pytest.raises(NotImplementedError, match="coupling_step"):
        adapting.entropy()
    assert tn.SqueezeStep((2, 2, 1)).output_event_shape == (1, 1, 4)
    assert [tn.LogitStep(shape).input_range, tn.ActNormStep(shape).input_range] == [
        (0.0, 1.0), None]


def _steps_to_check():
    shape = (2, 2, 4)
    mask = tn.partition_mask("channel", shape)
    return {
        "actnorm": tn.ActNormStep(shape),
        "rescaling": tn.RescalingStep(shape),
        "permutation": tn.PermutationStep(shape, tn.random_permutation(16, 1)),
        "lu": tn.LULinearStep(shape, seed=2),
        "squeeze": tn.SqueezeStep(shape),
        "logit": tn.LogitStep(shape),
        "additive": tn.CouplingStep(shape, mask, hidden_units=(4,)),
        "affine": tn.CouplingStep(shape, mask, hidden_units=(4,), coupling="affine"),
    }


@pytest.mark.parametrize("name", sorted(_steps_to_check()))
def test_what_a_step_says_of_its_jacobian_holds_under_autodiff(name):
    """`affine` (constant Jacobian matrix) and `constant_log_det` against autodiff at two
    points, for every kind of step, with random weights."""
    step = _steps_to_check()[name]
    rng = np.random.default_rng(4)
    for w in step.trainable_weights:
        w.assign(rng.normal(scale=0.4, size=w.shape))
    bij = step.bijector()
    x = tf.constant(rng.uniform(0.1, 0.9, size=(2,) + step.event_shape), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reshape(bij.forward(x), (2, -1))
    jac = tape.batch_jacobian(y, x).numpy().reshape(2, y.shape[1], -1).astype(np.float64)
    constant = np.allclose(jac[0], jac[1], rtol=1e-5, atol=1e-6)
    log_dets = np.linalg.slogdet(jac)[1]
    assert step.affine == constant == bij.is_constant_jacobian
    assert step.constant_log_det == bool(np.isclose(log_dets[0], log_dets[1], atol=1e-4))
    assert tuple(bij.forward(x).shape[1:]) == step.output_event_shape


def test_an_affine_flow_gives_tfps_moments_and_a_coupling_flow_refuses():
    shape = (3,)
    steps = [tn.ActNormStep(shape, name="actnorm"), tn.PermutationStep(shape, [2, 0, 1])]
    steps[0].shift.assign([0.5, -1.0, 0.2])
    steps[0].log_scale.assign([0.3, 0.1, -0.4])
    model = tn.Flow(steps, prior="normal")
    # f(x) = P((x + b) exp(s)); the prior's mean 0 goes to g(0) = -b.
    np.testing.assert_allclose(model.distribution.mean(), [-0.5, 1.0, -0.2], rtol=1e-6)
    mask = tn.partition_mask("halves", shape)
    coupled = tn.Flow([tn.CouplingStep(shape, mask, hidden_units=(4,))])
    with pytest.raises(NotImplementedError):
        coupled.distribution.mean()


def test_squeeze_moves_entries_as_numpy_indexing_says():
    x = np.random.default_rng(0).normal(size=(2, 4, 6, 3))
    y = tn.Squeeze().forward(x).numpy()
    want = np.empty((2, 2, 3, 12))
    for i in range(2):
        for j in range(3):
            for a in range(2):
                for b in range(2):
                    want[:, i, j, (a * 2 + b) * 3:(a * 2 + b + 1) * 3] = x[:, 2 * i + a,
                                                                           2 * j + b, :]
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(tn.Squeeze().inverse(tf.identity(y)), x)
    assert tn.Squeeze().forward_log_det_jacobian(x, 3).shape == (2,)
    unknown = tf.function(tn.Squeeze().forward,  # sides unknown when traced
                          input_signature=[tf.TensorSpec((None, None, None, 3), tf.float64)])
    np.testing.assert_array_equal(unknown(x), want)
    with pytest.raises(ValueError, match=r"h and w multiples of 2.*\(3, 4, 1\)"):
        tn.SqueezeStep((3, 4, 1))


def test_bad_steps_are_refused_by_name():
    mask = tn.partition_mask("halves", (4,))
    with pytest.raises(ValueError, match="at least one step"):
        tn.Flow([])
    with pytest.raises(TypeError, match="step 0 is a Dense"):
        tn.Flow([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"'squeeze' returns events of shape \(1, 1, 8\), but "
                                         r"the next step, 'actnorm', takes events of shape "
                                         r"\(2, 2, 2\)"):
        tn.Flow([tn.SqueezeStep((2, 2, 2), name="squeeze"),
                 tn.ActNormStep((2, 2, 2), name="actnorm")])
    with pytest.raises(ValueError, match="'c' repeat"):
        tn.Flow([tn.CouplingStep((4,), mask, hidden_units=(2,), name="c"),
                 tn.CouplingStep((4,), ~mask, hidden_units=(2,), name="c")])
    with pytest.raises(ValueError, match="keeps float32 weights, but .* float64"):
        tn.Flow([tn.ActNormStep((4,))], dtype="float64")
    with pytest.raises(ValueError, match="event shape \\(4,\\)"):
        tn.Flow([tn.ActNormStep((4,))], prior=tfd.Independent(tfd.Normal([0.0] * 3, 1.0), 1))
    with pytest.raises(ValueError, match="give one of hidden_units .* hidden_channels .* or "
                                         "network"):
        tn.CouplingStep((4,), mask)
    with pytest.raises(ValueError, match="give one of"):
        tn.CouplingStep((4,), mask, hidden_units=(2,), network=keras.layers.Dense(2))
    with pytest.raises(ValueError, match="hidden_channels makes a convolutional network, "
                                         "which needs a mask that picks channels"):
        tn.CouplingStep((2, 2, 2), tn.partition_mask("checkerboard", (2, 2, 2)),
                        hidden_channels=(4,))
    with pytest.raises(ValueError, match="scale='sigmoid' shapes the log-scale of the default"):
        tn.CouplingStep((4,), mask, coupling="affine", scale="sigmoid",
                        network=keras.layers.Dense(4))
    with pytest.raises(ValueError, match="scale must be one of"):
        tn.CouplingStep((4,), mask, hidden_units=(2,), scale="exp")
    with pytest.raises(TypeError, match="factory must return a Keras layer"):
        tn.CouplingStep((4,), mask, network=lambda a, b: "not a layer")


def test_a_network_whose_input_would_round_the_part_is_refused():
    mask = tn.partition_mask("halves", (4,))
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, dtype="float64")])
    with pytest.raises(ValueError, match="keras.Input has dtype float32, so it would round "
                                         "the float64 part"):
        tn.CouplingStep((4,), mask, network=net, dtype="float64")


def test_a_network_of_the_wrong_output_shape_is_named():
    mask = tn.partition_mask("channel", (4, 4, 2))
    step = tn.CouplingStep((4, 4, 2), mask, network=keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 1)]), name="wrong")
    with pytest.raises(ValueError, match=r"wrong: the shift must have shape \[batch, 4, 4, 1\]"):
        tn.Flow([step]).log_prob(tf.zeros((2, 4, 4, 2)))


def test_flow_config_holds_its_steps_and_no_flags(tmp_path):
    mask = tn.partition_mask("odd_even", (6,))
    model = tn.Flow([tn.CouplingStep((6,), mask, network=keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(5, "tanh"), keras.layers.Dense(3)])),
        tn.RescalingStep((6,), init="zeros")], prior="logistic", num_levels=17)
    config = model.get_config()
    assert sorted(set(config) - {"name", "trainable", "dtype"}) == [
        "context_shape", "num_levels", "prior", "seed", "steps"]
    assert config["context_shape"] is None
    assert [s["class_name"] for s in config["steps"]] == ["CouplingStep", "RescalingStep"]
    for w in model.trainable_weights:
        w.assign(np.random.default_rng(0).normal(size=w.shape))
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    model.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(back.log_prob(x), model.log_prob(x))
    assert back.num_levels == 17 and back.prior == "logistic"


def test_nice_files_of_release_0_1_0_load_with_their_log_prob():
    """Files written by tfp_nice 0.1.0 (tests/fixtures/, with the log-densities that
    release computed) load as NICE and give the same numbers."""
    import pathlib

    folder = pathlib.Path(__file__).parent / "fixtures"
    cases = json.loads((folder / "nice_0.1.0.json").read_text())
    assert len(cases) == 2
    for name, case in cases.items():
        assert case["version"] == "0.1.0"
        model = keras.models.load_model(folder / f"{name}.keras")
        assert type(model) is tn.NICE
        np.testing.assert_allclose(model.log_prob(np.float32(case["x"])), case["log_prob"],
                                   rtol=1e-6, atol=1e-6)


def test_the_command_line_samples_evaluates_and_inpaints_a_flow_file(tmp_path, capsys):
    """`tfp-nice sample/evaluate/inpaint` on a Flow's .keras file and its SavedModel: a
    shape-changing flow over digit images, evaluate's NLL against the model's own."""
    from tfp_nice.cli import main
    from tfp_nice.data import DIGITS_LEVELS, load_digits

    digits = load_digits(as_images=True)[0]
    x = ((digits + np.random.default_rng(0).random(digits.shape)) / DIGITS_LEVELS).astype(
        "float32")
    squeezed = (4, 4, 4)
    mask = tn.partition_mask("channel", squeezed)
    steps = [tn.SqueezeStep((8, 8, 1)),
             tn.CouplingStep(squeezed, mask, coupling="affine", network=conv_network,
                             name="c0"),
             tn.CouplingStep(squeezed, ~mask, network=conv_network, name="c1"),
             tn.RescalingStep(squeezed, init="data")]
    model = tn.Flow(steps, num_levels=DIGITS_LEVELS)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x, epochs=1, batch_size=128, verbose=0)
    model.save(tmp_path / "flow.keras")
    model.export(tmp_path / "served")
    assert main(["sample", str(tmp_path / "flow.keras"), "--num-samples", "6",
                 "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (6, 8, 8, 1)
    for path in ("flow.keras", "served"):
        capsys.readouterr()
        assert main(["evaluate", str(tmp_path / path), "--data", "digits"]) == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert report["count"] == len(digits)
        # evaluate dequantizes with its own noise: the model's NLL on ours is near it.
        assert report["nll"] == pytest.approx(-float(np.mean(model.log_prob(x))), abs=1.0)
    assert main(["inpaint", str(tmp_path / "flow.keras"), "--data", "digits",
                 "--num-examples", "3", "--num-steps", "5",
                 "--out", str(tmp_path / "filled.npy")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.load(tmp_path / "filled.npy").shape == (3, 64)
    assert report["count"] == 3 and np.isfinite(report["log_prob_after"])


def test_early_stopping_on_averaged_weights_and_the_summary_serve_a_flow():
    x = tn.data.two_moons(512, seed=0)
    mask = tn.partition_mask("halves", (2,))
    model = tn.Flow([tn.ActNormStep((2,), name="actnorm"),
                     tn.CouplingStep((2,), mask, hidden_units=(16,), name="left"),
                     tn.CouplingStep((2,), ~mask, hidden_units=(16,), name="right")])
    model.compile(keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9))
    stop = tn.AveragedEarlyStopping(tn.data.two_moons(128, seed=1), patience=1)
    history = model.fit(x, epochs=40, batch_size=64, callbacks=[stop], verbose=0).history
    assert len(history["val_averaged_nll"]) == stop.best_epoch + 2 < 40
    lines = []
    model.summary(print_fn=lambda line, **kw: lines.append(line))
    text = "\n".join(lines)
    assert all(name in text for name in ("actnorm", "left", "right"))


def test_a_users_network_under_mixed_precision_computes_in_half_and_returns_float32():
    mask = tn.partition_mask("channel", (4, 4, 2))
    step = tn.CouplingStep((4, 4, 2), mask, network=conv_network, coupling="affine",
                           dtype="mixed_bfloat16")
    assert all(layer.compute_dtype == "bfloat16" for layer in step.network.layers)
    assert all(w.dtype == "float32" for w in step.network.weights)
    model = tn.Flow([step], dtype="mixed_bfloat16")
    x = np.random.default_rng(0).normal(size=(32, 4, 4, 2)).astype("float32")
    assert model.log_prob(x).dtype == tf.float32
    model.compile(keras.optimizers.Adam(1e-3))
    losses = model.fit(x, epochs=2, batch_size=16, verbose=0).history["loss"]
    assert np.isfinite(losses).all()

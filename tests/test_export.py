"""SavedModel export, checked where it is served: a fresh process and saved_model_cli."""

import json
import pathlib
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_nice as tn

SAVED_MODEL_CLI = pathlib.Path(sys.executable).with_name("saved_model_cli")

CASES = {
    "float32-vector": dict(event_shape=(6,), num_levels=256),
    "float64-vector": dict(event_shape=(5,), dtype="float64"),
    "float32-image": dict(event_shape=(4, 4, 2), partition="checkerboard", prior="normal"),
    "float64-image": dict(event_shape=(2, 2, 4), partition="channel", dtype="float64"),
}


# ln(num_levels) written out, for the levels the cases use (None: continuous data).
CASES_LEVELS = {256: 5.545177444479562, None: 0.0}


def make_model(event_shape, seed=0, **kwargs):
    kwargs.setdefault("hidden_units", (16,))
    model = tn.NICE(event_shape, num_couplings=3, **kwargs)
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(rng.normal(scale=0.3, size=w.shape).astype(w.dtype))
    return model


def inputs_for(model, n=7, seed=1):
    dtype = tf.as_dtype(model.compute_dtype).as_numpy_dtype
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) + tuple(model.event_shape)).astype(dtype)


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    path, x_file, out_file = sys.argv[1:4]
    x = tf.constant(np.load(x_file))
    loaded = tf.saved_model.load(path)
    sig = loaded.signatures
    out = {
        "log_prob": sig["log_prob"](x=x)["log_prob"].numpy(),
        "default": sig["serving_default"](x=x)["log_prob"].numpy(),
        "encode": sig["encode"](x=x)["z"].numpy(),
        "decode": sig["decode"](z=x)["x"].numpy(),
        "object_log_prob": loaded.log_prob(x)["log_prob"].numpy(),
    }
    temperature = tf.constant(0.7, x.dtype)
    for name, seed in [("seeded_a", 11), ("seeded_b", 11), ("fresh_a", -1), ("fresh_b", -1)]:
        out[name] = sig["sample"](num_samples=tf.constant(9), temperature=temperature,
                                  seed=tf.constant(seed, tf.int64))["x"].numpy()
    meta = {k: v.numpy() for k, v in sig["metadata"]().items()}
    np.savez(out_file, **out)
    print(json.dumps({
        "tfp_nice_imported": "tfp_nice" in sys.modules,
        "tfp_imported": any(m.startswith("tensorflow_probability") for m in sys.modules),
        "event_shape": meta["event_shape"].tolist(),
        "dtype": meta["dtype"].decode(),
        "num_levels": int(meta["num_levels"]),
        "bits_per_dim_offset_nats": float(meta["bits_per_dim_offset_nats"]),
    }))
""")


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def exported(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    model = make_model(**CASES[request.param])
    path = folder / "saved"
    meta = tn.export_saved_model(model, path)
    return model, path, meta


def run_fresh(path, x, tmp_path):
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "serve.py"
    script.write_text(FRESH_PROCESS)
    done = subprocess.run(
        [sys.executable, str(script), str(path), str(tmp_path / "x.npy"),
         str(tmp_path / "out.npz")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    status = json.loads(done.stdout.strip().splitlines()[-1])
    return status, dict(np.load(tmp_path / "out.npz"))


def test_fresh_process_with_tensorflow_alone_agrees(exported, tmp_path):
    model, path, meta = exported
    x = inputs_for(model)
    status, out = run_fresh(path, x, tmp_path)
    assert status["tfp_nice_imported"] is False
    assert status["tfp_imported"] is False
    assert status["event_shape"] == list(model.event_shape)
    assert status["dtype"] == tf.as_dtype(model.compute_dtype).name
    assert status["num_levels"] == (model.num_levels or 0)
    # D ln(num_levels), from the case's own numbers, not from the exporter's metadata.
    levels = CASES_LEVELS.get(model.num_levels, 0.0)
    expected_offset = int(np.prod(model.event_shape)) * levels
    assert status["bits_per_dim_offset_nats"] == pytest.approx(expected_offset, rel=1e-12)
    assert meta["bits_per_dim_offset_nats"] == pytest.approx(expected_offset, rel=1e-12)

    expected = {
        "log_prob": model.log_prob(x).numpy(),
        "encode": model.encode(x).numpy(),
        "decode": model.decode(x).numpy(),
    }
    for key in ("log_prob", "default", "object_log_prob"):
        np.testing.assert_allclose(out[key], expected["log_prob"], rtol=1e-5)
    np.testing.assert_allclose(out["encode"], expected["encode"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["decode"], expected["decode"], rtol=1e-5, atol=1e-6)

    for key in ("seeded_a", "fresh_a"):
        assert out[key].shape == (9,) + tuple(model.event_shape)
        assert out[key].dtype == x.dtype
        assert np.all(np.isfinite(out[key]))
    np.testing.assert_array_equal(out["seeded_a"], out["seeded_b"])
    assert not np.array_equal(out["fresh_a"], out["fresh_b"])


def test_in_process_load_samples_follow_temperature(exported):
    model, path, _ = exported
    loaded = tf.saved_model.load(str(path))
    dtype = tf.as_dtype(model.compute_dtype)
    hot = loaded.signatures["sample"](num_samples=tf.constant(4), temperature=tf.constant(1.0, dtype),
                                      seed=tf.constant(5, tf.int64))["x"]
    cold = loaded.signatures["sample"](num_samples=tf.constant(4), temperature=tf.constant(0.5, dtype),
                                       seed=tf.constant(5, tf.int64))["x"]
    # Same seed, so the same latent draw: cold's latent is half of hot's.
    np.testing.assert_allclose(model.encode(cold), 0.5 * model.encode(hot).numpy(),
                               rtol=1e-4, atol=1e-5)


def test_metadata_file(exported):
    model, path, meta = exported
    on_disk = json.loads((path / "assets.extra" / "tfp_nice.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert on_disk["tfp_nice_version"] == tn.__version__
    assert on_disk["event_shape"] == list(model.event_shape)
    assert on_disk["prior"] == model.prior
    assert set(on_disk["signatures"]) == {"log_prob", "sample", "encode", "decode", "metadata"}


def _cli(*args):
    done = subprocess.run([str(SAVED_MODEL_CLI), *args], capture_output=True, text=True,
                          timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_saved_model_cli_show_lists_the_signatures(exported):
    model, path, _ = exported
    out = _cli("show", "--dir", str(path), "--all")
    shape = "(-1, " + ", ".join(str(d) for d in model.event_shape) + ")"
    for name in ("serving_default", "log_prob", "sample", "encode", "decode", "metadata"):
        assert f"signature_def['{name}']" in out
    block = out.split("signature_def['log_prob']")[1].split("signature_def[")[0]
    assert f"shape: {shape}" in block and "shape: (-1)" in block
    sample_block = out.split("signature_def['sample']")[1].split("signature_def[")[0]
    for name in ("num_samples", "temperature", "seed"):
        assert f"inputs['{name}']" in sample_block


def _parse_cli_array(text, key):
    body = text.split(f"Result for output key {key}:")[1]
    body = body.split("Result for output key")[0]
    return np.array([float(v) for v in re.findall(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?|[-+]?\d+", body)])


def test_saved_model_cli_run_prints_the_models_log_prob(exported, tmp_path):
    model, path, _ = exported
    x = inputs_for(model, n=5)
    np.save(tmp_path / "x.npy", x)
    out = _cli("run", "--dir", str(path), "--tag_set", "serve", "--signature_def", "log_prob",
               "--inputs", f"x={tmp_path / 'x.npy'}")
    printed = _parse_cli_array(out, "log_prob")
    np.testing.assert_allclose(printed, model.log_prob(x), rtol=1e-5)


def test_wrong_event_size_is_refused(exported):
    model, path, _ = exported
    loaded = tf.saved_model.load(str(path))
    dtype = tf.as_dtype(model.compute_dtype)
    shape = list(model.event_shape)
    shape[-1] += 1
    bad = tf.zeros([3] + shape, dtype)
    expected = re.escape("[batch, " + ", ".join(str(d) for d in model.event_shape) + "]")
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError),
                       match=expected + ".*" + dtype.name):
        loaded.signatures["log_prob"](x=bad)


@pytest.mark.parametrize("shape", [(3, 8, 2, 2), (3, 5, 4, 2), (3, 4, 4, 2, 1), (3, 32)])
def test_every_dimension_of_the_event_shape_is_checked(tmp_path_factory, shape):
    """(3, 8, 2, 2) has the size and last dimension of a (4, 4, 2) event."""
    model = make_model((4, 4, 2), partition="checkerboard")
    path = tmp_path_factory.mktemp("shapes") / "saved"
    tn.export_saved_model(model, path)
    loaded = tf.saved_model.load(str(path))
    bad = tf.zeros(shape, tf.float32)
    for name, arg in (("log_prob", "x"), ("encode", "x"), ("decode", "z")):
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError),
                           match=re.escape("[batch, 4, 4, 2] float32")):
            loaded.signatures[name](**{arg: bad})


def test_metadata_holds_the_literal_bits_per_dim_constants(tmp_path):
    model = make_model((6,), num_levels=256)
    meta = tn.export_saved_model(model, tmp_path / "saved")
    served = tf.saved_model.load(str(tmp_path / "saved")).signatures["metadata"]()
    for source in (meta, {k: v.numpy() for k, v in served.items()}):
        # 6 ln 256 nats and 1 / (6 ln 2), written out.
        assert float(source["bits_per_dim_offset_nats"]) == pytest.approx(33.271064666877, 1e-12)
        assert float(source["bits_per_dim_scale"]) == pytest.approx(0.240449173481, 1e-11)
        assert int(source["num_levels"]) == 256
    continuous = tn.export_saved_model(make_model((6,)), tmp_path / "continuous")
    assert continuous["bits_per_dim_offset_nats"] == 0.0 and continuous["num_levels"] is None


def test_wrong_dtype_is_refused(exported):
    model, path, _ = exported
    loaded = tf.saved_model.load(str(path))
    dtype = tf.as_dtype(model.compute_dtype)
    other = tf.float64 if dtype == tf.float32 else tf.float32
    bad = tf.zeros((2,) + tuple(model.event_shape), other)
    # TensorFlow checks dtypes before any exported code runs, in its own words:
    # a signature names the C type ("float" is float32, "double" float64) ...
    c_name = {tf.float32: "float", tf.float64: "double"}[dtype]
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"expected to be a {c_name} tensor"):
        loaded.signatures["log_prob"](x=bad)
    # ... and the loaded object's function names the whole expected spec.
    spec = re.escape(f"shape=(None, {', '.join(str(d) for d in model.event_shape)}), "
                     f"dtype=tf.{dtype.name}")
    with pytest.raises(TypeError, match=spec):
        loaded.log_prob(bad)


def test_bad_sample_arguments_are_refused(exported):
    model, path, _ = exported
    loaded = tf.saved_model.load(str(path))
    dtype = tf.as_dtype(model.compute_dtype)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples must be >= 0"):
        loaded.signatures["sample"](num_samples=tf.constant(-1), temperature=tf.constant(1.0, dtype),
                                    seed=tf.constant(0, tf.int64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature must be"):
        loaded.signatures["sample"](num_samples=tf.constant(2), temperature=tf.constant(0.0, dtype),
                                    seed=tf.constant(0, tf.int64))


def test_saved_model_cli_run_with_wrong_shape_names_the_expected_shape(tmp_path):
    model = make_model((6,))
    path = tmp_path / "saved"
    tn.export_saved_model(model, path)
    np.save(tmp_path / "x.npy", np.zeros((2, 7), np.float32))
    done = subprocess.run(
        [str(SAVED_MODEL_CLI), "run", "--dir", str(path), "--tag_set", "serve",
         "--signature_def", "log_prob", "--inputs", f"x={tmp_path / 'x.npy'}"],
        capture_output=True, text=True, timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    # saved_model_cli feeds through a session, which checks the static shape itself.
    assert "Cannot feed value of shape (2, 7)" in done.stderr
    assert "which has shape (None, 6)" in done.stderr


# --- where models come from --------------------------------------------------------------


def test_model_loaded_from_keras_file_exports_the_same(tmp_path):
    model = make_model((6,))
    model.save(tmp_path / "m.keras")
    loaded_model = keras.models.load_model(tmp_path / "m.keras")
    tn.export_saved_model(loaded_model, tmp_path / "saved")
    served = tf.saved_model.load(str(tmp_path / "saved"))
    x = inputs_for(model)
    np.testing.assert_allclose(served.signatures["log_prob"](x=x)["log_prob"], model.log_prob(x),
                               rtol=1e-6)


def test_model_trained_under_mirrored_strategy_exports(tmp_path, mirrored_strategy):
    with mirrored_strategy.scope():
        model = tn.NICE((6,), num_couplings=2, hidden_units=(8,))
        model.compile(keras.optimizers.Adam(1e-2))
    x = inputs_for(model, n=64)
    model.fit(x, epochs=2, batch_size=16, verbose=0)
    tn.export_saved_model(model, tmp_path / "saved")
    status, out = run_fresh(tmp_path / "saved", x[:5], tmp_path)
    np.testing.assert_allclose(out["log_prob"], model.log_prob(x[:5]), rtol=1e-5)


def test_model_export_method_writes_the_same_saved_model(tmp_path):
    model = make_model((6,))
    meta = model.export(tmp_path / "saved", verbose=False)
    assert meta["event_shape"] == [6]
    served = tf.saved_model.load(str(tmp_path / "saved"))
    assert set(served.signatures) == set(tn.export.SIGNATURES)


def test_fresh_model_exports_as_the_identity_flow(tmp_path):
    model = tn.NICE((3,), num_couplings=2, hidden_units=(4,))
    tn.export_saved_model(model, tmp_path / "saved")
    served = tf.saved_model.load(str(tmp_path / "saved"))
    x = tf.constant([[0.1, 0.2, 0.3]])
    np.testing.assert_allclose(served.signatures["encode"](x=x)["z"], x)


# --- writing safely -------------------------------------------------------------------------


def test_existing_path_needs_overwrite(tmp_path):
    model = make_model((6,))
    path = tmp_path / "saved"
    tn.export_saved_model(model, path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        tn.export_saved_model(model, path)
    other = make_model((6,), seed=5)
    tn.export_saved_model(other, path, overwrite=True)
    served = tf.saved_model.load(str(path))
    x = inputs_for(other)
    np.testing.assert_allclose(served.signatures["log_prob"](x=x)["log_prob"], other.log_prob(x),
                               rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    model = make_model((6,))
    path = tmp_path / "saved"
    tn.export_saved_model(model, path)
    before = sorted(p.relative_to(path) for p in path.rglob("*"))

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        tn.export_saved_model(make_model((6,), seed=9), path, overwrite=True)
    with pytest.raises(RuntimeError, match="disk full"):
        tn.export_saved_model(model, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before


def test_export_refuses_what_is_not_a_tfp_nice_model(tmp_path):
    with pytest.raises(TypeError, match="tfp_nice model"):
        tn.export_saved_model(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "s")


def test_concurrent_serving_gives_the_serial_answers(tmp_path):
    import concurrent.futures

    model = make_model((6,))
    tn.export_saved_model(model, tmp_path / "saved")
    served = tf.saved_model.load(str(tmp_path / "saved"))
    log_prob = served.signatures["log_prob"]
    batches = [tf.constant(inputs_for(model, n=50 + k, seed=k)) for k in range(32)]
    serial = [log_prob(x=b)["log_prob"].numpy() for b in batches]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda b: log_prob(x=b)["log_prob"].numpy(), batches))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_logit_model_serves_data_space_log_prob_in_a_fresh_process(tmp_path):
    """The affine_mnist kind of model (logit first, affine couplings, ActNorm, permutations)."""
    model = make_model((6,), num_levels=256, logit_alpha=0.05, coupling="affine",
                       actnorm=True, permutation="random")
    tn.export_saved_model(model, tmp_path / "saved")
    x = np.random.default_rng(2).uniform(size=(7, 6)).astype("float32")
    _, out = run_fresh(tmp_path / "saved", x, tmp_path)
    for key in ("log_prob", "default", "object_log_prob"):
        np.testing.assert_allclose(out[key], model.log_prob(x).numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["encode"], model.encode(x).numpy(), rtol=1e-5, atol=1e-5)
    support = 0.05 / 0.9  # samples lie in (-support, 1 + support)
    for key in ("seeded_a", "fresh_a"):
        assert np.all(out[key] > -support) and np.all(out[key] < 1 + support)


def test_a_negative_seed_samples_afresh_in_every_process(tmp_path):
    """A model exported after a global seed (as `tfp-nice train` sets one) freezes the op
    seed of the graph's random op: a restarted server must not draw the same samples."""
    keras.utils.set_random_seed(0)
    model = make_model((6,))
    tn.export_saved_model(model, tmp_path / "saved")
    x = inputs_for(model)
    outs = []
    for k in range(2):
        folder = tmp_path / f"process_{k}"
        folder.mkdir()
        outs.append(run_fresh(tmp_path / "saved", x, folder)[1])
    np.testing.assert_array_equal(outs[0]["seeded_a"], outs[1]["seeded_a"])
    for key in ("fresh_a", "fresh_b"):
        assert not np.array_equal(outs[0][key], outs[1][key]), key
    assert not np.array_equal(outs[0]["fresh_a"], outs[0]["fresh_b"])

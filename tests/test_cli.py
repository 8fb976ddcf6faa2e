"""The `tfp-nice` command line: end to end in a subprocess, and every bad input."""

import importlib
import json
import math
import re
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tfp_nice.cli import architectures

from tfp_nice.cli import main

TFP_NICE = pathlib.Path(sys.executable).with_name("tfp-nice")
TINY = ["--epochs", "2", "--hidden", "8", "--couplings", "2", "--verbose", "0"]


def run_cli(*args, cwd):
    done = subprocess.run([str(TFP_NICE), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    return done


def finite_numbers(obj):
    if isinstance(obj, dict):
        return all(finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(finite_numbers(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


@pytest.fixture(scope="module")
def trained_moons(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    done = run_cli("train", "--data", "moons", "--num-points", "600", *TINY, "--out", "run",
                   cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, folder / "run", done.stdout


def test_train_writes_every_promised_file(trained_moons):
    _, out, stdout = trained_moons
    assert sorted(p.name for p in out.iterdir()) == [
        "density.png", "loss.png", "metrics.json", "model.keras", "samples.png", "saved_model"]
    assert (out / "saved_model" / "saved_model.pb").is_file()
    for png in ("density.png", "loss.png", "samples.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"outputs in {pathlib.Path('run')}/" in stdout
    assert [p.name for p in out.parent.iterdir()] == ["run"]  # no temporary folder left


def test_metrics_json(trained_moons):
    _, out, _ = trained_moons
    metrics = json.loads((out / "metrics.json").read_text())
    assert finite_numbers(metrics)
    assert metrics["data"] == "moons" and metrics["event_shape"] == [2]
    promised = {"data", "event_shape", "num_levels", "epochs", "wall_time_seconds", "train",
                "validation", "test", "history", "arguments", "versions"}
    assert promised <= set(metrics) and metrics["epochs"] == 2
    for part, count in (("train", 432), ("validation", 48), ("test", 120)):
        assert metrics[part]["count"] == count
        assert metrics[part]["bits_per_dim"] == pytest.approx(
            metrics[part]["nll"] / (2 * math.log(2)))
    assert len(metrics["history"]["loss"]) == 2
    assert metrics["arguments"]["couplings"] == 2
    assert set(metrics["versions"]) >= {"tfp_nice", "tensorflow", "tensorflow_probability", "keras"}


@pytest.mark.parametrize("model_path", ["run/model.keras", "run/saved_model"],
                         ids=["keras", "saved_model"])
def test_sample_and_evaluate_on_the_outputs(trained_moons, model_path):
    folder, _, _ = trained_moons
    name = pathlib.Path(model_path).stem
    done = run_cli("sample", model_path, "--num-samples", "50", "--temperature", "0.5",
                   "--out", f"{name}.npy", cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    samples = np.load(folder / f"{name}.npy")
    assert samples.shape == (50, 2) and np.all(np.isfinite(samples))
    assert (folder / f"{name}.png").is_file()

    np.save(folder / "points.npy", np.random.default_rng(0).normal(size=(30, 2)).astype("f4"))
    done = run_cli("evaluate", model_path, "--data", "points.npy", cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["count"] == 30 and math.isfinite(result["nll"])


@pytest.mark.parametrize("model_path", ["run/model.keras", "run/saved_model"],
                         ids=["keras", "saved_model"])
def test_sample_with_a_negative_seed_draws_afresh_in_each_process(trained_moons, model_path):
    folder, _, _ = trained_moons  # trained by `tfp-nice train`, which sets a global seed
    drawn = []
    for k in range(2):
        done = run_cli("sample", model_path, "--num-samples", "5", "--seed", "-1",
                       "--out", f"fresh_{k}.npy", cwd=folder)
        assert done.returncode == 0, done.stderr[-3000:]
        drawn.append(np.load(folder / f"fresh_{k}.npy"))
    assert drawn[0].shape == (5, 2) and not np.array_equal(drawn[0], drawn[1])


def test_evaluate_agrees_between_keras_file_and_saved_model(trained_moons):
    folder, _, _ = trained_moons
    results = []
    for model_path in ("run/model.keras", "run/saved_model"):
        done = run_cli("evaluate", model_path, "--data", "moons", "--num-points", "200",
                       cwd=folder)
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert results[0]["nll"] == pytest.approx(results[1]["nll"], rel=1e-5)


def test_redirected_train_prints_plain_lines_one_per_epoch(tmp_path):
    """`make run > log`: no progress-bar escape codes in a file, and "1 epoch", not "1 epochs"."""
    done = run_cli("train", "--data", "moons", "--num-points", "300", "--epochs", "1",
                   "--hidden", "8", "--couplings", "2", "--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\x1b[" not in done.stdout and "\b" not in done.stdout
    epoch_lines = [line for line in done.stdout.splitlines() if " - loss: " in line]
    assert len(epoch_lines) == 1 and "val_loss" in epoch_lines[0], done.stdout
    assert re.search(r"after 1 epoch \(", done.stdout), done.stdout


@pytest.mark.parametrize("tty, given, expected", [(True, None, 1), (False, None, 2),
                                                   (False, 1, 1), (True, 0, 0)])
def test_verbosity_follows_the_terminal_unless_given(monkeypatch, tty, given, expected):
    import io

    from tfp_nice.cli.train import _verbosity

    class Out(io.StringIO):
        def isatty(self):
            return tty

    monkeypatch.setattr(sys, "stdout", Out())
    assert _verbosity(given) == expected


def test_train_on_images_writes_a_sample_grid(tmp_path):
    assert main(["train", "--data", "digits", *TINY, "--out", str(tmp_path / "d")]) == 0
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["num_levels"] == 17 and metrics["event_shape"] == [64]
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "loss.png", "metrics.json", "model.keras", "samples.png", "saved_model"]


def test_train_on_an_idx_file_and_a_csv(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 4, 4)).astype(np.uint8)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    (tmp_path / "tiny-idx3-ubyte").write_bytes(header + images.tobytes())
    assert main(["train", "--data", str(tmp_path / "tiny-idx3-ubyte"), *TINY, "--batch-size",
                 "8", "--out", str(tmp_path / "idx")]) == 0
    metrics = json.loads((tmp_path / "idx" / "metrics.json").read_text())
    assert metrics["num_levels"] == 256 and metrics["event_shape"] == [16]

    np.savetxt(tmp_path / "d.csv", rng.normal(size=(50, 3)), delimiter=",", header="a,b,c")
    assert main(["train", "--data", str(tmp_path / "d.csv"), *TINY, "--batch-size", "8",
                 "--out", str(tmp_path / "csv")]) == 0
    assert json.loads((tmp_path / "csv" / "metrics.json").read_text())["event_shape"] == [3]


@pytest.mark.parametrize("shape, image_shape", [((30, 5), None), ((30, 4, 4), (4, 4)),
                                                ((30, 4, 4, 3), (4, 4, 3))],
                         ids=["n-d", "n-h-w", "n-h-w-c"])
def test_npz_data_of_every_promised_shape(tmp_path, shape, image_shape):
    from tfp_nice.cli.inputs import load_dataset

    x = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.uint8)
    np.savez(tmp_path / "data.npz", x=x)
    dataset = load_dataset(str(tmp_path / "data.npz"))
    assert dataset.x.shape == (30, int(np.prod(shape[1:])))
    assert dataset.image_shape == image_shape and dataset.num_levels == 256
    noise = dataset.x * 256 - x.reshape(30, -1)  # (x + u) / 256, u in [0, 1)
    assert np.all(noise > -1e-3) and np.all(noise < 1 + 1e-3)


def test_train_on_an_npz_file_of_vectors(tmp_path):
    np.savez(tmp_path / "v.npz", x=np.random.default_rng(1).normal(size=(50, 3)))
    assert main(["train", "--data", str(tmp_path / "v.npz"), *TINY, "--batch-size", "8",
                 "--out", str(tmp_path / "npz")]) == 0
    assert json.loads((tmp_path / "npz" / "metrics.json").read_text())["event_shape"] == [3]


# --- bad input: status 2, one clear line, --out as it was ------------------------------


@pytest.fixture
def existing_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier run")
    return out


def assert_untouched(out):
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.startswith("data")) == [
        "out"], "a temporary folder was left behind"
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "earlier run"


def bad_train(capsys, out, *args):
    status = main(["train", *args, *TINY, "--out", str(out), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    return status, err


def test_missing_data_file(capsys, existing_out):
    status, err = bad_train(capsys, existing_out, "--data", str(existing_out.parent / "no.npy"))
    assert status == 2 and len(err) == 1
    assert "no such file" in err[0] and "no.npy" in err[0]
    assert_untouched(existing_out)


def test_data_of_the_wrong_shape(capsys, existing_out):
    np.save(existing_out.parent / "data1d.npy", np.arange(10.0))
    status, err = bad_train(capsys, existing_out, "--data", str(existing_out.parent / "data1d.npy"))
    assert status == 2 and "expected an array of shape (n, d)" in err[0] and "(10,)" in err[0]
    assert_untouched(existing_out)


@pytest.mark.parametrize("header, where", [("", "line 8"), ("a,b", "line 9")],
                         ids=["csv", "csv-with-header"])
def test_nan_in_a_csv_file_names_its_line(capsys, existing_out, header, where):
    x = np.random.default_rng(0).normal(size=(20, 2))
    x[7, 1] = np.nan
    np.savetxt(existing_out.parent / "data_nan.csv", x, delimiter=",", header=header,
               comments="")
    status, err = bad_train(capsys, existing_out, "--data",
                            str(existing_out.parent / "data_nan.csv"))
    assert status == 2 and f"NaN in {where};" in err[0]
    assert_untouched(existing_out)


def test_nan_in_an_npy_file_names_its_row(capsys, existing_out):
    x = np.random.default_rng(0).normal(size=(20, 2))
    x[7, 1] = np.nan
    np.save(existing_out.parent / "data_nan.npy", x)
    status, err = bad_train(capsys, existing_out, "--data",
                            str(existing_out.parent / "data_nan.npy"))
    assert status == 2 and "NaN in row 7;" in err[0]
    assert_untouched(existing_out)


@pytest.mark.parametrize("text, where", [
    ("a,b\n1,2\nx,y\n", "line 3, column 1 holds 'x'"),
    ("1,2\n3,4\n5,x\n", "line 3, column 2 holds 'x'"),
    ("a,b\n1,2\n3,4\n5,6\n7,?\n", "line 5, column 2 holds '?'"),
], ids=["header", "no-header", "later-line"])
def test_non_numeric_csv_names_the_line_and_column(capsys, existing_out, text, where):
    (existing_out.parent / "data_text.csv").write_text(text)
    status, err = bad_train(capsys, existing_out, "--data",
                            str(existing_out.parent / "data_text.csv"))
    assert status == 2 and len(err) == 1
    assert f"not a numeric CSV file: {where}, not a number." in err[0]
    assert_untouched(existing_out)


def test_batch_larger_than_data(capsys, existing_out):
    status, err = bad_train(capsys, existing_out, "--data", "moons", "--num-points", "40",
                            "--batch-size", "500")
    assert status == 2 and "--batch-size 500 is larger than the" in err[0]
    assert_untouched(existing_out)


def test_existing_out_without_overwrite(capsys, existing_out):
    status = main(["train", "--data", "moons", *TINY, "--out", str(existing_out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and "exists; pass --overwrite" in err[0]
    assert_untouched(existing_out)


def test_failure_while_writing_leaves_out_as_it_was(capsys, existing_out, monkeypatch):
    cli_main = importlib.import_module("tfp_nice.cli.train")

    def crash(*args, **kwargs):
        raise FileNotFoundError("simulated: the disk went away")

    monkeypatch.setattr(cli_main, "export_saved_model", crash)
    status, err = bad_train(capsys, existing_out, "--data", "moons", "--num-points", "200")
    assert status == 2 and "simulated" in err[0]
    assert_untouched(existing_out)


@pytest.mark.parametrize("argv,message", [
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--epochs", "0"], "expected a positive integer"),
    (["train", "--prior", "cauchy"], "invalid choice: 'cauchy'"),
    (["train", "--validation-split", "1.5"], "expected a fraction"),
    (["sample", "m.keras", "--temperature", "-1"], "expected a finite number > 0"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_options_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_and_corrupt_models(capsys, tmp_path):
    assert main(["sample", str(tmp_path / "none.keras")]) == 2
    assert "No model at" in capsys.readouterr().err
    (tmp_path / "bad.keras").write_bytes(b"not a zip archive")
    assert main(["sample", str(tmp_path / "bad.keras"), "--out", str(tmp_path / "s.npy")]) == 2
    assert "is not a readable .keras model" in capsys.readouterr().err
    assert not (tmp_path / "s.npy").exists()
    (tmp_path / "folder").mkdir()
    assert main(["evaluate", str(tmp_path / "folder"), "--data", "moons"]) == 2
    assert "neither a .keras file nor a SavedModel folder" in capsys.readouterr().err
    broken = tmp_path / "broken_saved"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"garbage")
    assert main(["evaluate", str(broken), "--data", "moons"]) == 2
    assert "not a readable tfp_nice SavedModel" in capsys.readouterr().err


def test_evaluate_with_the_wrong_number_of_columns(capsys, trained_moons):
    folder, _, _ = trained_moons
    status = main(["evaluate", str(folder / "run" / "model.keras"), "--data", "digits"])
    assert status == 2
    assert "64 values per example but the model expects 2" in capsys.readouterr().err


def test_sample_out_must_be_npy(capsys, trained_moons):
    folder, _, _ = trained_moons
    assert main(["sample", str(folder / "run" / "model.keras"), "--out",
                 str(folder / "x.txt")]) == 2
    assert "--out must end in .npy" in capsys.readouterr().err


def test_inpaint_subcommand(tmp_path, capsys):
    assert main(["train", "--data", "digits", *TINY, "--out", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    out = tmp_path / "filled.npy"
    assert main(["inpaint", str(tmp_path / "d" / "model.keras"), "--num-examples", "4",
                 "--num-steps", "20", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.load(out).shape == (4, 64)
    assert (tmp_path / "filled.png").is_file()
    assert set(report) == {"count", "mse_mean_filling", "mse_inpainted", "log_prob_before",
                           "log_prob_after"}
    assert main(["inpaint", str(tmp_path / "d" / "saved_model")]) == 2
    assert "needs a model.keras file" in capsys.readouterr().err
    np.save(tmp_path / "flat.npy", np.random.default_rng(0).normal(size=(10, 64)).astype("f4"))
    status = main(["inpaint", str(tmp_path / "d" / "model.keras"), "--data",
                   str(tmp_path / "flat.npy"), "--hide", "left", "--out", str(out)])
    assert status == 0  # 64 values: taken as 8x8 images
    np.save(tmp_path / "odd.npy", np.zeros((10, 63), "f4"))
    assert main(["inpaint", str(tmp_path / "d" / "model.keras"), "--data",
                 str(tmp_path / "odd.npy")]) == 2
    assert "63 values per example" in capsys.readouterr().err


ARCHITECTURES = {
    "checkerboard": ["--partition", "checkerboard"],
    "halves-zeros": ["--partition", "halves", "--rescaling-init", "zeros"],
    "affine-actnorm-lu": ["--coupling", "affine", "--actnorm", "--permutation", "lu"],
    "reverse": ["--permutation", "reverse"],
    "random-no-rescaling": ["--permutation", "random", "--no-rescaling"],
}


def _unnamed(config):
    """A model's config but its name (Keras numbers the names of a session's models)."""
    return {key: value for key, value in config.items() if key != "name"}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_train_each_architecture_on_digits_then_sample_and_evaluate(tmp_path, capsys, name):
    flags = ARCHITECTURES[name]
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", *TINY, *flags, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["builder"]["builder"] == "nice"
    arch = metrics["builder"]["kwargs"]  # NICE's keyword arguments, verbatim
    assert (arch["num_couplings"], arch["hidden_units"], arch["prior"]) == (2, [8], "logistic")
    expected = {"partition": "odd_even", "coupling": "additive", "actnorm": False,
                "permutation": None, "rescaling": True, "rescaling_init": "data"}
    switches = {"--actnorm": ("actnorm", True), "--no-rescaling": ("rescaling", False)}
    for flag, value in zip(flags, flags[1:] + [None]):
        if flag in switches:
            key, setting = switches[flag]
            expected[key] = setting
        elif flag.startswith("--"):
            expected[flag[2:].replace("-", "_")] = value
    assert {key: arch[key] for key in expected} == expected
    image = name == "checkerboard"  # image partitions keep the digits as 8x8 images
    assert metrics["event_shape"] == ([8, 8] if image else [64])
    import keras
    model = keras.models.load_model(out / "model.keras")
    kinds = {type(step).__name__ for step in model.steps}
    assert ("ActNormStep" in kinds) == expected["actnorm"]
    assert ("LULinearStep" in kinds) == (expected["permutation"] == "lu")
    assert ("PermutationStep" in kinds) == (expected["permutation"] in ("reverse", "random"))
    assert ("RescalingStep" in kinds) == expected["rescaling"]
    rebuilt, _ = architectures.model_from_record(metrics)  # the record alone rebuilds it
    assert _unnamed(rebuilt.get_config()) == _unnamed(model.get_config())
    capsys.readouterr()
    for model_path in (out / "model.keras", out / "saved_model"):
        assert main(["evaluate", str(model_path), "--data", "digits"]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert math.isfinite(result["bits_per_dim"]) and result["count"] == 1797
        assert main(["sample", str(model_path), "--num-samples", "4",
                     "--out", str(tmp_path / "s.npy")]) == 0
        assert np.load(tmp_path / "s.npy").shape == ((4, 8, 8) if image else (4, 64))


def test_channel_partition_on_images_with_channels(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, size=(200, 4, 4, 2), dtype=np.uint8)
    np.save(tmp_path / "rgbish.npy", images)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "rgbish.npy"), *TINY, "--partition",
                 "channel", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["event_shape"] == [4, 4, 2]
    capsys.readouterr()
    assert main(["train", "--data", "digits", *TINY, "--partition", "channel",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "--partition channel needs images with 2 or more channels" in capsys.readouterr().err
    assert main(["train", "--data", "moons", *TINY, "--partition", "checkerboard",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "--partition checkerboard needs image data" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_training_resumes_without_losing_a_finished_epoch(tmp_path):
    import signal
    import time

    command = [str(TFP_NICE), "train", "--data", "moons", "--num-points", "4000",
               "--epochs", "40", "--hidden", "16", "--batch-size", "32", "--patience", "0",
               "--verbose", "0", "--resume", "--out", "run"]
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}
    log = tmp_path / ".run.backup" / "history.csv"
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    finished = 0
    while time.monotonic() < deadline and process.poll() is None:
        finished = len(log.read_text().splitlines()) - 1 if log.is_file() else 0
        if finished >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "run").exists()

    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed_after = int(re.search(r"after epoch (\d+)", done.stdout).group(1))
    # The log row of an epoch is written just before its backup: a kill between the two
    # repeats that one epoch; every epoch whose backup was written is kept.
    assert resumed_after >= finished - 1 >= 2
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 40
    assert len(metrics["history"]["loss"]) == 40
    assert np.all(np.isfinite(metrics["history"]["loss"]))
    assert not (tmp_path / ".run.backup").exists()


class _Killed(Exception):
    """Stands for the process dying right after a backup was written."""


def test_resume_goes_on_from_the_backup_and_keeps_the_finished_epochs(tmp_path, monkeypatch):
    """From a prepared backup (two finished epochs of five), the run takes exactly the three
    epochs left: the finished epochs' losses stay as logged, and the optimizer ends with
    five epochs' steps, not the seven a restart from epoch 0 with the weights kept takes."""
    import keras

    from tfp_nice.cli.resume import EpochBackup

    argv = ["train", "--data", "moons", "--num-points", "400", "--epochs", "5",
            "--hidden", "8", "--couplings", "2", "--batch-size", "32", "--patience", "0",
            "--verbose", "0", "--resume", "--out", str(tmp_path / "run")]
    backup_epoch = EpochBackup.on_epoch_end

    def dies_after_two_epochs(self, epoch, logs=None):
        backup_epoch(self, epoch, logs)
        if epoch + 1 == 2:
            raise _Killed

    monkeypatch.setattr(EpochBackup, "on_epoch_end", dies_after_two_epochs)
    with pytest.raises(_Killed):
        main(argv)
    monkeypatch.undo()
    backup = tmp_path / ".run.backup"
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-2.keras", "history.csv"]
    logged = np.loadtxt(backup / "history.csv", delimiter=",", skiprows=1, ndmin=2)
    header = (backup / "history.csv").read_text().splitlines()[0].split(",")
    finished_losses = logged[:, header.index("loss")].tolist()
    steps_at_backup = int(keras.models.load_model(backup / "epoch-2.keras")
                          .optimizer.iterations.numpy())

    assert main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    steps_per_epoch = math.ceil(metrics["train"]["count"] / 32)
    assert steps_at_backup == 2 * steps_per_epoch
    losses = metrics["history"]["loss"]
    assert len(losses) == 5 and losses[:2] == finished_losses
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == 5 * steps_per_epoch
    assert not backup.exists()


# --- --preset: the presets' model and optimiser from the command line ----------------------


def _mnist_like_idx(folder, n=200):
    """scikit-learn's digits blown up to 28x28 uint8 images, as an IDX file."""
    from sklearn.datasets import load_digits

    digits = load_digits().images[:n]
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 2:26, 2:26] = (np.kron(digits, np.ones((3, 3))) * 15).astype(np.uint8)
    path = pathlib.Path(folder) / "digits28-idx3-ubyte"
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    path.write_bytes(header + images.tobytes())
    return path


def test_train_with_the_affine_mnist_preset(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(_mnist_like_idx(tmp_path)), "--preset", "affine_mnist",
                 "--epochs", "3", "--batch-size", "32", "--verbose", "0", "--patience", "5",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["builder"] == {"builder": "affine_mnist", "kwargs": {"seed": 0}}
    averaged = metrics["history"]["val_averaged_nll"]  # the averages, judged every epoch
    assert len(averaged) == 3 and all(math.isfinite(v) for v in averaged)
    raw = metrics["history"]["val_nll"]  # Keras's own figure: the raw weights
    assert max(abs(a - r) for a, r in zip(averaged, raw)) > 1.0
    # the saved model holds the best epoch's averages
    assert metrics["validation"]["nll"] == pytest.approx(min(averaged), rel=1e-4)
    import keras
    model = keras.models.load_model(out / "model.keras")
    assert model.logit_alpha == 0.05 and model.optimizer.use_ema


@pytest.mark.parametrize("flags, message", [
    (["--couplings", "6"], "--preset affine_mnist sets the model and optimiser; drop "
                           "--couplings."),
    (["--actnorm", "--learning-rate", "0.01"], "drop --actnorm, --learning-rate."),
])
def test_preset_refuses_architecture_flags(capsys, existing_out, flags, message):
    status = main(["train", "--data", "digits", "--preset", "affine_mnist", *flags,
                   "--epochs", "1", "--out", str(existing_out), "--overwrite"])
    err = capsys.readouterr().err
    assert status == 2 and message in err
    assert_untouched(existing_out)


# Every flag the presets fix, typed at its default value (the two switches have none):
# a typed flag is the user's request, and the preset would override it without a word.
_PRESET_FLAGS_AT_DEFAULTS = [["--flow", "nice"], ["--scales", "2"], ["--steps-per-scale", "4"],
                             ["--steps", "5"],
                             ["--couplings", "4"], ["--hidden", "64", "64"],
                             ["--partition", "odd_even"], ["--coupling", "additive"],
                             ["--num-bins", "8"], ["--tail-bound", "3"],
                             ["--actnorm"], ["--permutation", "none"],
                             ["--rescaling-init", "data"], ["--prior", "logistic"],
                             ["--no-rescaling"], ["--learning-rate", "0.001"]]


def test_the_preset_flag_cases_cover_every_flag_a_preset_fixes():
    from tfp_nice.cli.architectures import _PRESET_FIXES

    assert sorted(f[0] for f in _PRESET_FLAGS_AT_DEFAULTS) == sorted(_PRESET_FIXES.values())


@pytest.mark.parametrize("flag", _PRESET_FLAGS_AT_DEFAULTS, ids=lambda f: f[0])
def test_preset_refuses_a_typed_flag_even_at_its_default(capsys, existing_out, flag):
    status = main(["train", "--data", "digits", "--preset", "affine_mnist", *flag,
                   "--epochs", "1", "--out", str(existing_out), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err == [f"tfp-nice train: error: --preset affine_mnist sets the model and "
                   f"optimiser; drop {flag[0]}."]
    assert_untouched(existing_out)


def test_preset_refuses_data_it_is_not_for(capsys, existing_out):
    status = main(["train", "--data", "digits", "--preset", "nice_mnist", "--epochs", "1",
                   "--out", str(existing_out), "--overwrite"])
    err = capsys.readouterr().err
    assert status == 2
    assert ("--preset nice_mnist is for 28x28 images of 256 levels (uint8); digits holds "
            "examples of shape (64,) with 17 levels.") in err
    assert_untouched(existing_out)


# --- --flow multiscale and --preset glow_mnist ------------------------------------------------


def test_train_a_multiscale_flow_on_digits_then_sample_and_evaluate(tmp_path, capsys):
    out = tmp_path / "ms"
    assert main(["train", "--data", "digits", "--flow", "multiscale", "--scales", "2",
                 "--steps-per-scale", "1", "--hidden", "8", "--epochs", "2", "--verbose", "0",
                 "--out", str(out)]) == 0
    assert "training a multi-scale flow on digits: " in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["builder"] == {"builder": "multiscale", "kwargs": {
        "num_scales": 2, "steps_per_scale": 1, "hidden_channels": [8], "coupling": "affine",
        "prior": "normal", "logit_alpha": 0.05, "context_shape": None, "learning_rate": 1e-3,
        "num_levels": 17, "seed": 0}}
    assert metrics["event_shape"] == [8, 8, 1]
    import keras

    import tfp_nice as tn
    model = keras.models.load_model(out / "model.keras")
    assert type(model) is tn.Flow and model.latent_shape == (64,)
    assert any(isinstance(s, tn.FactorOutStep) for s in model.steps)
    assert main(["sample", str(out / "saved_model"), "--num-samples", "5",
                 "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape[0] == 5
    assert main(["evaluate", str(out / "model.keras"), "--data", "digits"]) == 0
    assert "\"bits_per_dim\"" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--scales", "4"], "--scales 4 halves the sides 4 times: the images' sides must be "
                        "multiples of 16; digits's images are 8x8 (try --scales 1)."),
    (["--couplings", "6", "--actnorm"], "--flow multiscale builds its own steps: drop "
                                        "--couplings, --actnorm (its options are --scales, "
                                        "--steps-per-scale, --hidden, --coupling and --prior)."),
])
def test_multiscale_refuses_what_it_cannot_build(capsys, existing_out, flags, message):
    status = main(["train", "--data", "digits", "--flow", "multiscale", *flags, "--epochs", "1",
                   "--out", str(existing_out), "--overwrite"])
    assert status == 2 and message in capsys.readouterr().err
    assert_untouched(existing_out)


@pytest.mark.parametrize("argv,message", [
    (["--data", "digits", "--steps-per-scale", "2"],
     "--flow nice does not take --steps-per-scale (options of --flow multiscale)."),
    (["--data", "moons", "--flow", "multiscale"],
     "--flow multiscale needs images, (n, h, w) or (n, h, w, c) data; moons holds vectors of "
     "2 entries."),
])
def test_train_refuses_data_or_options_its_flow_cannot_take(capsys, existing_out, argv,
                                                            message):
    status = main(["train", *argv, "--epochs", "1", "--out", str(existing_out), "--overwrite"])
    assert status == 2 and message in capsys.readouterr().err
    assert_untouched(existing_out)


def test_train_with_the_glow_mnist_preset_shapes_the_images(tmp_path, monkeypatch):
    """The command line's path for a preset that is an image Flow; the preset is made
    small here (the full one is run by examples/mnist.py in CI)."""
    import keras

    import tfp_nice as tn

    def small(seed=0):
        steps = tn.multiscale_steps((28, 28, 1), steps_per_scale=1, hidden_channels=(4,),
                                    seed=seed)
        model = tn.Flow(steps, num_levels=256, seed=seed, name="glow_mnist")
        return tn.presets.Preset(model, keras.optimizers.Adam(1e-3), None)

    monkeypatch.setattr(tn.presets, "glow_mnist", small)
    out = tmp_path / "run"
    assert main(["train", "--data", str(_mnist_like_idx(tmp_path, n=64)), "--preset",
                 "glow_mnist", "--epochs", "1", "--batch-size", "32", "--verbose", "0",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["event_shape"] == [28, 28, 1]
    assert metrics["builder"] == {"builder": "glow_mnist", "kwargs": {"seed": 0}}
    assert (out / "samples.png").exists()


def test_the_glow_mnist_preset_refuses_digits(capsys, existing_out):
    status = main(["train", "--data", "digits", "--preset", "glow_mnist", "--epochs", "1",
                   "--out", str(existing_out), "--overwrite"])
    assert status == 2
    assert ("--preset glow_mnist is for 28x28 images of 256 levels (uint8); digits holds "
            "examples of shape (64,) with 17 levels.") in capsys.readouterr().err
    assert_untouched(existing_out)


# --- class-conditional flows: train --labels, sample --label, evaluate/inpaint --labels ----


@pytest.fixture(scope="module")
def trained_digits_given_labels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_labels")
    done = run_cli("train", "--data", "digits", "--labels", "builtin", "--epochs", "15",
                   "--hidden", "64", "--couplings", "4", "--verbose", "0", "--out", "run",
                   cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, folder / "run"


def _digits_labels():
    from sklearn.datasets import load_digits as sklearn_digits  # the labels' own source

    return sklearn_digits().target


def test_train_with_labels_writes_a_class_conditional_model(trained_digits_given_labels):
    import keras

    folder, out = trained_digits_given_labels
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_classes"] == 10 and finite_numbers(metrics)
    assert sorted(p.name for p in out.iterdir()) == [
        "loss.png", "metrics.json", "model.keras", "samples.png", "saved_model"]
    model = keras.models.load_model(out / "model.keras")
    assert model.context_shape == (10,)
    # The labels went with their rows: the data scored given scikit-learn's own labels
    # beat the same data given the labels shuffled, in process and from the CLI.
    import tfp_nice as tn

    raw, _ = tn.data.load_digits()
    x = tn.data.dequantize(raw, 17, seed=0)
    labels = _digits_labels()
    right = -float(np.mean(model.log_prob(x, context=np.eye(10, dtype="float32")[labels])))
    shuffled = np.random.default_rng(0).permutation(labels)
    wrong = -float(np.mean(model.log_prob(x, context=np.eye(10, dtype="float32")[shuffled])))
    assert right < wrong - 2.0, (right, wrong)
    np.save(folder / "shuffled.npy", shuffled)
    np.savetxt(folder / "labels.csv", labels, fmt="%d")
    for path in ("run/model.keras", "run/saved_model"):
        for given, expected in (("labels.csv", right), ("shuffled.npy", wrong)):
            done = run_cli("evaluate", path, "--data", "digits", "--labels", given, cwd=folder)
            assert done.returncode == 0, done.stderr[-3000:]
            report = json.loads(done.stdout.strip().splitlines()[-1])
            assert report["nll"] == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_sample_given_a_label_agrees_between_the_keras_file_and_the_saved_model(
        trained_digits_given_labels):
    import keras

    folder, out = trained_digits_given_labels
    for path, name in (("run/model.keras", "k"), ("run/saved_model", "s")):
        done = run_cli("sample", path, "--label", "3", "--num-samples", "12", "--seed", "4",
                       "--out", f"{name}.npy", cwd=folder)
        assert done.returncode == 0, done.stderr[-3000:]
    keras_samples, served = np.load(folder / "k.npy"), np.load(folder / "s.npy")
    assert keras_samples.shape == (12, 64)
    np.testing.assert_allclose(keras_samples, served, rtol=1e-5, atol=1e-5)
    # drawn given label 3: each scores higher given 3 than on average over other labels
    model = keras.models.load_model(out / "model.keras")
    eye = np.eye(10, dtype="float32")
    scores = np.stack([model.log_prob(keras_samples, context=np.repeat(eye[[k]], 12, 0))
                       for k in range(10)], 1)
    assert np.mean(scores[:, 3] > np.delete(scores, 3, axis=1).mean(1)) >= 0.75


def test_inpaint_given_labels(trained_digits_given_labels):
    folder, _ = trained_digits_given_labels
    done = run_cli("inpaint", "run/model.keras", "--data", "digits", "--labels", "builtin",
                   "--num-examples", "8", "--num-steps", "30", "--out", "filled.npy",
                   cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    assert np.load(folder / "filled.npy").shape == (8, 64)


_CONDITIONAL, _UNCONDITIONAL = "trained_digits_given_labels", "trained_moons"


@pytest.mark.parametrize("fixture, argv, message", [
    (_CONDITIONAL, ["sample", "run/model.keras"],
     "is class-conditional: give --label K with K in 0..9 (got no --label)"),
    (_CONDITIONAL, ["sample", "run/saved_model", "--label", "10"],
     "give --label K with K in 0..9 (got --label 10)"),
    (_CONDITIONAL, ["evaluate", "run/saved_model", "--data", "digits"],
     "is class-conditional (10 classes): give the labels of --data"),
    (_CONDITIONAL, ["evaluate", "run/model.keras", "--data", "digits", "--labels", "few.npy"],
     "holds 5 labels for 1797 examples"),
    (_CONDITIONAL, ["evaluate", "run/model.keras", "--data", "digits", "--labels",
                    "negative.npy"], "row 2 holds -1, not a class label"),
    (_CONDITIONAL, ["evaluate", "run/model.keras", "--data", "digits", "--labels", "big.npy"],
     "label 12 is not one of the model's 10 classes"),
    (_CONDITIONAL, ["evaluate", "run/model.keras", "--data", "digits", "--labels",
                    "missing.npy"], "no such file"),
    (_UNCONDITIONAL, ["sample", "run/model.keras", "--label", "1"], "not class-conditional"),
    (_UNCONDITIONAL, ["evaluate", "run/saved_model", "--data", "moons", "--labels",
                      "labels.npy"],
     "not class-conditional (trained without --labels); drop --labels"),
])
def test_label_options_that_do_not_fit_the_model_are_refused(request, fixture, argv, message):
    folder = request.getfixturevalue(fixture)[0]
    np.save(folder / "few.npy", np.arange(5))
    np.save(folder / "negative.npy", np.array([0, 1, -1] + [0] * 1794))
    np.save(folder / "big.npy", np.array([12] + [0] * 1796))
    np.save(folder / "labels.npy", np.zeros(10000, int))
    done = run_cli(*argv, cwd=folder)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("flags, message", [
    (["--data", "moons", "--labels", "builtin"], "--data moons has none built in"),
    (["--data", "digits", "--labels", "builtin", "--preset", "nice_mnist"],
     "--preset nice_mnist is NICE's unconditional model"),
])
def test_train_refuses_labels_it_cannot_use(capsys, existing_out, flags, message):
    status = main(["train", *flags, "--epochs", "1", "--out", str(existing_out),
                   "--overwrite"])
    assert status == 2 and message in capsys.readouterr().err
    assert_untouched(existing_out)


@pytest.mark.parametrize("run", ["nice_spline", "ms_labels"])
def test_records_of_the_format_before_builders_still_read(run):
    """metrics.json files written before records held the builder (their "architecture"
    and flags, by the code of that time, beside the model it saved) rebuild the same
    architecture: the rebuilt model's config is the saved model's."""
    import keras

    folder = pathlib.Path(__file__).parent / "fixtures"
    metrics = json.loads((folder / f"metrics_0.1.0_{run}.json").read_text())
    assert "architecture" in metrics and "builder" not in metrics
    builder, kwargs = architectures.read_record(metrics)
    assert builder == {"nice_spline": "nice", "ms_labels": "multiscale"}[run]
    rebuilt, optimizer = architectures.model_from_record(metrics)
    saved = keras.models.load_model(folder / f"metrics_0.1.0_{run}.keras")
    assert _unnamed(rebuilt.get_config()) == _unnamed(saved.get_config())
    assert float(optimizer.learning_rate) == pytest.approx(metrics["arguments"]["learning_rate"])
    with pytest.raises(ValueError, match="holds no record of its architecture"):
        architectures.read_record({"data": "digits"})


def test_every_builder_of_the_table_builds_its_model():
    """The table's builders, by name, with the keyword arguments a record holds."""
    import tfp_nice as tn

    nice, _ = architectures.BUILDERS["nice"]((4,), num_couplings=2, hidden_units=[4])
    assert type(nice).__name__ == "NICE" and nice.event_shape == (4,)
    flow, _ = architectures.BUILDERS["multiscale"]((4, 4, 1), num_scales=1, steps_per_scale=1,
                                                   hidden_channels=[4])
    assert type(flow).__name__ == "Flow" and flow.event_shape == (4, 4, 1)
    for name, inverse in (("maf", False), ("iaf", True)):
        ar, _ = architectures.BUILDERS[name]((3,), num_steps=2, hidden_units=[4],
                                             num_bins=4, tail_bound=2.0)
        assert ar.event_shape == (3,) and [s.inverse for s in ar.steps] == [inverse] * 2
        assert ar.steps[0].transformer == tn.Spline(num_bins=4, tail_bound=2.0)
    assert set(architectures.BUILDERS) == {"nice", "multiscale", "maf", "iaf", "affine_mnist",
                                           "glow_mnist", "nice_mnist"}

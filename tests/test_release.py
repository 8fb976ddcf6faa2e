"""What a release promises: metadata and licence, a lean library, a fast and quiet command
line, outputs that follow the umask, messages in the CLI's terms, labelled plots."""

import contextlib
import gzip
import importlib
import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import tfp_nice as tn
from tfp_nice._fs import staged_dir
from tfp_nice.cli import plots
from tfp_nice.cli.inputs import InputError, load_dataset
from tfp_nice.cli.main import _load_tensorflow_quietly
from tfp_nice.data import download_mnist

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORE = {"tensorflow", "tensorflow-probability", "keras", "numpy"}


def run_python(code, env=None, timeout=300):
    """Runs `code` in a fresh interpreter (from the repository root); returns the process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---- metadata -------------------------------------------------------------------------

def test_metadata_licence_and_lean_requirements():
    meta = importlib.metadata.metadata("tfp_nice")
    assert meta["Version"] == tn.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Author"]
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in meta.get_all("Classifier"))
    requires = meta.get_all("Requires-Dist")
    always = {re.split(r"[\[<>=!;\s]", r, maxsplit=1)[0].lower()
              for r in requires if "extra ==" not in r}
    assert always == CORE
    cli = {re.split(r"[\[<>=!;\s]", r, maxsplit=1)[0].lower()
           for r in requires if 'extra == "cli"' in r}
    assert cli == {"scikit-learn", "matplotlib"}
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence


def test_changelog_dates_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    heading = re.search(rf"^## \[{re.escape(tn.__version__)}\] - (\d{{4}}-\d{{2}}-\d{{2}})$",
                        changelog, flags=re.M)
    assert heading, f"CHANGELOG.md has no dated heading for {tn.__version__}"
    assert changelog.index("## [Unreleased]") < heading.start()


# ---- lazy TensorFlow ------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"],
                                  ["train", "--epochs", "0"]])
def test_cli_answers_without_importing_tensorflow(argv):
    proc = run_python(f"""
        import sys
        from tfp_nice.cli.main import main
        try:
            main({argv!r})
        except SystemExit as exit:
            print("exit", exit.code)
        print("tensorflow imported:", "tensorflow" in sys.modules)
    """)
    assert "tensorflow imported: False" in proc.stdout, proc.stdout + proc.stderr
    if argv == ["--version"]:
        assert f"tfp_nice {tn.__version__}" in proc.stdout


def test_import_is_lazy_and_every_name_loads_on_first_use():
    proc = run_python("""
        import sys
        import tfp_nice as tn
        print("after import:", "tensorflow" in sys.modules)
        tn.Rescaling
        print("after a name:", "tensorflow" in sys.modules)
        print("all bound:", all(name in vars(tn) for name in tn.__all__))
    """)
    assert "after import: False" in proc.stdout, proc.stderr
    assert "after a name: True" in proc.stdout
    assert "all bound: True" in proc.stdout


def test_the_lazy_name_list_and_what_static_tools_see_agree():
    # `_NAMES` drives the lazy import; the TYPE_CHECKING block is what type checkers and the
    # API reference read. A name added to one and not the other must fail here.
    import ast

    source = pathlib.Path(tn.__file__).read_text()
    tree = ast.parse(source)
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and getattr(node.test, "id", None) == "TYPE_CHECKING")
    static = {}
    for node in block.body:
        for alias in node.names:
            static[alias.asname or alias.name] = node.module
    names = tn._NAMES
    assert set(static) == set(names) | set(tn._SUBPACKAGES)
    for name, module in names.items():
        assert static[name] == module, name
        assert getattr(importlib.import_module(module), name) is getattr(tn, name)


@pytest.mark.parametrize("imports", ["import keras\nimport tfp_nice",
                                     "import tfp_nice\nimport keras"],
                         ids=["keras-first", "tfp_nice-first"])
def test_keras_finds_the_classes_whatever_the_import_order(tmp_path, imports):
    """`import tfp_nice` and Keras in either order, then `keras.models.load_model`."""
    model = tn.NICE((2,), num_couplings=2, hidden_units=(8,), rescaling_init="zeros")
    model.save(tmp_path / "m.keras")
    proc = run_python(imports + f"""
model = keras.models.load_model({str(tmp_path / "m.keras")!r})
print(type(model).__name__, model.log_prob([[0.1, 0.2]]).shape)
import sys
print("finder left:", any(type(f).__name__ == "_LoadAfterKeras" for f in sys.meta_path))
""")
    assert "NICE (1,)" in proc.stdout, proc.stderr[-2000:]
    assert "finder left: False" in proc.stdout


def test_the_cli_keeps_tensorflow_start_up_logs_off_stderr(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = run_python(f"""
        import sys
        from tfp_nice.cli.main import main
        sys.exit(main(["train", "--data", "moons", "--num-points", "100", "--epochs", "1",
                       "--hidden", "8", "--couplings", "2", "--verbose", "0",
                       "--out", {str(tmp_path / "run")!r}]))
    """, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    native = [line for line in proc.stderr.splitlines()
              if re.match(r"^[IWEF]\d{4} ", line) or "absl::InitializeLog" in line]
    assert native == []


def test_a_user_set_log_level_is_left_alone(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    _load_tensorflow_quietly()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


# ---- lean install ---------------------------------------------------------------------

_BLOCK_EXTRAS = """
import importlib.abc
import sys

class _NoExtras(importlib.abc.MetaPathFinder):
    # What a fresh `pip install tfp_nice` (no extras) lacks.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sklearn", "matplotlib"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoExtras())
"""


def test_library_and_cli_without_scikit_learn_and_matplotlib(tmp_path):
    """Import, build, train and export without the extras; the CLI names the extra."""
    x = np.random.default_rng(0).normal(size=(40, 2)).astype("float32")
    np.savetxt(tmp_path / "points.csv", x, delimiter=",")
    code = _BLOCK_EXTRAS + textwrap.dedent(f"""
        import contextlib, io, json
        import keras
        import numpy as np
        import tfp_nice as tn

        tmp = {str(tmp_path)!r}
        x = tn.data.two_moons(256, seed=0)
        model = tn.NICE((2,), num_couplings=2, hidden_units=(16,))
        model.compile(keras.optimizers.Adam(1e-3))
        model.fit(x, epochs=1, batch_size=64, verbose=0)
        model.export(tmp + "/served")
        print("log_prob", model.log_prob(x[:3]).shape)
        try:
            tn.data.load_digits()
        except ImportError as err:
            print("digits:", type(err).__name__, err)

        from tfp_nice.cli.main import main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = main(["train", "--data", "moons", "--epochs", "1", "--out", tmp + "/run"])
        print("train:", status, json.dumps(err.getvalue()))
        with contextlib.redirect_stderr(err):
            status = main(["evaluate", tmp + "/served", "--data", tmp + "/points.csv"])
        print("evaluate:", status)
        print("extras imported:", [m for m in ("sklearn", "matplotlib") if m in sys.modules])
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "log_prob (3,)" in out
    assert ("digits: MissingExtraError the digits data set (scikit-learn's) needs scikit-learn, "
            "which is not installed: pip install 'tfp_nice[cli]'") in out
    train_line = next(line for line in out.splitlines() if line.startswith("train:"))
    status, message = train_line.split(" ", 2)[1:]
    assert status == "2"
    assert json.loads(message) == ("tfp-nice train: error: drawing tfp-nice's plots needs matplotlib, "
                                   "which is not installed: pip install 'tfp_nice[cli]'\n")
    assert not (tmp_path / "run").exists()
    assert "evaluate: 0" in out
    assert "extras imported: []" in out


def test_a_missing_extra_is_named_before_tensorflow_loads():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", _BLOCK_EXTRAS + textwrap.dedent("""
        from tfp_nice.cli.main import main
        status = main(["sample", "model.keras"])
        print("status", status, "tensorflow imported:", "tensorflow" in sys.modules)
    """)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "status 2 tensorflow imported: False" in proc.stdout, proc.stderr
    assert proc.stderr == ("tfp-nice sample: error: drawing tfp-nice's plots needs matplotlib, "
                           "which is not installed: pip install 'tfp_nice[cli]'\n")


# ---- file modes -----------------------------------------------------------------------

@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_output_folders_follow_the_umask(tmp_path, mask):
    with umask(mask):
        with staged_dir(tmp_path / "out") as tmp:
            (tmp / "file.txt").write_text("x")
            (tmp / "sub").mkdir()
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "out" / "sub").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "out" / "file.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_exported_model_and_downloads_follow_the_umask(tmp_path):
    model = tn.NICE((2,), num_couplings=2, hidden_units=(8,), rescaling_init="zeros")
    source = tmp_path / "source"
    source.mkdir()
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in images.shape)
    labels = bytes([0, 0, 0x08, 1]) + (2).to_bytes(4, "big") + bytes([1, 7])
    (source / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with umask(0o022):
        model.export(tmp_path / "served")
        downloaded = download_mnist(tmp_path / "mnist", "t10k", base_url=source.as_uri() + "/")
    exported = [tmp_path / "served", *(tmp_path / "served").rglob("*")]
    assert {p.stat().st_mode & 0o777 for p in exported if p.is_dir()} == {0o755}
    assert {p.stat().st_mode & 0o777 for p in exported if p.is_file()} == {0o644}
    assert [p.stat().st_mode & 0o777 for p in downloaded] == [0o644, 0o644]
    np.testing.assert_array_equal(tn.data.load_mnist(*downloaded)[0], images)


# ---- messages -------------------------------------------------------------------------

@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("content,message", [
    ("", r"empty\.csv holds no rows of numbers \(an empty CSV file\)\."),
    ("a,b,c\n", r"empty\.csv holds no rows of numbers"),
    ("1,2,3\n4,5,6\n7,8\n", r"empty\.csv: line 3 has 2 values but the lines before it have 3; "
                            "every line needs the same number of comma-separated values"),
    ("a,b,c\n1,2,3\n4,5,6,7\n", r"empty\.csv: line 3 has 4 values but the lines before it "
                                "have 3"),
])
def test_csv_messages_speak_the_cli_terms(tmp_path, no_warnings, content, message):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        load_dataset(str(path))
    assert "usecols" not in str(info.value)


def test_a_folder_as_data_is_called_a_folder(tmp_path):
    with pytest.raises(InputError, match=r"--data .* is a folder; give a data file"):
        load_dataset(str(tmp_path))


# ---- plots ----------------------------------------------------------------------------

@pytest.fixture
def drawn(monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    return figures


def test_plots_have_titles_labels_and_a_colour_bar(drawn):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 2)).astype("float32")
    plots.density_map(lambda g: -0.5 * np.sum(g ** 2, axis=1), points, "d.png", resolution=20)
    plots.samples_picture(points, None, "s.png")
    plots.samples_picture(rng.uniform(size=(10, 64)), (8, 8), "i.png")
    plots.loss_curves({"nll": [3.0, 2.0], "val_nll": [3.1, 2.2]}, "l.png")
    plots.scatter_pair(points, points, "p.png")

    density, scatter, grid, loss, pair = drawn
    main_ax, bar = density.axes  # the map and its colour bar
    assert main_ax.get_title() == "model density"
    assert (main_ax.get_xlabel(), main_ax.get_ylabel()) == ("$x_1$", "$x_2$")
    assert bar.get_ylabel() == "density p(x)"
    assert bar.get_ylim()[1] == pytest.approx(1.0, abs=0.05)  # exp of the largest log p, 0
    assert scatter.axes[0].get_title() == "model samples (50)"
    assert scatter.axes[0].get_xlabel() == "$x_1$"
    assert grid.get_suptitle() == "model samples (10)"
    assert loss.axes[0].get_title() and loss.axes[0].get_xlabel() == "epoch"
    assert [ax.get_title() for ax in pair.axes] == ["data (50 points)", "model samples (50)"]

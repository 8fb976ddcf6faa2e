"""The README's code blocks run in order, as a reader would run them, and what they print is
what they say."""

import contextlib
import io
import os
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import tensorflow as tf

import tfp_nice as tn

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BIN = pathlib.Path(sys.executable).parent

# The shell blocks not run here, by their first word, and where each is run instead.
NOT_RUN_HERE = {
    "make": "the set-up's two commands, `make dist` (its wheel installed by "
            ".ci/release_check in a fresh environment) and `make bench`: .ci/run runs each "
            "on a clean clone",
    "TF_CONFIG": "needs two hosts; tests/test_distributed.py runs two workers on 127.0.0.1",
}


def _blocks():
    """`(language, code)` of every fenced block, in the README's order."""
    return re.findall(r"```(\w*)\n(.*?)```", README.read_text(), flags=re.S)


def _commands(code):
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = code.replace("\\\n", " ")
    return [line for line in (raw.split("  #")[0].strip() for raw in joined.splitlines())
            if line and not line.startswith("#")]


def _run_shell(code, cwd):
    outputs = []
    for command in _commands(code):
        words = shlex.split(command)
        words[0] = str(BIN / words[0]) if (BIN / words[0]).exists() else words[0]
        done = subprocess.run(words, cwd=cwd, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    return outputs


def test_every_shell_block_is_run_here_or_said_where():
    first_words = {shlex.split(_commands(code)[0])[0].split("=")[0]
                   for lang, code in _blocks() if lang == "sh"}
    runnable = {"saved_model_cli"}
    assert first_words == runnable | set(NOT_RUN_HERE)


def test_the_install_block_names_this_version():
    install = next(code for lang, code in _blocks() if lang == "sh" and "pip install" in code)
    assert _commands(install)[0] == "make dist"  # the wheel exists before it is installed
    wheels = set(re.findall(r"dist/tfp_nice-([\w.]+)-py3-none-any\.whl", install))
    assert wheels == {tn.__version__}


def test_readme_blocks_run_in_order(tmp_path, monkeypatch, mirrored_strategy):
    monkeypatch.chdir(tmp_path)
    # One MirroredStrategy per process (see conftest): the snippet gets the shared one.
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda *a, **k: mirrored_strategy)
    blocks = _blocks()
    assert sum(lang == "python" for lang, _ in blocks) >= 8
    namespace, shell = {}, []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for lang, code in blocks:
            if lang == "python":
                exec(compile(code, str(README), "exec"), namespace)  # noqa: S102
            elif lang == "sh" and "saved_model_cli" in code:
                shell += _run_shell(code, tmp_path)
            # the other shell blocks are in NOT_RUN_HERE; `text` blocks are not commands
    assert namespace["conv_flow"].encode(namespace["images"][:3]).shape == (3, 4, 4, 4)
    assert (tmp_path / "flow.keras").is_file()
    assert (tmp_path / "flow_saved_model" / "saved_model.pb").is_file()
    assert namespace["x"].shape == (5, 6)
    assert namespace["sevens"].shape == (4, 1, 64)  # served given a context
    assert "(3,) (4, 1, 64)" in out.getvalue()
    assert namespace["log_p"].shape == (5,)
    assert not namespace["maf"].steps[0].inverse and namespace["iaf"].steps[0].inverse
    assert out.getvalue().count("(3, 2)\n") >= 2  # a MAF's and an IAF's samples
    assert namespace["h"].shape == (5, 6)
    sbi_draws = namespace["sbi_draws"].numpy()  # the posterior's draws stay in the prior's box
    assert sbi_draws.shape == (1000, 2) and np.all(np.abs(sbi_draws) < 2.0)
    assert np.isfinite(namespace["log_q"].numpy()).all()
    assert (tmp_path / "posterior.keras").is_file()
    vi_draws = namespace["vi_draws"]  # the surrogate's draws in the model's parts
    assert sorted(vi_draws) == ["mu", "tau", "z"] and vi_draws["z"].shape == (2000, 8)
    assert np.all(vi_draws["tau"].numpy() > 0)
    assert np.isfinite(namespace["losses"].numpy()).all()
    assert (tmp_path / "surrogate.keras").is_file()
    assert "[0.3 0.3 0.3]" in out.getvalue()
    assert "'bits_per_dim'" in out.getvalue()
    assert namespace["samples"].shape == (16, 64)
    assert (tmp_path / "nice.keras").is_file()
    assert namespace["served_log_p"].shape == (2,)
    assert namespace["filled"].shape == (4, 64)
    observed = namespace["observed"]
    np.testing.assert_array_equal(namespace["filled"].numpy()[:, observed],
                                  namespace["digits"][1400:1404][:, observed])
    # The GradientTape loop saw every trainable weight of the model.
    assert len(namespace["grads"]) == len(namespace["model"].trainable_variables)
    assert all(g is not None for g in namespace["grads"])
    assert (tmp_path / "nice_saved" / "saved_model.pb").is_file()
    # saved_model_cli: show, then log_prob of x.npy (what the model says of it), then sample.
    show, scored, sampled = shell
    assert "signature_def['log_prob']" in show and "signature_def['sample']" in show
    served = np.array(re.findall(r"-?\d+\.\d*(?:e[-+]?\d+)?",
                                 scored.split("log_prob")[-1]), dtype=float)
    np.testing.assert_allclose(served, namespace["model"].log_prob(np.load("x.npy")),
                               rtol=1e-5)
    assert "Result for output key x" in sampled

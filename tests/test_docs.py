"""The README's Python snippets run, and what they print is what they say."""

import contextlib
import io
import pathlib
import re

import numpy as np
import tensorflow as tf

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_snippets_run(tmp_path, monkeypatch, mirrored_strategy):
    monkeypatch.chdir(tmp_path)
    # One MirroredStrategy per process (see conftest): the snippet gets the shared one.
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda *a, **k: mirrored_strategy)
    blocks = _python_blocks()
    assert len(blocks) >= 2
    namespace = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["x"].shape == (5, 6)
    assert namespace["log_p"].shape == (5,)
    assert namespace["h"].shape == (5, 6)
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

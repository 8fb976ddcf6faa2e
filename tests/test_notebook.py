"""The tutorial notebook runs from top to bottom (at quick settings) and shows what it says."""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


def _text(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"
                   and o.get("name") == "stdout")


@pytest.mark.slow
def test_tutorial_notebook_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("TFP_NICE_QUICK", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert errors == []
    printed = "\n".join(_text(cell) for cell in code)
    assert "trainable variables TFP sees: 25" in printed
    assert "held-out" in printed and "bits/dim" in printed
    assert "tfp_nice imported: False" in printed
    pictures = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 2  # the training curve and the samples

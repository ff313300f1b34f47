"""notebooks/postergen.ipynb runs top to bottom, headless, on CPU, with the built-in posters and nothing downloaded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "postergen.ipynb"

# Appended to the parameters cell, as papermill would inject them: 200 built-in posters at 32 px, a
# few training steps with a grid every 10, and the pixel metrics on 64 posters (no network to load).
TINY = """
DATA_SOURCE = "synthetic"
SIZE = 32
N_SYNTHETIC = 200
BUDGET_MINUTES = 2
EXTRA_TRAIN_ARGS = "--steps 20 --batch 16 --ngf 16 --ndf 16 --sample-every 10 --checkpoint-every 20 --no-tensorboard --device cpu"
EVAL_N = 64
EVAL_METRICS = "swd,diversity"
"""


def parameters_cell(notebook) -> nbformat.NotebookNode:
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    return tagged[0]


def kernel_of_this_python(root: Path) -> str:
    """A kernel spec that starts this interpreter (the venv's), found before any other on JUPYTER_PATH."""
    spec = root / "kernels" / "postergen-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "postergen test", "language": "python"}))
    return "postergen-test"


def texts(outputs) -> str:
    parts = []
    for out in outputs:
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_parameters_cell_switches_source_size_preset_and_budget():
    source = parameters_cell(nbformat.read(NOTEBOOK, as_version=4)).source
    for name in ("DATA_SOURCE", "SIZE", "PRESET", "BUDGET_MINUTES"):
        assert f"\n{name} = " in "\n" + source, name


@pytest.mark.slow
def test_notebook_runs_headless_on_cpu(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = parameters_cell(notebook)
    cell.source += "\n" + TINY

    jupyter = tmp_path / "jupyter"
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("POSTERGEN_NOTEBOOK_TEST", "1")  # the install cell installs nothing
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1] / "src"))
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # any HTTP(S) request fails at once
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    work = tmp_path / "work"
    work.mkdir()

    client = nbclient.NotebookClient(notebook, kernel_name=kernel_of_this_python(jupyter), timeout=300,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    outputs = [out for c in notebook.cells if c.cell_type == "code" for out in c.outputs]
    assert "skipping the install" in texts(outputs)
    pngs = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(pngs) >= 3, "expected the training grid, the loss plot and the sampled grid inline"
    train_cell = next(c for c in notebook.cells if "grid_view.update" in c.source)
    assert any("image/png" in out.get("data", {}) for out in train_cell.outputs), "no grid shown during training"
    printed = texts(outputs)
    assert "swd mean" in printed and "diversity ratio" in printed, printed[-3000:]
    assert (work / "postergen-work" / "run" / "report.html").exists()
    assert (work / "postergen-work" / "postergen-run.zip").exists()
    assert not (work / "postergen-work" / "raw").exists()  # nothing fetched from Kaggle

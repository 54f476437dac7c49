"""Every notebook runs top to bottom in a fresh kernel (on a tiny budget).

The notebooks read ``DEEL_EBM_NOTEBOOK_EPOCHS`` and ``DEEL_EBM_NOTEBOOK_N_TRAIN``
to shrink their budget; otherwise they run as a reader runs them, in their own
kernel, so nothing imported by the test suite can hide a missing import.
"""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_a_fresh_kernel(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("DEEL_EBM_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("DEEL_EBM_NOTEBOOK_N_TRAIN", "1024")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError with the cell and its traceback
    outputs = [
        out.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
    ]
    assert any("KL" in text for text in outputs), "the notebook reports no exact KL"


def test_there_is_a_notebook():
    assert NOTEBOOKS

"""Every notebook runs top to bottom (on a tiny budget)."""

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.setenv("DEEL_EBM_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("DEEL_EBM_NOTEBOOK_N_TRAIN", "1024")
    cells = json.loads(path.read_text())["cells"]
    namespace = {"__name__": "__notebook__"}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    assert namespace["exact"]["kl"] > 0
    assert namespace["lower"] <= namespace["upper"] <= 20.0 * (1 + 1e-3)


def test_there_is_a_notebook():
    assert NOTEBOOKS

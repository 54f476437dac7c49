"""The notebooks: each runs top to bottom in a fresh kernel (on a tiny budget),
opens with the same install cell, and is committed without outputs.

The notebooks read ``DEEL_EBM_NOTEBOOK_EPOCHS`` and ``DEEL_EBM_NOTEBOOK_N_TRAIN``
to shrink their budget; otherwise they run as a reader runs them, in their own
kernel, so nothing imported by the test suite can hide a missing import.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import deel_ebm

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
#: what each notebook must print (in its stream outputs) when it has run
REPORTS = {
    "quickstart.ipynb": ("exact KL", "certified radii"),
    "tour_2d.ipynb": ("densities:", "exact KL", "certified AUROC"),
    "digits.ipynb": ("classifier confidence", "OneClassSVM", "certified AUROC"),
    "joint_digits.ipynb": (
        "test accuracy",
        "ECE",
        "certified accuracy",
        "class agreement",
        "certified AUROC",
    ),
}


def _read(path) -> dict:
    return json.loads(Path(path).read_text())


def _code_cells(notebook) -> list[str]:
    return [
        "".join(cell["source"])
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
    ]


def unstripped_cells(notebook) -> list[int]:
    """Indices of the code cells that keep outputs or an execution count."""
    return [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def _imports(source) -> list[str]:
    """Top-level module names imported by ``source``, in order."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module.split(".")[0])
    return names


def test_there_is_a_notebook():
    assert NOTEBOOKS


def test_every_notebook_says_what_it_reports():
    assert sorted(REPORTS) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    assert unstripped_cells(_read(path)) == [], f"{path.name}: strip the outputs"


def test_the_stripping_check_sees_outputs_and_counts():
    notebook = _read(NOTEBOOKS[0])
    first = next(i for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code")
    with_output = json.loads(json.dumps(notebook))
    with_output["cells"][first]["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": "1\n"}
    ]
    counted = json.loads(json.dumps(notebook))
    counted["cells"][first]["execution_count"] = 3
    assert unstripped_cells(with_output) == [first]
    assert unstripped_cells(counted) == [first]


def test_every_notebook_opens_with_the_same_install_cell():
    firsts = {_code_cells(_read(path))[0] for path in NOTEBOOKS}
    assert len(firsts) == 1, "the install cells differ"
    (install,) = firsts
    assert 'find_spec("deel_ebm") is None' in install
    assert f'REF = "v{deel_ebm.__version__}"' in install  # pinned to this version
    assert "tensorflow" not in _imports(install)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_deel_ebm_is_imported_before_tensorflow(path):
    imports = [name for cell in _code_cells(_read(path)) for name in _imports(cell)]
    assert "deel_ebm" in imports and "tensorflow" in imports
    assert imports.index("deel_ebm") < imports.index("tensorflow")


def _run_install_cell(repo_url, installed):
    """The install cell in a fresh interpreter, pip replaced by a recorder."""
    install = _code_cells(_read(NOTEBOOKS[0]))[0]
    install = install.replace('REPO_URL = ""', f"REPO_URL = {repo_url!r}", 1)
    driver = f"""
import importlib.util, subprocess, sys
calls = []
subprocess.check_call = lambda cmd: calls.append(cmd)
if not {installed!r}:
    real = importlib.util.find_spec
    def find_spec(name, *a):  # missing until pip (the recorder) has run
        if name == "deel_ebm" and not calls:
            return None
        return real(name, *a)
    importlib.util.find_spec = find_spec
exec(compile({install!r}, "install", "exec"))
print("CALLS", calls)
print("TENSORFLOW", "tensorflow" in sys.modules)
"""
    return subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, timeout=120
    )


def test_install_cell_does_nothing_when_deel_ebm_is_installed():
    run = _run_install_cell("", installed=True)
    assert run.returncode == 0, run.stderr
    assert "CALLS []" in run.stdout and "TENSORFLOW False" in run.stdout


def test_install_cell_pip_installs_the_pinned_repository():
    run = _run_install_cell("https://git.example/deel-ebm.git", installed=False)
    assert run.returncode == 0, run.stderr
    ref = f"v{deel_ebm.__version__}"
    command = [sys.executable, "-m", "pip", "install", "-q"]
    expected = [*command, f"deel-ebm @ git+https://git.example/deel-ebm.git@{ref}"]
    assert f"CALLS [{expected!r}]" in run.stdout
    assert "TENSORFLOW False" in run.stdout


def test_install_cell_without_a_url_says_what_to_set():
    run = _run_install_cell("", installed=False)
    assert run.returncode != 0
    assert "set REPO_URL" in run.stderr.strip().splitlines()[-1]


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
    printed = "".join(
        out.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
    )
    for report in REPORTS[path.name]:
        assert report in printed, f"{path.name} does not print {report!r}"

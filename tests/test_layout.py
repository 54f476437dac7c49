"""The architecture, read from the imports: layers import downwards only.

The rules (docs/architecture.md):

- ``core/`` imports no export, callback, measurement or application module, nor
  matplotlib or scikit-learn;
- the measurement packages (certificates, metrics, datasets, baselines, plotting)
  do not import ``core/``;
- nothing in the library imports ``app/``;
- nobody outside a package uses that package's ``_private`` names (benchmarks and
  ``app/`` use the public API only);
- no import cycle between modules, lazy (function-level) imports included.

Every import statement counts, including those inside functions. The checker is
tested on a synthetic tree, so it can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "deel_ebm"
MEASUREMENT = ("certificates", "metrics", "datasets", "baselines", "plotting")
NOT_FOR_CORE = ("export", "callbacks", "app", *MEASUREMENT)
THIRD_PARTY_NOT_FOR_CORE = ("matplotlib", "sklearn")
BOTTOM = ("nets", "datasets")  # above _checks/_backend only (nets: deel-lip too)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def collect_modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """``{dotted name: path}`` of every module of ``package`` under ``root``."""
    return {
        module_name(p, root): p
        for p in sorted((root / package).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _resolve(name: str, modules: dict) -> str:
    """The longest prefix of ``name`` that is a module of the tree."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return name


def imports_of(path: Path, name: str, modules: dict) -> list[tuple[str, str, int]]:
    """``[(target module, imported dotted name, line)]`` of one file.

    ``from a.b import c`` gives target ``a.b.c`` when ``c`` is a module of the
    tree (a submodule import), else ``a.b``; the imported name is ``a.b.c``.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((_resolve(alias.name, modules), alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                target = full if full in modules else _resolve(source, modules)
                found.append((target, full, node.lineno))
    return found


def _layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE else None


def _private_owner(imported: str) -> str | None:
    """The package that owns the first ``_private`` part of a dotted name."""
    parts = imported.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def layer_violations(modules: dict[str, Path]) -> list[str]:
    """Every broken rule of a package tree, one line each."""
    problems = []
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        layer = _layer(name)
        for target, imported, line in imports_of(path, name, modules):
            where = f"{path.name}:{line} ({name}) imports {imported}"
            top = imported.split(".")[0]
            if target in modules and target != name:
                graph[name].add(target)
            if top != PACKAGE:
                if layer == "core" and top in THIRD_PARTY_NOT_FOR_CORE:
                    problems.append(f"{where}: core/ must not import {top}")
                continue
            other = _layer(target)
            if layer == "core" and other in NOT_FOR_CORE:
                problems.append(f"{where}: core/ must not import {other}")
            if layer in MEASUREMENT and other == "core":
                problems.append(f"{where}: measurement must not import core/")
            if layer in BOTTOM and other not in (None, layer) and other[0] != "_":
                problems.append(f"{where}: {layer} sits below {other}")
            if other == "app" and layer not in ("app", "__main__"):
                problems.append(f"{where}: the library must not import app/")
            if target == PACKAGE and layer not in (None, "app", "__main__"):
                problems.append(f"{where}: import submodules, not the package root")
            owner = _private_owner(imported)
            if owner is not None and not (name + ".").startswith(owner + "."):
                problems.append(f"{where}: private to {owner}")
            elif owner is not None and layer == "app" and _layer(owner) != "app":
                problems.append(f"{where}: app/ uses the public API only")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def public_api_violations(paths, modules) -> list[str]:
    """Imports of ``_private`` deel_ebm names, and ``._private`` attribute uses."""
    problems = []
    allowed_attrs = {"_asdict", "_replace", "_fields", "_make"}
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        found = imports_of(path, "benchmarks.x", modules)
        if not any(imported.startswith(PACKAGE) for _, imported, _ in found):
            continue  # e.g. the peer's script, which runs without deel_ebm
        for _, imported, line in found:
            if imported.startswith(PACKAGE) and _private_owner(imported):
                problems.append(f"{path.name}:{line} imports private {imported}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in allowed_attrs
            ):
                problems.append(f"{path.name}:{node.lineno} uses .{node.attr}")
    return problems


# ------------------------------------------------------------------ the tree
def test_the_package_follows_the_layer_rules():
    problems = layer_violations(collect_modules(ROOT))
    assert not problems, "\n".join(problems)


def test_benchmarks_use_the_public_api_only():
    paths = sorted((ROOT / "benchmarks").rglob("*.py"))
    assert paths
    problems = public_api_violations(paths, collect_modules(ROOT))
    assert not problems, "\n".join(problems)


def test_the_expected_sub_packages_exist():
    for sub in ("core", "core/samplers", "callbacks", "certificates", "export"):
        assert (ROOT / PACKAGE / sub / "__init__.py").is_file(), sub
    for sub in ("datasets", "metrics", "app"):
        assert (ROOT / PACKAGE / sub / "__init__.py").is_file(), sub


# ------------------------------------------------------------------ the checker
def _tree(tmp_path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return collect_modules(tmp_path)


CLEAN = {
    "__init__.py": "from deel_ebm import core, metrics\n",
    "_checks.py": "",
    "core/__init__.py": "from deel_ebm.core.model import EnergyModel\n",
    "core/_state.py": "",
    "core/model.py": "from deel_ebm._checks import x\nimport deel_ebm.core._state\n",
    "metrics/__init__.py": "import numpy\n",
    "export/__init__.py": "from deel_ebm.core import EnergyModel\n",
    "app/__init__.py": "from deel_ebm import export\n",
}


def test_checker_accepts_a_clean_tree(tmp_path):
    assert layer_violations(_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize(
    "rel, text, expected",
    [
        ("core/bad.py", "from deel_ebm import metrics\n", "core/ must not import"),
        ("core/bad.py", "def f():\n    from deel_ebm.export import x\n", "core/"),
        ("core/bad.py", "import matplotlib.pyplot\n", "must not import matplotlib"),
        ("metrics/bad.py", "from deel_ebm.core import model\n", "measurement"),
        ("export/bad.py", "from deel_ebm.app import run\n", "must not import app/"),
        ("export/bad.py", "from deel_ebm.core._state import s\n", "private"),
        ("export/bad.py", "from deel_ebm.core import _state\n", "private"),
        ("core/bad.py", "import deel_ebm\n", "package root"),
        ("app/__init__.py", "from deel_ebm._checks import x\n", "public API only"),
        ("core/model.py", "from deel_ebm.core import bad\n", "cycle"),
    ],
)
def test_checker_reports_a_forbidden_import(tmp_path, rel, text, expected):
    files = dict(CLEAN)
    files[rel] = files.get(rel, "") + text
    if rel == "core/model.py":
        files["core/bad.py"] = "from deel_ebm.core import model\n"
    problems = layer_violations(_tree(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_checker_reports_private_use_in_scripts(tmp_path):
    script = tmp_path / "bench.py"
    script.write_text("from deel_ebm._backend import tf\nmodel._chain(1)\nx._asdict()")
    problems = public_api_violations([script], {})
    assert len(problems) == 2, problems

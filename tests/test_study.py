"""The study (issue 11): the smoke budget runs every question and condition,
caches one JSON per cell, renders the report, and a re-run computes nothing."""

import json

import pytest

from benchmarks.study import __main__ as study
from benchmarks.study import conditions, grid


@pytest.mark.slow
def test_smoke_study_caches_cells_and_renders_the_report(tmp_path):
    cells_dir, report_dir = tmp_path / "cells", tmp_path / "site"
    argv = ["--budget", "smoke", "--cells-dir", str(cells_dir)]
    argv += ["--report-dir", str(report_dir), "--workers", "2"]
    counts = study.main(argv)
    expected = grid.cells(grid.SMOKE_GRID)
    assert counts == {"cached": 0, "computed": len(expected)}
    files = sorted(cells_dir.glob("*.json"))
    assert len(files) == len(expected)
    records = [json.loads(f.read_text()) for f in files]
    kinds = {(r["cell"]["kind"], r["cell"]["condition"]) for r in records}
    assert kinds == {(k, c) for k in grid.KINDS for c in conditions.CONDITIONS}
    for r in records:
        assert r["settings_tag"] == "smoke" and r["result"]
        if r["cell"]["kind"] == "digits":  # a certificate is a lower bound
            assert r["result"]["bound_holds"], r
        if r["cell"]["kind"] == "explain":
            res = r["result"]
            assert 0.0 <= res["cf_success"] <= 1.0
            assert len(res["cf_images"]) == len(res["cf_snapshot_steps"])
            if r["cell"]["condition"] in conditions.CERTIFIED:  # the certificate
                assert res["cf_grad_norm_max"] <= res["k_certified"] * (1 + 1e-3)
    md = (report_dir / "docs" / "report.md").read_text()
    assert f"{len(expected)} of the {len(expected)} cells of this budget" in md
    assert "%%" not in md and "no cell finished yet" not in md
    for name in ("stability", "generalisation", "landscapes", "robustness", "explain"):
        assert (report_dir / "docs" / "img" / "report" / f"{name}.png").stat().st_size
        assert f"img/report/{name}.png" in md
    tex = (report_dir / "report" / "report.tex").read_text()
    assert "\\begin{document}" in tex and "%%" not in tex
    assert "\\includegraphics[width=\\linewidth]{stability.png}" in tex
    assert (report_dir / "report" / "references.bib").exists()
    mtimes = {f.name: f.stat().st_mtime_ns for f in files}
    again = study.main(argv)
    assert again == {"cached": len(expected), "computed": 0}
    assert {f.name: f.stat().st_mtime_ns for f in cells_dir.glob("*.json")} == mtimes


def test_cell_ids_are_unique_and_medium_is_a_subset_of_full():
    full = {grid.cell_id(c, grid.FULL_SETTINGS) for c in grid.cells(grid.FULL_GRID)}
    assert len(full) == len(grid.cells(grid.FULL_GRID))
    medium = {grid.cell_id(c, grid.FULL_SETTINGS) for c in grid.cells(grid.MEDIUM_GRID)}
    assert medium < full


def test_unknown_question_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown question 'speed'"):
        grid.cells(grid.SMOKE_GRID, ["speed"])

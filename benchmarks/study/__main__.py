"""python -m benchmarks.study --budget smoke|medium|full: run the grid, render."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.study import grid, runner

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CELLS = ROOT / "benchmarks" / "results" / "study" / "cells"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", choices=sorted(grid.BUDGETS), default="smoke")
    p.add_argument("--cells-dir", type=Path, default=DEFAULT_CELLS)
    p.add_argument("--only", choices=sorted(grid.QUESTIONS), action="append")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--report-dir",
        type=Path,
        default=ROOT,
        help="where docs/report.md, docs/img/report/ and report/report.tex go",
    )
    p.add_argument("--no-run", action="store_true", help="only render the report")
    p.add_argument("--no-report", action="store_true", help="only run the cells")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    settings, sizes = grid.BUDGETS[args.budget]
    cells = grid.cells(sizes, args.only)
    counts = {"cached": 0, "computed": 0}
    if not args.no_run:
        counts = runner.run(cells, settings, args.cells_dir, args.workers)
    print(f"study: computed {counts['computed']} cells")
    if not args.no_report:
        from benchmarks.study import render

        out = render.render(args.budget, args.cells_dir, args.report_dir)
        print(f"study: report: {', '.join(str(p) for p in out)}")
    return counts


if __name__ == "__main__":
    main()

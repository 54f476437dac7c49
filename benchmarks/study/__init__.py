"""The Lipschitz study (issue 11): one command runs a resumable grid of cells
(condition x seed x hyper-parameters x question), caches each cell as JSON and
renders ``docs/report.md`` and ``report/report.tex`` from the cached results.

    python -m benchmarks.study --budget smoke|medium|full [--cells-dir DIR]
        [--only QUESTION] [--workers N] [--report-dir DIR]
"""

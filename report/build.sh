#!/usr/bin/env bash
# Build report/report.pdf from report/report.tex and references.bib (written by
# `python -m benchmarks.study`); the figures are read from docs/img/report/.
set -euo pipefail
cd "$(dirname "$0")"
latexmk -pdf -interaction=nonstopmode -halt-on-error report.tex

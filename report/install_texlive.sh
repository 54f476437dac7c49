#!/usr/bin/env bash
# TeX Live from Debian's packages: what report/build.sh needs (latexmk, pdflatex,
# natbib, the Latin Modern fonts). Needs root (or sudo).
set -euo pipefail
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends latexmk texlive-latex-recommended \
    texlive-latex-extra texlive-fonts-recommended lmodern

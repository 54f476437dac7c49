#!/bin/sh
# Run a queue of experiments sequentially: each line "TAG<TAB>CONFIG_JSON[<TAB>EXTRA_JSON]".
# usage: sh benchmarks/quality_search/queue.sh QUEUE_FILE
cd "$(dirname "$0")/../.." || exit 1
while IFS="$(printf '\t')" read -r tag cfg extra; do
  [ -z "$tag" ] && continue
  case "$tag" in \#*) continue ;; esac
  "${PYTHON:-.venv/bin/python}" benchmarks/quality_search/run.py --tag "$tag" "$cfg" \
    --extra "${extra:-{\}}" 2>/dev/null
done < "$1"

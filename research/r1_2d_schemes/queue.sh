#!/bin/bash
# runs lines of queue.txt one at a time (one experiment process at a time)
cd /work/research/r1
export PYTHONPATH=/work/wt-r1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2
n=0
while true; do
  line=$(sed -n "$((n+1))p" queue.txt)
  if [ -z "$line" ]; then sleep 3; continue; fi
  n=$((n+1))
  [ "$line" = "STOP" ] && exit 0
  echo "### [$n] $(date +%T) $line" >> log.txt
  taskset -c 1 /work/main/.venv/bin/python run.py $line 2>&1 | grep -v "cuInit\|absl::\|Compiled cluster" >> log.txt
done

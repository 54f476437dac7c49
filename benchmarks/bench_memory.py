"""Peak memory of a PCD train step on digits, against the replay buffer's capacity.

For each capacity a fresh interpreter (so that no measurement inherits another's
heap) builds the documented digits model the way ``deel-ebm train --dataset
digits`` does: ``runs.RunConfig(dataset="digits", buffer_size=capacity)`` and
``runs.build_model`` (the recipe's defaults for 8×8×1 images: chains, the dense
1-Lipschitz net, k = 64, 40 Langevin steps, batch 256, the weight average; before
issue 10 it was the conv net with k = 20 and 60 steps), on the sklearn digits of
``datasets.load_digits``. It then

1. runs ``--warmup`` train steps (tracing, XLA compilation), reads the resident
   memory (``VmRSS``), resets the peak (``echo 5 > /proc/self/clear_refs``) and
   runs ``--steps`` train steps (``model.make_train_function()`` on batches of
   the training set); the peak (``VmHWM``) is reported above the resident memory
   before, and above the steady state (the median resident memory after each
   measured step);
2. does the same for ``model.fit`` (one warm-up epoch, then ``--fit-epochs``).

The construction of the model is measured the same way (peak above the resident
memory before ``build_model``). Memory only, no timing: it may run on a busy
machine. Linux only (``/proc``).

What it checks: the buffer's footprint is its array and nothing more. The
buffer's variables should total ``capacity x sample bytes``; between two
capacities, the peak resident memory should grow by the growth of that array
(a slope of 1), not by two or three arrays (a copy of the storage per step, or
temporaries of the storage's size).

With ``--tf-allocator`` (on by default) every capacity is measured a second time
with TensorFlow's BFC allocator on CPU (``TF_CPU_ALLOCATOR_USE_BFC=true``), whose
counters (``tf.config.experimental.get_memory_info``) give the bytes held by
TensorFlow's tensors and variables, free of the C allocator's caching (glibc
malloc returns and takes memory from the system as it likes, so the default
allocator's resident memory moves by ~10 MB from step to step). The counters
count whole allocator chunks, which may exceed the tensor they hold (by up to
2x for one tensor): read them as upper bounds.

    python benchmarks/bench_memory.py --json benchmarks/results/memory.json
    python benchmarks/bench_memory.py --capacities 10000 100000 1000000 --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

MB = 1e6
CLEAR_REFS = "/proc/self/clear_refs"


# ------------------------------------------------------------------ worker
def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _reset_peak():
    with open(CLEAR_REFS, "w") as f:
        f.write("5")


class _Peak:
    """Resident memory before a block, and the peak (VmHWM) reached in it."""

    def __init__(self, tf=None):
        self.tf = tf  # TensorFlow, to read its allocator's counters too (BFC only)
        self.samples = []  # resident memory after each step, if the block records it

    def sample(self):
        self.samples.append(_status("VmRSS"))

    def __enter__(self):
        gc.collect()
        if self.tf:
            self.tf.config.experimental.reset_memory_stats("CPU:0")
            self.tf_before = self.tf.config.experimental.get_memory_info("CPU:0")
        self.before = _status("VmRSS")
        _reset_peak()
        return self

    def __exit__(self, *exc):
        self.peak = _status("VmHWM")
        self.after = _status("VmRSS")
        if self.tf:
            self.tf_after = self.tf.config.experimental.get_memory_info("CPU:0")

    def result(self, **extra):
        out = {
            "rss_before": self.before,
            "peak_rss": self.peak,
            "peak_increment": self.peak - self.before,
            "rss_after": self.after,
            **extra,
        }
        if self.samples:
            out["rss"] = self.samples
            out["median_rss"] = statistics.median(self.samples)
            out["peak_above_median"] = self.peak - out["median_rss"]
        if self.tf:
            out["tf_allocator"] = {
                "current_before": self.tf_before["current"],
                "peak": self.tf_after["peak"],
                "peak_increment": self.tf_after["peak"] - self.tf_before["current"],
                "current_after": self.tf_after["current"],
            }
        return out


def _variable_bytes(v):
    return int(v.shape.num_elements()) * v.dtype.size


def worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.tf_allocator_worker:
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    import warnings

    import numpy as np

    import deel_ebm  # noqa: F401  (selects the Keras 2 API first)

    # isort: split
    import tensorflow as tf

    from deel_ebm import keras
    from deel_ebm.app import runs

    counters = tf if args.tf_allocator_worker else None
    config = runs.RunConfig(
        dataset="digits", buffer_size=args.capacity, batch_size=args.batch
    )
    keras.utils.set_random_seed(config.seed)
    x_train, _, domain = runs.load_data(config)
    tf.constant(0.0) + 1.0  # start the runtime before measuring the construction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _Peak(counters) as build:
            model = runs.build_model(config, x_train.shape[1:], domain)
            model.optimizer.build(model.trainable_variables)

    buffer = model.buffer
    sample_bytes = int(np.prod(buffer.sample_shape)) * 4
    storage_bytes = buffer.capacity * sample_bytes
    buffer_vars = [
        {
            "name": v.name,
            "shape": v.shape.as_list(),
            "dtype": v.dtype.name,
            "bytes": _variable_bytes(v),
        }
        for v in buffer.variables
    ]
    all_vars = {id(v): v for v in model.variables}
    all_vars.update({id(v): v for v in model.optimizer.variables()})
    capacity_sized = [
        v.name
        for v in all_vars.values()
        if v.shape.rank and v.shape[0] == buffer.capacity
    ]

    data = (
        tf.data.Dataset.from_tensor_slices(x_train)
        .shuffle(len(x_train), seed=config.seed)
        .repeat()
        .batch(args.batch, drop_remainder=True)
    )
    batches = iter(data)
    train_function = model.make_train_function()

    def step():
        return float(train_function(batches)["loss"])  # waits for the step

    for _ in range(args.warmup):
        step()
    with _Peak(counters) as steps:
        for _ in range(args.steps):
            step()
            steps.sample()
    result = {
        "capacity": buffer.capacity,
        "allocator": "tf_bfc" if counters else "default",
        "sample_shape": list(buffer.sample_shape),
        "sample_bytes": sample_bytes,
        "storage_bytes": storage_bytes,
        "buffer_variables": buffer_vars,
        "buffer_variable_bytes": sum(v["bytes"] for v in buffer_vars),
        "capacity_sized_variables": capacity_sized,
        "model_variable_bytes": sum(_variable_bytes(v) for v in model.variables),
        "optimizer_variable_bytes": sum(
            _variable_bytes(v) for v in model.optimizer.variables()
        ),
        "build": build.result(),
        "train_step": steps.result(
            warmup=args.warmup, steps=args.steps, batch=args.batch
        ),
    }
    if args.fit_epochs:
        model.fit(x_train, batch_size=args.batch, epochs=1, verbose=0)  # warm-up
        with _Peak(counters) as fit:
            hist = model.fit(
                x_train, batch_size=args.batch, epochs=args.fit_epochs, verbose=0
            )
        result["fit"] = fit.result(
            epochs=args.fit_epochs,
            steps=args.fit_epochs * -(-len(x_train) // args.batch),
            finite=bool(np.isfinite(hist.history["loss"][-1])),
        )
    print(json.dumps(result))


# ------------------------------------------------------------------ parent
def run_worker(capacity, tf_allocator, args):
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--capacity",
        str(capacity),
        "--batch",
        str(args.batch),
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--fit-epochs",
        str(args.fit_epochs),
    ]
    if tf_allocator:
        cmd.append("--tf-allocator-worker")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"worker failed: {shlex.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(runs, *keys):
    values = []
    for r in runs:
        for k in keys:
            r = r[k]
        values.append(r)
    return statistics.median(values)


def summarise(results, capacities):
    summary = {}
    for allocator in ("default", "tf_bfc"):
        by_cap = {
            c: [
                r for r in results if r["capacity"] == c and r["allocator"] == allocator
            ]
            for c in capacities
        }
        if not all(by_cap.values()):
            continue
        rows = {}
        for c, runs in by_cap.items():
            first = runs[0]
            row = {
                "storage_bytes": first["storage_bytes"],
                "buffer_variable_bytes": first["buffer_variable_bytes"],
                "build_peak_increment": _median(runs, "build", "peak_increment"),
                "steady_rss": _median(runs, "train_step", "median_rss"),
                "train_peak_rss": _median(runs, "train_step", "peak_rss"),
                "train_peak_increment": _median(runs, "train_step", "peak_increment"),
                "train_peak_above_median": _median(
                    runs, "train_step", "peak_above_median"
                ),
                "repeats": len(runs),
            }
            if "fit" in first:
                row["fit_peak_rss"] = _median(runs, "fit", "peak_rss")
                row["fit_peak_increment"] = _median(runs, "fit", "peak_increment")
            if allocator == "tf_bfc":
                row["tf_steady_bytes"] = _median(
                    runs, "train_step", "tf_allocator", "current_before"
                )
                row["tf_train_peak_bytes"] = _median(
                    runs, "train_step", "tf_allocator", "peak"
                )
                row["tf_train_peak_increment"] = _median(
                    runs, "train_step", "tf_allocator", "peak_increment"
                )
                row["tf_build_peak_increment"] = _median(
                    runs, "build", "tf_allocator", "peak_increment"
                )
            rows[c] = row
        slopes = []
        for lo, hi in zip(capacities, capacities[1:]):
            d_array = rows[hi]["storage_bytes"] - rows[lo]["storage_bytes"]
            keys = ["steady_rss", "train_peak_rss"]
            keys += ["fit_peak_rss"] if "fit_peak_rss" in rows[lo] else []
            if allocator == "tf_bfc":
                keys += ["tf_steady_bytes", "tf_train_peak_bytes"]
            slope = {"from": lo, "to": hi, "array_increase": d_array}
            for k in keys:
                slope[f"{k}_increase"] = rows[hi][k] - rows[lo][k]
                slope[f"{k}_slope"] = (rows[hi][k] - rows[lo][k]) / d_array
            slopes.append(slope)
        summary[allocator] = {"by_capacity": rows, "slopes": slopes}
    return summary


def report(summary):
    for allocator, part in summary.items():
        print(
            f"\nallocator: {allocator} (MB = 1e6 bytes; medians over repeats; steady"
            " RSS: median after each measured step; peak +: above the RSS before)"
        )
        cols = (
            "capacity | storage | buffer vars | build peak +"
            " | steady RSS | train peak RSS | peak + | peak - median | fit peak +"
        )
        if allocator == "tf_bfc":
            cols += " | TF steady | TF train peak +"
        print(cols)
        for c, r in part["by_capacity"].items():
            line = (
                f"{c:>8} | {r['storage_bytes'] / MB:7.1f} | "
                f"{r['buffer_variable_bytes'] / MB:7.1f} | "
                f"{r['build_peak_increment'] / MB:7.1f} | "
                f"{r['steady_rss'] / MB:7.1f} | {r['train_peak_rss'] / MB:7.1f} | "
                f"{r['train_peak_increment'] / MB:6.1f} | "
                f"{r['train_peak_above_median'] / MB:6.1f} | "
                f"{r.get('fit_peak_increment', float('nan')) / MB:6.1f}"
            )
            if allocator == "tf_bfc":
                line += (
                    f" | {r['tf_steady_bytes'] / MB:7.1f} | "
                    f"{r['tf_train_peak_increment'] / MB:6.1f}"
                )
            print(line)
        for s in part["slopes"]:
            shown = ", ".join(f"{k[:-6]} {s[k]:.2f}" for k in s if k.endswith("_slope"))
            print(
                f"{s['from']} -> {s['to']}: array +{s['array_increase'] / MB:.1f} MB;"
                f" increase / array increase: {shown}"
            )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--capacities",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="buffer capacities, each in its own process (add e.g. 1000000)",
    )
    p.add_argument(
        "--batch", type=int, default=256, help="batch size (the recipe's: 256)"
    )
    p.add_argument("--warmup", type=int, default=3, help="train steps before")
    p.add_argument("--steps", type=int, default=10, help="measured train steps")
    p.add_argument("--fit-epochs", type=int, default=2, help="measured fit epochs")
    p.add_argument("--repeats", type=int, default=1, help="processes per capacity")
    p.add_argument(
        "--tf-allocator",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure with the counters of TF's BFC allocator (tensor bytes)",
    )
    p.add_argument("--json", default=None, help="write results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--capacity", type=int, help=argparse.SUPPRESS)
    p.add_argument("--tf-allocator-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not os.path.exists(CLEAR_REFS):
        sys.exit("bench_memory needs Linux: /proc/self/clear_refs and VmHWM")
    if args.worker:
        worker(args)
        return
    capacities = sorted(set(args.capacities))
    if min(capacities) < args.batch:
        sys.exit(f"every capacity must hold a batch of {args.batch}")
    allocators = [False, True] if args.tf_allocator else [False]
    results = []
    for repeat in range(args.repeats):
        for capacity in capacities:
            for tf_allocator in allocators:
                t = time.perf_counter()
                results.append(run_worker(capacity, tf_allocator, args))
                print(
                    f"repeat {repeat + 1}, capacity {capacity}, "
                    f"{'tf_bfc' if tf_allocator else 'default'} allocator: "
                    f"done in {time.perf_counter() - t:.0f} s",
                    flush=True,
                )
    summary = summarise(results, capacities)
    report(summary)

    def git(*cmd):
        here = Path(__file__).resolve().parent
        run = subprocess.run(["git", *cmd], capture_output=True, text=True, cwd=here)
        return run.stdout.strip()

    out = {
        "command": shlex.join(["python", "benchmarks/bench_memory.py", *sys.argv[1:]]),
        "config": {
            k: v
            for k, v in vars(args).items()
            if k not in ("worker", "capacity", "tf_allocator_worker", "json")
        },
        "recipe": "runs.build_model(RunConfig(dataset='digits', buffer_size=capacity))",
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_uncommitted": git("status", "--porcelain", "--untracked-files=no"),
        "tf_version": metadata.version("tensorflow"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "summary": summary,
        "runs": results,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()

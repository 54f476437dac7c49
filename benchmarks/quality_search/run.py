"""One quality-search run: train a RunConfig through ``runs.train_run``, append results.

    python benchmarks/quality_search/run.py --tag base '{"dataset": "8gaussians",
        "max_minutes": 1}' [--extra '{"sampler": "mala"}']

The config is a JSON object of RunConfig fields (unset fields keep the library
defaults). ``--extra`` measures *proposed* library changes without editing the
library, through ``runs.build_model``'s factories:

- ``sampler``: ``"mala"`` trains with MALASampler chains (same step size, steps
  and annealing as the recipe's Langevin sampler).

One JSON line per run goes to results.jsonl next to this script: the full config,
the extras, steps run, wall time, exact KL both ways, test NLL and mode masses.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import deel_ebm
from deel_ebm.app import runs

HERE = Path(__file__).resolve().parent


def factories(extra) -> dict:
    """``runs.build_model`` factories for the ``--extra`` options."""
    unknown = sorted(set(extra) - {"sampler"})
    if unknown:
        raise SystemExit(f"unknown --extra keys: {unknown}")
    if extra.get("sampler", "langevin") == "langevin":
        return {}
    if extra["sampler"] != "mala":
        raise SystemExit(f"--extra sampler must be 'langevin' or 'mala': {extra}")
    return {
        "sampler_fn": lambda config: deel_ebm.MALASampler(
            num_steps=config.num_steps,
            step_size=config.step_size,
            init_temperature=config.init_temperature,
            anneal_fraction=config.anneal_fraction,
        )
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config", help="JSON object of RunConfig fields")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--extra", default="{}")
    parser.add_argument("--out", default="/tmp/quality_search")
    parser.add_argument("--results", default=str(HERE / "results.jsonl"))
    args = parser.parse_args()
    config = runs.RunConfig.from_json(json.loads(args.config))
    extra = json.loads(args.extra)
    load0 = os.getloadavg()[0]
    t0 = time.time()
    out = Path(args.out) / f"{args.tag}_{config.dataset}_{config.seed}"
    metrics = runs.train_run(
        config, out, verbose=0, log=lambda *_: None, **factories(extra)
    )
    exact = metrics["exact"]
    masses = exact.get("mode_masses")
    row = {
        "tag": args.tag,
        "dataset": config.dataset,
        "config": config.to_json(),
        "extra": extra,
        "steps_run": metrics["steps_run"],
        "train_seconds": round(metrics["train_seconds"], 1),
        "steps_per_s": round(metrics["steps_run"] / metrics["train_seconds"], 2),
        "wall_seconds": round(time.time() - t0, 1),
        "load_avg_start": round(load0, 2),
        "kl": exact["kl"],
        "reverse_kl": exact["reverse_kl"],
        "test_nll": exact["test_nll"],
        "data_test_nll": exact["data_test_nll"],
        "log_z": exact["log_z"],
        "mode_mass_min": None if masses is None else float(np.min(masses)),
        "mode_mass_max": None if masses is None else float(np.max(masses)),
        "mode_masses": masses,
        "data_mode_mass": None
        if masses is None
        else float(np.mean(exact["data_mode_masses"])),
        "final_logs": metrics["final_logs"],
        "stop_reason": metrics["stop_reason"],
        "out_dir": str(out),
    }
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    mm = (
        ""
        if masses is None
        else f" masses {row['mode_mass_min']:.3f}-{row['mode_mass_max']:.3f}"
    )
    print(
        f"{args.tag:28s} {config.dataset:12s} KL {row['kl']:.4f} rKL "
        f"{row['reverse_kl']:.4f} steps {row['steps_run']} "
        f"({row['steps_per_s']}/s) wall {row['wall_seconds']}s{mm}",
        flush=True,
    )


if __name__ == "__main__":
    main()

"""Jarzynski walkers against the chain and proposal schemes at equal steps.

Steps, not seconds (the machine was shared when this ran): every scheme of
benchmarks/bench_schemes.py trains ``--steps`` optimizer steps, then the exact
KL(data||model) is computed on the grid.

    python research/r3_jarzynski/steps.py --steps 1000 2000 --densities 8gaussians rings
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_schemes  # noqa: E402

import deel_ebm  # noqa: E402
from deel_ebm import datasets, metrics  # noqa: E402
from deel_ebm.app import runs  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, nargs="+", default=[1000, 2000])
p.add_argument("--densities", nargs="+", default=["8gaussians", "rings"])
p.add_argument("--schemes", nargs="+", default=["jarzynski", "pcd-ml", "default"])
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="research/r3_jarzynski/steps.json")
args = p.parse_args()
rows = []
for density in args.densities:
    x_train, x_test = datasets.load_2d(density, 20000, 5000, args.seed)
    domain = datasets.get_density(density).domain
    for scheme in args.schemes:
        model, batch = bench_schemes.build(scheme, domain, args.seed)
        batch = batch or 1024
        per_epoch = -(-len(x_train) // batch)
        done = 0
        for target in sorted(args.steps):
            epochs = -(-(target - done) // per_epoch)
            model.fit(x_train, batch_size=batch, epochs=epochs, verbose=0)
            done = int(model.optimizer.iterations.numpy())
            exact = metrics.exact_metrics_2d(
                runs.energy_fn(model), density, x_test=x_test
            )
            row = dict(density=density, scheme=scheme, steps=done,
                       kl=exact["kl"], reverse_kl=exact["reverse_kl"])
            if model.walkers is not None:
                row["resamples"] = float(model.walkers.resamples.numpy())
            print(json.dumps(row), flush=True)
            rows.append(row)
Path(args.out).write_text(json.dumps(rows, indent=1))

"""Exact 2D quality of the default recipe beside GaussianMixture and KernelDensity.

Each density is trained with the documented defaults (``RunConfig()``) under a wall
time budget, then the exact KL(p_data || p_model) is computed on the grid
(``metrics.exact_metrics_2d``) for the EBM and for the two sklearn baselines fitted
on the same training points, in the same run:

    python benchmarks/bench_quality.py --minutes 3 --out benchmarks/results/quality.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import deel_ebm
from deel_ebm import baselines, datasets, metrics
from deel_ebm.app import runs

DENSITIES = ("8gaussians", "rings", "checkerboard", "2spirals")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--densities", nargs="+", default=list(DENSITIES))
    p.add_argument("--minutes", type=float, default=3.0, help="budget per density")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=JSON",
        help="override RunConfig fields, e.g. k_coef_lip=10",
    )
    args = p.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    results = {
        "deel_ebm_version": deel_ebm.__version__,
        "minutes": args.minutes,
        "overrides": overrides,
        "densities": {},
    }
    for name in args.densities:
        config = runs.RunConfig(
            dataset=name,
            epochs=10_000,
            max_minutes=args.minutes,
            seed=args.seed,
            **overrides,
        )
        with tempfile.TemporaryDirectory() as tmp:
            m = runs.train_run(config, tmp, verbose=0, log=lambda s: None)
        x_train, x_test = datasets.load_2d(
            name, config.n_train, config.n_test, config.seed
        )
        row = {
            "ebm": {
                "kl": m["exact"]["kl"],
                "reverse_kl": m["exact"]["reverse_kl"],
                "test_nll": m["exact"]["test_nll"],
                "steps": m["steps_run"],
                "train_seconds": m["train_seconds"],
                "mode_masses": m["exact"]["mode_masses"],
            },
            "data_test_nll": m["exact"]["data_test_nll"],
        }
        for label, cls in (
            ("gmm", baselines.GaussianMixtureBaseline),
            ("kde", baselines.KernelDensityBaseline),
        ):
            t0 = time.perf_counter()
            est = cls(seed=args.seed).fit(x_train)
            exact = metrics.exact_metrics_2d(est.energy, name, x_test=x_test)
            row[label] = {
                "kl": exact["kl"],
                "reverse_kl": exact["reverse_kl"],
                "test_nll": exact["test_nll"],
                "seconds": time.perf_counter() - t0,
            }
        results["densities"][name] = row
        print(
            f"{name:13s} KL ebm {row['ebm']['kl']:.3f} ({row['ebm']['steps']} steps)"
            f"  gmm {row['gmm']['kl']:.4f}  kde {row['kde']['kl']:.4f}",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(runs.to_jsonable(results), f, indent=2)


if __name__ == "__main__":
    main()

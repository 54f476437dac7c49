"""deel-ebm's side of the peer's time-to-KL run: shared data, and exact KL on demand.

Runs with deel-ebm's Python (``.venv/bin/python``), so both sides are scored by the
same code, ``deel_ebm.metrics.exact_metrics_2d``:

    python benchmarks/peer/kl_companion.py prepare --dir DIR [--dataset 8gaussians]
    python benchmarks/peer/kl_companion.py serve --dir DIR

``prepare`` writes deel-ebm's default recipe (``deel_ebm.runs.RunConfig()`` with
the dataset; importance-sampled maximum likelihood in 2D), the chain recipe the
peer reproduces (``peer_recipe``: persistent chains, 60 ULA steps of 5e-3, k = 20,
the CD loss, batch 256 — the peer has no proposal negatives), its training and
test points (``runs.load_data``, as ``train_run`` uses)
and the cell centres of the metric grid (``metrics.grid_points`` on the density's
domain) to ``DIR``. ``serve`` reads one JSON line per request from stdin,
``{"grid": energies.npy, "test": energies.npy}`` (energies of the grid points and of
the test points, in their order), and answers one JSON line of exact metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import deel_ebm  # noqa: F401  (Keras-2 guard before anything imports TensorFlow)
from deel_ebm import datasets, metrics
from deel_ebm.app import runs


def prepare(workdir: Path, dataset: str, seed: int) -> dict:
    config = runs.RunConfig(dataset=dataset, seed=seed)
    x_train, x_test, domain = runs.load_data(config)
    points, _ = metrics.grid_points(domain, metrics.DEFAULT_RESOLUTION)
    workdir.mkdir(parents=True, exist_ok=True)
    np.save(workdir / "x_train.npy", x_train.astype(np.float32))
    np.save(workdir / "x_test.npy", x_test.astype(np.float32))
    np.save(workdir / "grid.npy", points.astype(np.float32))
    meta = {
        "dataset": dataset,
        "domain": list(domain),
        "resolution": metrics.DEFAULT_RESOLUTION,
        "recipe": config.to_json(),
        "peer_recipe": runs.RunConfig(
            dataset=dataset,
            seed=seed,
            negatives="chains",
            k_coef_lip=20.0,
            num_steps=60,
            step_size=5e-3,
            loss="cd",
            batch_size=256,
            beta_1=0.0,
        )
        .resolved((2,))
        .to_json(),
    }
    (workdir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def lookup_energy(points_and_energies):
    """An energy function that answers for known point sets with stored energies."""

    def energy_fn(x):
        x = np.asarray(x, np.float32)
        for points, energies in points_and_energies:
            if x.shape == points.shape and np.array_equal(x, points):
                return energies
        raise ValueError(f"no stored energies for these {len(x)} points")

    return energy_fn


def exact(workdir: Path, grid_energy, test_energy) -> dict:
    meta = json.loads((workdir / "meta.json").read_text())
    grid = np.load(workdir / "grid.npy")
    x_test = np.load(workdir / "x_test.npy")
    fn = lookup_energy([(grid, grid_energy), (x_test, test_energy)])
    res = metrics.exact_metrics_2d(
        fn,
        datasets.get_density(meta["dataset"]),
        x_test=x_test,
        domain=tuple(meta["domain"]),
        resolution=meta["resolution"],
        batch_size=max(len(grid), len(x_test)),
    )
    return {
        k: (np.asarray(v).tolist() if v is not None else None) for k, v in res.items()
    }


def serve(workdir: Path):
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            out = exact(workdir, np.load(req["grid"]), np.load(req["test"]))
        except ValueError as err:  # e.g. NaN energies: report, keep serving
            out = {"kl": float("inf"), "error": str(err)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["prepare", "serve"])
    p.add_argument("--dir", required=True)
    p.add_argument("--dataset", default="8gaussians")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    workdir = Path(args.dir)
    if args.command == "prepare":
        print(json.dumps(prepare(workdir, args.dataset, args.seed), indent=2))
    else:
        serve(workdir)


if __name__ == "__main__":
    main()

"""Evaluate a run folder beside the classical baselines, through the same metrics.

For a built-in 2D density: exact KL both ways and test NLL on the grid (see
:mod:`deel_ebm.metrics`), sample metrics (MMD, sliced Wasserstein, mode coverage),
and the same numbers for sklearn's GaussianMixture (components by BIC) and
KernelDensity (bandwidth by cross-validation) fitted on the same training points.
For any data: out-of-distribution AUROC of the energy against uniform noise on the
data's box (and, for images, pixel-shuffled test images), beside IsolationForest
and OneClassSVM scores, with deel-ebm's certified AUROC at radius 0.1.
"""

from __future__ import annotations

import numpy as np

from deel_ebm import baselines, certificates, datasets, metrics
from deel_ebm.app.runs import energy_fn, load_data, load_run

__all__ = ["evaluate_run", "format_table", "ood_sets", "CERT_EPSILON"]

CERT_EPSILON = 0.1
NUM_SAMPLES = 2000


def ood_sets(x_test, domain, seed=0) -> dict:
    """Out-of-distribution probes: uniform noise on the box, shuffled pixels."""
    rng = np.random.default_rng(seed)
    sets = {"uniform": rng.uniform(*domain, size=x_test.shape).astype(np.float32)}
    if x_test.ndim == 4:
        flat = x_test.reshape(len(x_test), -1)
        shuffled = np.stack([rng.permutation(row) for row in flat])
        sets["shuffled"] = shuffled.reshape(x_test.shape).astype(np.float32)
    return sets


def evaluate_run(run_dir, seed=0) -> dict:
    """A table ``{model name: {metric: value}}`` for one run folder."""
    model, config, _ = load_run(run_dir)
    x_train, x_test, domain = load_data(config)
    if config.domain is not None:
        domain = tuple(config.domain)
    energy = energy_fn(model)
    samples = model.sample(NUM_SAMPLES, seed=seed).numpy()
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    table = {"deel-ebm": {}}
    rows = table["deel-ebm"]
    density_models = {}
    if x_train.ndim == 2 and x_train.shape[1] <= 2:
        density_models["GaussianMixture"] = baselines.GaussianMixtureBaseline(
            seed=seed
        ).fit(x_train)
        density_models["KernelDensity"] = baselines.KernelDensityBaseline(
            seed=seed
        ).fit(x_train)
    for name in density_models:
        table[name] = {}
    if config.dataset in datasets.DENSITIES:
        fns = {"deel-ebm": energy, **{n: m.energy for n, m in density_models.items()}}
        for name, fn in fns.items():
            exact = metrics.exact_metrics_2d(fn, config.dataset, x_test=x_test)
            table[name].update(
                kl=exact["kl"],
                reverse_kl=exact["reverse_kl"],
                test_nll=exact["test_nll"],
            )
            if exact["mode_masses"] is not None:
                masses = np.asarray(exact["mode_masses"])
                table[name].update(
                    mode_mass_min=float(masses.min()), mode_mass_max=float(masses.max())
                )
    rows["mmd"] = metrics.mmd(flat(samples), flat(x_test[:NUM_SAMPLES]))
    rows["sliced_w"] = metrics.sliced_wasserstein(
        flat(samples), flat(x_test[:NUM_SAMPLES]), seed=seed
    )
    if x_train.ndim == 4 and config.dataset == "digits":
        rows["frechet"] = metrics.frechet_distance(samples, x_test)
        rows["confidence"] = metrics.mean_confidence(samples)
    anomaly = {
        "IsolationForest": baselines.IsolationForestBaseline(seed=seed).fit(
            flat(x_train)
        ),
        "OneClassSVM": baselines.OneClassSVMBaseline(seed=seed).fit(flat(x_train)),
    }
    for name in anomaly:
        table.setdefault(name, {})
    e_in = energy(x_test)
    for probe, x_out in ood_sets(x_test, domain, seed).items():
        e_out = energy(x_out)
        rows[f"auroc_{probe}"] = metrics.auroc(e_in, e_out)
        rows[f"certified_auroc_{probe}"] = certificates.certified_auroc(
            e_in, e_out, model.k_coef_lip, CERT_EPSILON
        )
        for name, est in density_models.items():
            table[name][f"auroc_{probe}"] = metrics.auroc(
                est.energy(x_test), est.energy(x_out)
            )
        for name, est in anomaly.items():
            table[name][f"auroc_{probe}"] = metrics.auroc(
                est.score(flat(x_test)), est.score(flat(x_out))
            )
    return {name: {k: float(v) for k, v in row.items()} for name, row in table.items()}


def format_table(table: dict) -> str:
    """A plain-text table: one row per model, one column per metric."""
    columns = sorted({k for row in table.values() for k in row})
    width = max(len(c) for c in columns) + 2
    lines = ["model".ljust(18) + "".join(c.rjust(width) for c in columns)]
    for name, row in table.items():
        cells = "".join(
            (f"{row[c]:.4g}" if c in row else "-").rjust(width) for c in columns
        )
        lines.append(name.ljust(18) + cells)
    return "\n".join(lines)

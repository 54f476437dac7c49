"""Evaluate a run folder beside the classical baselines, through the same metrics.

For a built-in 2D density: exact KL both ways and test NLL on the grid (see
:mod:`deel_ebm.metrics`), sample metrics (MMD, sliced Wasserstein, mode coverage),
and the same numbers for sklearn's GaussianMixture (components by BIC) and
KernelDensity (bandwidth by cross-validation) fitted on the same training points.
For any data: out-of-distribution AUROC of the energy against uniform noise on the
data's box (and, for images, pixel-shuffled test images), beside IsolationForest
and OneClassSVM scores, with deel-ebm's certified AUROC at radius 0.1.
For a joint model, also its classifier on the test points: accuracy, expected
calibration error, certified robust accuracy at the radii of
:data:`deel_ebm.certificates.DEFAULT_ROBUST_RADII`; on digits, the share of its
class-conditional samples the reference digits classifier assigns to their class.
"""

from __future__ import annotations

import numpy as np

from deel_ebm import baselines, certificates, datasets, metrics
from deel_ebm.app.runs import (
    class_sample_labels,
    classification_metrics,
    energy_fn,
    load_data,
    load_labeled_data,
    load_run,
)
from deel_ebm.core.joint import JointEnergyModel

__all__ = [
    "evaluate_run",
    "format_table",
    "format_markdown",
    "legend",
    "write_evaluation",
    "ood_sets",
    "CERT_EPSILON",
    "COLUMNS",
    "DATA_ROW",
]

CERT_EPSILON = 0.1
NUM_SAMPLES = 2000
#: the row of the data's own values (a perfect model's)
DATA_ROW = "data itself"
#: ``(key, header, what it is)`` of every column, in the table's order
COLUMNS = (
    ("kl", "KL", "exact KL(data‖model) on the grid, nats (↓; 0 is perfect)"),
    ("reverse_kl", "rev KL", "exact KL(model‖data), nats (↓)"),
    ("test_nll", "test NLL", "mean −log p(x) of the test points, nats (↓; the data "
     "row is the true density's)"),
    ("mode_mass_min", "min mode", "smallest mode's mass, 8gaussians (→ 1/8)"),
    ("mode_mass_max", "max mode", "largest mode's mass, 8gaussians (→ 1/8)"),
    ("mmd", "MMD", "unbiased MMD² between 2000 samples and test points (↓; "
     "near 0, may be < 0; the data row: training vs test points)"),
    ("sliced_w", "sliced W", "sliced Wasserstein-1 distance, samples vs test points "
     "(↓)"),
    ("frechet", "Fréchet", "Fréchet digits distance of the samples to the test "
     "images (↓)"),
    ("confidence", "confidence", "digits classifier's mean top probability on the "
     "samples (↑)"),
    ("auroc_uniform", "AUROC unif", "AUROC of the score, test points vs uniform "
     "noise on the data's box (↑)"),
    ("certified_auroc_uniform", f"cert@{CERT_EPSILON:g}", "the same AUROC when every "
     f"point may move by ℓ2 norm ε = {CERT_EPSILON:g} against the detector "
     "(certified by k·ε; deel-ebm only) (↑)"),
    ("auroc_shuffled", "AUROC shuf", "AUROC, test images vs pixel-shuffled test "
     "images (↑)"),
    ("certified_auroc_shuffled", f"cert@{CERT_EPSILON:g} shuf", "the same, "
     f"certified at ε = {CERT_EPSILON:g} (↑)"),
    ("accuracy", "accuracy", "joint model: test accuracy of p(y|x) (↑)"),
    ("ece", "ECE", f"joint model: expected calibration error of p(y|x), "
     f"{metrics.DEFAULT_ECE_BINS} equal-width confidence bins (↓; 0: calibrated)"),
    *(
        (f"certified_accuracy_{r:g}", f"cert acc@{r:g}", "joint model: share of "
         f"test points classified correctly with a certified ℓ2 radius above {r:g} "
         "(top-2 logit margin / (√2 k) for the recipe's classifier; ≤ accuracy) (↑)")
        for r in certificates.DEFAULT_ROBUST_RADII
    ),
    ("class_agreement", "class agr", "joint model on digits: share of its "
     "class-conditional samples the reference digits classifier assigns to the "
     "class they were drawn for (↑; chance 0.1)"),
)  # fmt: skip


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
    if config is None:
        raise ValueError(
            f"evaluate needs a run folder (its config names the data), got {run_dir}"
        )
    joint = isinstance(model, JointEnergyModel)
    if joint:
        data = load_labeled_data(config)
        x_train, x_test, domain = data.x_train, data.x_test, data.domain
    else:
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
    # the data's own values: what a perfect model would score
    reference = table.setdefault(DATA_ROW, {})
    half = min(NUM_SAMPLES, len(x_train), len(x_test))
    reference["mmd"] = metrics.mmd(flat(x_train[:half]), flat(x_test[:half]))
    reference["sliced_w"] = metrics.sliced_wasserstein(
        flat(x_train[:half]), flat(x_test[:half]), seed=seed
    )
    if config.dataset in datasets.DENSITIES:
        exact = metrics.exact_metrics_2d(energy, config.dataset, x_test=x_test)
        reference.update(kl=0.0, reverse_kl=0.0, test_nll=exact["data_test_nll"])
    if x_train.ndim == 4 and config.dataset == "digits":
        reference["frechet"] = metrics.frechet_distance(x_train, x_test)
        reference["confidence"] = metrics.mean_confidence(x_test)
    rows["mmd"] = metrics.mmd(flat(samples), flat(x_test[:NUM_SAMPLES]))
    rows["sliced_w"] = metrics.sliced_wasserstein(
        flat(samples), flat(x_test[:NUM_SAMPLES]), seed=seed
    )
    if x_train.ndim == 4 and config.dataset == "digits":
        rows["frechet"] = metrics.frechet_distance(samples, x_test)
        rows["confidence"] = metrics.mean_confidence(samples)
    if joint:
        rows.update(_classification_row(model, data, config, seed))
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
    order = ["deel-ebm", *(n for n in table if n not in ("deel-ebm", DATA_ROW))]
    order.append(DATA_ROW)
    return {
        name: {k: float(v) for k, v in table[name].items()}
        for name in order
        if name in table
    }


def _classification_row(model, data, config, seed) -> dict:
    """The joint model's classification columns."""
    found = classification_metrics(model, data.x_test, data.y_test)
    row = {"accuracy": found["test_accuracy"], "ece": found["test_ece"]}
    for radius, value in (found["certified_accuracy"] or {}).items():
        row[f"certified_accuracy_{radius}"] = value
    if config.dataset == "digits" and data.num_classes == 10:
        y = class_sample_labels(NUM_SAMPLES, data.num_classes)
        x = model.sample(len(y), y=y, seed=seed).numpy()
        probs = metrics.digits_classifier().predict_proba(x.reshape(len(x), -1))
        row["class_agreement"] = float(np.mean(probs.argmax(axis=1) == y))
    return row


def _columns(table):
    present = {k for row in table.values() for k in row}
    return [c for c in COLUMNS if c[0] in present] + [
        (k, k, k) for k in sorted(present - {c[0] for c in COLUMNS})
    ]


def _cell(row, key):
    return f"{row[key]:.4g}" if key in row else "–"


def legend(table: dict) -> list[str]:
    """One line per column of the table: its header and what it is."""
    return [f"{header}: {what}" for _, header, what in _columns(table)]


def format_table(table: dict) -> str:
    """A plain-text table (one row per model, the data's own values last) and
    its legend."""
    columns = _columns(table)
    names = list(table)
    first = max(len(n) for n in names) + 2
    widths = [
        max(len(h), *(len(_cell(table[n], k)) for n in names)) + 2
        for k, h, _ in columns
    ]
    lines = [
        "".ljust(first) + "".join(h.rjust(w) for (_, h, _), w in zip(columns, widths))
    ]
    for name in names:
        cells = "".join(
            _cell(table[name], k).rjust(w) for (k, _, _), w in zip(columns, widths)
        )
        lines.append(name.ljust(first) + cells)
    return "\n".join([*lines, "", *legend(table)])


def format_markdown(table: dict, title: str = "Evaluation") -> str:
    """The table as Markdown, with the legend as a list below it."""
    columns = _columns(table)
    lines = [
        f"# {title}",
        "",
        "| model | " + " | ".join(h for _, h, _ in columns) + " |",
    ]
    lines.append("|---|" + "---:|" * len(columns))
    for name, row in table.items():
        lines.append(
            f"| {name} | " + " | ".join(_cell(row, k) for k, _, _ in columns) + " |"
        )
    lines += ["", *[f"- **{h}**: {what}" for _, h, what in columns]]
    return "\n".join(lines) + "\n"


def write_evaluation(
    table: dict, json_path=None, markdown_path=None, title="Evaluation"
):
    """Write the table as JSON and/or Markdown (each atomically)."""
    from deel_ebm.app import folders

    if json_path is not None:
        folders.write_json(json_path, table)
    if markdown_path is not None:
        folders.write_text(markdown_path, format_markdown(table, title))

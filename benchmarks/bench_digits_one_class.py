"""Digits one-vs-rest anomaly detection through the command line, beside sklearn.

The protocol of issue 10: sklearn's digits, pixels in [-1, 1], the stratified
70/30 split with ``random_state=0`` (``deel_ebm.datasets.load_digits()``). For each
class, the class's training images are written to ``one_class.npy`` and trained as
a user would, with the CLI's defaults (``deel-ebm train --dataset one_class.npy``),
then the whole test split is scored with ``deel-ebm score``. AUROC of ``-E`` with
the class as positives, and certified AUROC at l2 radii eps (every in-class
energy raised by k·eps, every other lowered by k·eps), are computed here with
sklearn's ``roc_auc_score`` from the saved energies. OneClassSVM, IsolationForest,
GaussianMixture and KernelDensity (sklearn, default settings, flattened pixels)
are fitted on the same images in the same run.

    python benchmarks/bench_digits_one_class.py \\
        --out benchmarks/results/digits_one_class.json
    python benchmarks/bench_digits_one_class.py --classes 3 8 \\
        --train-args --max-minutes 1

``--figure F.png`` draws ``--per-class`` samples of each class's model
(``deel-ebm sample``, its defaults), one row per class, beside test images of
the class.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity
from sklearn.svm import OneClassSVM

import deel_ebm

EPSILONS = (0.1, 0.25, 0.5)


def baselines(x_train, x_test):
    """Scores (higher: more in-class) of the four sklearn detectors."""
    a, b = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    kde = GridSearchCV(
        KernelDensity(), {"bandwidth": np.logspace(-1, 1, 20)}, cv=3
    ).fit(a)
    return {
        "OneClassSVM": OneClassSVM().fit(a).score_samples(b),
        "IsolationForest": IsolationForest(random_state=0).fit(a).score_samples(b),
        "GaussianMixture": GaussianMixture(
            min(10, len(a) // 10), covariance_type="diag", random_state=0
        )
        .fit(a)
        .score_samples(b),
        "KernelDensity": kde.best_estimator_.score_samples(b),
    }


def cli(*args):
    cmd = [sys.executable, "-m", "deel_ebm", *args]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stderr[-2000:]}")
    return run.stdout


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--figure", default=None, help="samples per class (PNG)")
    p.add_argument("--per-class", type=int, default=10, help="samples per class")
    p.add_argument(
        "--train-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="extra options for deel-ebm train (last on the line)",
    )
    args = p.parse_args(argv)
    data = deel_ebm.datasets.load_digits()
    rows, samples = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "test.npy", data.x_test)
        for c in args.classes:
            x_c = data.x_train[data.y_train == c]
            np.save(tmp / "one_class.npy", x_c)
            run = tmp / f"run{c}"
            t0 = time.perf_counter()
            cli(
                "train",
                "--dataset",
                str(tmp / "one_class.npy"),
                "--out",
                str(run),
                "--quiet",
                *args.train_args,
            )
            seconds = time.perf_counter() - t0
            cli(
                "score",
                "--model",
                str(run),
                "--input",
                str(tmp / "test.npy"),
                "--out",
                str(run / "e.npy"),
            )
            e = np.load(run / "e.npy")
            if args.figure:
                cli(
                    "sample",
                    "--model",
                    str(run),
                    "-n",
                    str(args.per_class),
                    "--out",
                    str(run / "samples.npy"),
                )
                samples[c] = np.load(run / "samples.npy")
            k = json.loads((run / "metrics.json").read_text())["k_coef_lip"]
            y = data.y_test == c
            row = {"seconds": seconds, "k": k, "auroc": roc_auc_score(y, -e)}
            for eps in EPSILONS:
                row[f"certified_{eps}"] = roc_auc_score(
                    y, np.where(y, -e - k * eps, -e + k * eps)
                )
            for name, score in baselines(x_c, data.x_test).items():
                row[name] = roc_auc_score(y, score)
            rows[c] = row
            print(json.dumps({"class": c, **row}), flush=True)
    keys = rows[args.classes[0]].keys()
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in keys}
    print("mean", json.dumps(mean))
    if args.out:
        Path(args.out).write_text(
            json.dumps({"per_class": rows, "mean": mean}, indent=2)
        )
    if args.figure:
        figure(samples, data, args.per_class, rows).savefig(args.figure, dpi=110)
        print("wrote", args.figure)


def figure(samples, data, per_class, rows):
    """One row per class: test images of the class, then the class model's samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted(samples)
    fig, axes = plt.subplots(
        len(classes), 2, figsize=(9, 0.62 * len(classes) + 0.8), squeeze=False
    )
    for i, c in enumerate(classes):
        real = data.x_test[data.y_test == c][:per_class]
        for ax, images, label in (
            (axes[i, 0], real, "test images" if i == 0 else None),
            (axes[i, 1], samples[c], "deel-ebm samples" if i == 0 else None),
        ):
            deel_ebm.plotting.plot_image_grid(images, nrow=per_class, ax=ax)
            if label:
                ax.set_title(label)
        axes[i, 0].text(
            -0.02,
            0.5,
            f"class {c}",
            transform=axes[i, 0].transAxes,
            ha="right",
            va="center",
        )
        axes[i, 1].text(
            1.02,
            0.5,
            f"AUROC {rows[c]['auroc']:.3f}",
            transform=axes[i, 1].transAxes,
            ha="left",
            va="center",
        )
    fig.suptitle(
        "One model per class (deel-ebm train --dataset one_class.npy, defaults): "
        "its samples",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()

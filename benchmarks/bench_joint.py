"""The joint classifier-energy model on digits, beside its baselines, in one run.

On sklearn's bundled digits (the 70/30 split stratified by class,
``random_state=0``: 1 257 training and 540 test images, pixels in [-1, 1]),
trains with the same budget (``--epochs`` epochs of batch 256, Adam 1e-3):

- ``lip-joint``: :class:`deel_ebm.JointEnergyModel` on
  :func:`deel_ebm.nets.lipschitz_classifier` (the library's defaults: deel-lip's
  multiclass HKR as the classification term, generative weight 0.05, training
  chains from fresh draws of the fitted mixture); seed 0 also with one choice
  changed (``lip-joint-ce``: cross-entropy; ``lip-joint-buffer``: chains from
  the replay buffer; ``lip-joint-w…``: other weights) and with the earlier
  default (``lip-joint-before``: cross-entropy, buffer, weight 0.1);
- ``lip-ce``: the same deel-lip classifier trained on the cross-entropy of
  ``softmax(k f)`` alone (no generative term);
- ``lip-hkr``: the same classifier trained with deel-lip's ``MulticlassHKR``;
- ``jem``: the same-shape unconstrained JEM
  (:func:`deel_ebm.nets.unconstrained_classifier`, JEM's recipe: cross-entropy,
  persistent chains from the replay buffer, weight 0.1);
- ``logreg`` / ``svc``: sklearn's LogisticRegression and SVC (RBF, its
  probabilities calibrated by ``CalibratedClassifierCV``) on the pixels, for
  orientation.

For each: test accuracy; expected calibration error (15 equal-width bins of the
top probability); certified robust accuracy at ℓ2 radii 0.1 / 0.25 / 0.5 (logit
margin ``m`` certified within ``m / (√2 k)``, Lipschitz models only) beside the
accuracy under an ℓ2 PGD attack of the same radius (the certificate must never
exceed it); OOD AUROC of two scores, the energy ``E(x) = −log p(x) + const`` and
``−max p(y|x)``, against five sets built from the test digits
(:func:`deel_ebm.datasets.ood_sets`). The joint models also draw
class-conditional samples (chains on ``E(x, y)`` from the fitted start), graded
by the joint model itself and by the independent reference classifier
(:func:`deel_ebm.metrics.digits_classifier`). The two joint models are trained
with ``--seeds`` seeds: the share of runs that diverge (non-finite loss, or a
test accuracy below 0.5) is the stability measure, and every metric is
summarised over the seeds (mean and worst).

    python benchmarks/bench_joint.py                    # 5 seeds, 100 epochs
    python benchmarks/bench_joint.py --seeds 1 --epochs 3 --out /tmp/smoke.json
    python benchmarks/bench_joint.py --render benchmarks/results/joint.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import deel_ebm
from deel_ebm import certificates, datasets, keras, metrics, nets

RADII = certificates.DEFAULT_ROBUST_RADII
BINS = 15
PGD_STEPS = 20
BATCH = 256
LR = 1e-3
SAMPLES_PER_CLASS = 20
SAMPLE_STEPS = 200
PRIOR_STEPS = 1000
TEST_IMAGES = []  # the test digits (set by main): the reference of the FD


def pgd_accuracy(logits_fn, x, y, radius, steps=PGD_STEPS) -> float:
    """Accuracy under an ℓ2 PGD attack of ``radius`` on the true-class margin."""
    import tensorflow as tf

    x = tf.constant(x)
    labels = tf.constant(y, tf.int32)
    num_classes = int(logits_fn(x[:1]).shape[1])
    delta = tf.zeros_like(x)
    step = 2.5 * radius / steps
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(delta)
            logits = logits_fn(x + delta)
            own = tf.gather(logits, labels, axis=1, batch_dims=1)
            mask = tf.one_hot(labels, num_classes)
            other = tf.reduce_max(logits - 1e9 * mask, axis=1)
            margin = own - other
        g = tape.gradient(margin, delta)
        g = (
            g
            / (tf.norm(tf.reshape(g, [len(x), -1]), axis=1) + 1e-12)[
                :, None, None, None
            ]
        )
        delta = delta - step * g
        norm = tf.norm(tf.reshape(delta, [len(x), -1]), axis=1)
        delta = delta * tf.minimum(1.0, radius / (norm + 1e-12))[:, None, None, None]
    pred = tf.argmax(logits_fn(x + delta), axis=1, output_type=tf.int32)
    return float(tf.reduce_mean(tf.cast(pred == labels, tf.float32)))


def ood_aurocs(energy, proba, x_test, ood) -> dict:
    """AUROC of the energy and of −max p(y|x) against each OOD set."""
    out = {}
    c_in = -proba(x_test).max(1)
    e_in = None if energy is None else energy(x_test)
    for kind, x_ood in ood.items():
        row = {"max_prob": metrics.auroc(c_in, -proba(x_ood).max(1))}
        if energy is not None:
            row["energy"] = metrics.auroc(e_in, energy(x_ood))
        out[kind] = row
    return out


def _lip_classifier(seed, lipschitz=True):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    build = nets.lipschitz_classifier if lipschitz else nets.unconstrained_classifier
    return build((8, 8, 1), 10, seed=seed)


def train_joint(data, seed, epochs, lipschitz=True, **kwargs):
    import warnings

    net = _lip_classifier(seed, lipschitz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unconstrained net is reported as such
        model = deel_ebm.JointEnergyModel(net, seed=seed, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(LR))
    start = time.perf_counter()
    history = model.fit(
        data.x_train, data.y_train, batch_size=BATCH, epochs=epochs, verbose=0
    )
    seconds = time.perf_counter() - start
    losses = np.asarray(history.history["loss"], np.float64)
    return model, {
        "seconds": round(seconds, 1),
        "steps": int(model.optimizer.iterations.numpy()),
        "stop_reason": model.stop_reason,
        "finite": bool(np.all(np.isfinite(losses)) and model.stop_reason is None),
    }


#: the unconstrained baseline: JEM's recipe (cross-entropy, persistent chains
#: from the replay buffer), the generative weight of the earlier default
JEM_RECIPE = {"classifier_loss": "ce", "base_starts": 0.0, "generative_weight": 0.1}
#: seed-0 variants of the Lipschitz joint model: one choice changed each, and
#: the earlier default (before HKR and base starts), for the ablation table
VARIANTS = {
    "lip-joint-ce": {"classifier_loss": "ce"},
    "lip-joint-buffer": {"base_starts": 0.0},
    "lip-joint-before": JEM_RECIPE,
}


def _joint_row(model, info, data, ood, lipschitz):
    """The metrics of a trained joint model (OOD for every seed)."""
    row = dict(
        info,
        k=model.k_coef_lip,
        generative_weight=model.generative_weight,
        classifier_loss=type(model.classifier_loss).__name__,
        base_starts=model.base_starts,
    )
    diverged = not info["finite"]
    if not diverged:
        row.update(
            classifier_metrics(
                lambda x, m=model: m.logits(x),
                data,
                model.k_coef_lip,
                certified=lipschitz,
                energy=lambda x, m=model: m.energy(x, batch_size=1024).numpy(),
                ood=ood,
            )
        )
        diverged = row["accuracy"] < 0.5
    row["diverged"] = bool(diverged)
    return row


def over_seeds(rows) -> dict:
    """Mean and worst over the seeds that did not diverge: accuracy, ECE,
    certified accuracy at 0.1, and per OOD set the AUROC of the better score."""
    rows = [r for r in rows if not r["diverged"]]
    if not rows:
        return {}
    out = {}
    for key, worst in (("accuracy", min), ("ece", max)):
        values = [r[key] for r in rows]
        out[key] = {"mean": float(np.mean(values)), "worst": float(worst(values))}
    if "certified" in rows[0]:
        values = [r["certified"][str(RADII[0])] for r in rows]
        out["certified"] = {"mean": float(np.mean(values)), "worst": min(values)}
    for kind in rows[0].get("ood", {}):
        values = [max(r["ood"][kind].values()) for r in rows]
        out[f"ood_{kind}"] = {"mean": float(np.mean(values)), "worst": min(values)}
    return out


def train_discriminative(data, seed, epochs, k, loss):
    """The deel-lip classifier alone: logits ``k f`` and a Keras loss."""
    from deel.lip.losses import MulticlassHKR

    net = _lip_classifier(seed)
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Rescaling(k)(net(inputs)) if loss == "ce" else net(inputs)
    model = keras.Model(inputs, outputs)
    if loss == "ce":
        objective = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        y = data.y_train
    else:  # deel-lip's HKR on f, one-hot labels
        objective = MulticlassHKR(alpha=50.0, min_margin=0.5)
        y = np.eye(10, dtype=np.float32)[data.y_train]
    model.compile(optimizer=keras.optimizers.Adam(LR), loss=objective)
    start = time.perf_counter()
    model.fit(data.x_train, y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=True)
    seconds = time.perf_counter() - start
    scale = 1.0 if loss == "ce" else k  # HKR's f, read at the joint model's k

    def logits(x):
        return model(x, training=False) * scale

    return logits, net, {"seconds": round(seconds, 1)}


def classifier_metrics(logits_fn, data, k, certified, energy=None, ood=None):
    import tensorflow as tf

    logits = logits_fn(tf.constant(data.x_test)).numpy()
    probs = tf.nn.softmax(logits).numpy()
    row = {
        "accuracy": float(np.mean(probs.argmax(1) == data.y_test)),
        "ece": metrics.expected_calibration_error(probs, data.y_test),
    }
    if certified:
        cert = certificates.certified_robust_accuracy(
            logits, data.y_test, k, RADII, math.sqrt(2.0)
        )
        row["certified"] = {str(r): cert[r] for r in RADII}
    row["pgd"] = {
        str(r): pgd_accuracy(logits_fn, data.x_test, data.y_test, r) for r in RADII
    }

    def proba(x):
        return tf.nn.softmax(logits_fn(tf.constant(x))).numpy()

    if ood is not None:
        row["ood"] = ood_aurocs(energy, proba, data.x_test, ood)
    return row


def _grade_samples(model, x, labels) -> dict:
    own = model.predict_proba(x).argmax(1)
    reference = metrics.digits_classifier().predict_proba(x.reshape(len(x), -1))
    return {
        "accuracy_joint": float(np.mean(own == labels)),
        "accuracy_reference": float(np.mean(reference.argmax(1) == labels)),
        "fd": metrics.frechet_distance(x, TEST_IMAGES[0]),
    }


def conditional_samples(model, seed):
    """Default conditional sampling (the fitted start resampled toward p(x|y),
    then chains on E(x, y)), and chains from uniform noise alone."""
    labels = np.repeat(np.arange(10), SAMPLES_PER_CLASS)
    x = model.sample(len(labels), y=labels, num_steps=SAMPLE_STEPS, seed=seed)
    x = np.clip(x.numpy(), -1.0, 1.0)
    graded = {"default": dict(_grade_samples(model, x, labels), steps=SAMPLE_STEPS)}
    noise = model.sample(
        len(labels), y=labels, num_steps=PRIOR_STEPS, init="prior", seed=seed
    )
    graded["from_noise"] = dict(
        _grade_samples(model, np.clip(noise.numpy(), -1.0, 1.0), labels),
        steps=PRIOR_STEPS,
    )
    return x, labels, graded


def sklearn_rows(data, ood):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    flat = data.x_train.reshape(len(data.x_train), -1)
    rows = {}
    for name, clf in (
        ("logreg", LogisticRegression(max_iter=5000)),
        ("svc", CalibratedClassifierCV(SVC(), ensemble=False)),
    ):
        clf.fit(flat, data.y_train)

        def proba(x, clf=clf):
            return clf.predict_proba(x.reshape(len(x), -1))

        p = proba(data.x_test)
        rows[name] = {
            "accuracy": float(np.mean(p.argmax(1) == data.y_test)),
            "ece": metrics.expected_calibration_error(p, data.y_test),
            "ood": {
                kind: {"max_prob": metrics.auroc(-p.max(1), -proba(x).max(1))}
                for kind, x in ood.items()
            },
        }
    return rows


def save_picture(samples, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(10, 11, figsize=(6.6, 6.4))
    for c in range(10):
        for j in range(11):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.text(0.5, 0.5, str(c), ha="center", va="center", fontsize=12)
                ax.axis("off")
                continue
            name = list(samples)[0 if j <= 5 else 1]
            x, labels = samples[name]
            picks = np.flatnonzero(labels == c)[(j - 1) % 5]
            ax.imshow(x[picks, :, :, 0], cmap="gray_r", vmin=-1, vmax=1)
            if c == 0:
                ax.set_title(name if j in (1, 6) else "", fontsize=7, loc="left")
    fig.suptitle(
        "Class-conditional samples: one row per class (left: Lipschitz joint model,"
        f"\nright: unconstrained JEM; {SAMPLE_STEPS} Langevin steps on E(x, y))",
        fontsize=9,
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


SEED_COLUMNS = ("accuracy", "ece", "certified") + tuple(
    f"ood_{kind}" for kind in datasets.OOD_KINDS
)


def markdown(result) -> str:
    """The result as Markdown tables (docs/benchmarks.md)."""
    kinds = list(datasets.OOD_KINDS)
    lines = [
        "| model | accuracy | ECE | certified @0.1 / 0.25 / 0.5 "
        "| PGD @0.1 / 0.25 / 0.5 |",
        "|---|---|---|---|---|",
    ]
    for name, rows in result["runs"].items():
        row = rows[0]
        if "accuracy" not in row:
            continue
        cert = row.get("certified")
        cert = " / ".join(f"{v:.3f}" for v in cert.values()) if cert else "—"
        pgd = row.get("pgd")
        pgd = " / ".join(f"{v:.3f}" for v in pgd.values()) if pgd else "—"
        lines.append(
            f"| {name} | {row['accuracy']:.3f} | {row['ece']:.3f} | {cert} | {pgd} |"
        )
    lines += [
        "",
        "| model | score | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for name, rows in result["runs"].items():
        ood = rows[0].get("ood")
        if not ood:
            continue
        for score in ("energy", "max_prob"):
            if score not in ood[kinds[0]]:
                continue
            values = " | ".join(f"{ood[k][score]:.3f}" for k in kinds)
            label = "E(x)" if score == "energy" else "max p(y|x)"
            lines.append(f"| {name} | {label} | {values} |")
    lines += ["", "| model | samples | steps | joint's accuracy | reference's | FD |"]
    lines.append("|---|---|---|---|---|---|")
    for name, rows in result["runs"].items():
        for how, g in rows[0].get("conditional_samples", {}).items():
            lines.append(
                f"| {name} | {how} | {g['steps']} | {g['accuracy_joint']:.3f} | "
                f"{g['accuracy_reference']:.3f} | {g['fd']:.2f} |"
            )
    lines += ["", "| model | diverged | accuracy over seeds (mean, min–max) |"]
    lines.append("|---|---|---|")
    for name, share in result["diverged"].items():
        acc = result.get("accuracy_over_seeds", {}).get(name)
        text = f"{acc['mean']:.3f} ({acc['min']:.3f}–{acc['max']:.3f})" if acc else "—"
        lines.append(f"| {name} | {share} | {text} |")
    seeds = result.get("over_seeds", {})
    if seeds:
        lines += ["", "| model | " + " | ".join(SEED_COLUMNS) + " |"]
        lines.append("|---|" + "---|" * len(SEED_COLUMNS))
        for name, summary in seeds.items():
            cells = []
            for column in SEED_COLUMNS:
                value = summary.get(column)
                cells.append(
                    f"{value['mean']:.3f} ({value['worst']:.3f})" if value else "—"
                )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds of the joint models"
    )
    parser.add_argument("--epochs", type=int, default=100, help="epochs (batch 256)")
    parser.add_argument(
        "--weights",
        default="0.02,0.2",
        help="generative weights of more lip-joint runs (seed 0), beside the default",
    )
    parser.add_argument(
        "--no-variants",
        dest="variants",
        action="store_false",
        help="skip the seed-0 ablation rows (lip-joint-ce, -buffer, -before)",
    )
    parser.add_argument("--out", default="benchmarks/results/joint.json")
    parser.add_argument("--picture", default="docs/img/joint_samples.png")
    parser.add_argument("--render", help="only write the .md tables of a result")
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text())
        Path(args.render).with_suffix(".md").write_text(markdown(result))
        return
    data = datasets.load_digits()
    TEST_IMAGES[:] = [data.x_test]
    ood = datasets.ood_sets(data.x_test, data.y_test)
    result = {"epochs": args.epochs, "batch": BATCH, "seeds": args.seeds, "runs": {}}
    pictures = {}
    for seed in range(args.seeds):
        for name, lipschitz, kwargs in (
            ("lip-joint", True, {}),
            ("jem", False, JEM_RECIPE),
        ):
            model, info = train_joint(data, seed, args.epochs, lipschitz, **kwargs)
            row = _joint_row(model, info, data, ood, lipschitz)
            if seed == 0 and info["finite"]:  # graded even when inaccurate
                x, labels, graded = conditional_samples(model, seed=1)
                row["conditional_samples"] = graded
                pictures[name] = (x, labels)
            result["runs"].setdefault(name, []).append(row)
            print(name, seed, json.dumps(row)[:400], flush=True)
        if seed == 0:
            weights = [float(w) for w in args.weights.split(",") if w]
            variants = {f"lip-joint-w{w:g}": {"generative_weight": w} for w in weights}
            if args.variants:
                variants.update(VARIANTS)
            for name, kwargs in variants.items():
                model, info = train_joint(data, seed, args.epochs, **kwargs)
                row = _joint_row(model, info, data, ood, True)
                result["runs"][name] = [row]
                print(name, json.dumps(row)[:400], flush=True)
            k = result["runs"]["lip-joint"][0]["k"]
            for loss in ("ce", "hkr"):
                logits_fn, net, info = train_discriminative(
                    data, seed, args.epochs, k, loss
                )
                row = dict(info, k=k)
                row.update(
                    classifier_metrics(
                        logits_fn, data, k, certified=True, energy=None, ood=ood
                    )
                )
                result["runs"][f"lip-{loss}"] = [row]
                print(f"lip-{loss}", json.dumps(row)[:400], flush=True)
            for name, row in sklearn_rows(data, ood).items():
                result["runs"][name] = [row]
    for name in ("lip-joint", "jem"):
        rows = result["runs"][name]
        result.setdefault("diverged", {})[name] = (
            f"{sum(r['diverged'] for r in rows)}/{len(rows)}"
        )
        accs = [r["accuracy"] for r in rows if "accuracy" in r]
        if accs:
            result.setdefault("accuracy_over_seeds", {})[name] = {
                "mean": float(np.mean(accs)),
                "min": float(np.min(accs)),
                "max": float(np.max(accs)),
            }
        result.setdefault("over_seeds", {})[name] = over_seeds(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    Path(args.out).with_suffix(".md").write_text(markdown(result))
    if len(pictures) == 2 and args.picture:
        save_picture(pictures, args.picture)
    print(json.dumps({"diverged": result["diverged"]}))


if __name__ == "__main__":
    main()

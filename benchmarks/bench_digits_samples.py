"""Digits generation: samples of the default recipe and of variants, graded by the
Fréchet digits distance beside sklearn's GaussianMixture, in one run.

Each variant trains with :func:`deel_ebm.app.runs.train_run` (the recipe of
``deel-ebm train --dataset digits``, seed 0, on the bundled digits: 1 257
training and 540 test images, pixels in [-1, 1]) and is sampled in several ways
(1 000 samples each, seed 1). Every sample set is graded against the test
images by :func:`deel_ebm.metrics.frechet_distance` (features of the reference
digits classifier), :func:`~deel_ebm.metrics.mean_confidence` and the class
coverage (classes holding at least 2 % of the samples,
:func:`~deel_ebm.metrics.class_histogram`). In the same run:
``GaussianMixtureBaseline`` (sklearn, full covariances, components by BIC)
fitted on the training images and sampled, the training images themselves (the
floor) and uniform noise. Writes the table as JSON and a picture: test images,
the default samples and the GaussianMixture's.

    python benchmarks/bench_digits_samples.py
    python benchmarks/bench_digits_samples.py --variants default
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import deel_ebm
from deel_ebm import baselines, certificates, datasets, metrics, plotting
from deel_ebm.app import runs
from deel_ebm.core import samplers

N_SAMPLES = 1000
SAMPLE_SEED = 1
#: training variants: RunConfig fields beside ``dataset="digits"``
VARIANTS = {
    "default": {},
    "hkr": {"loss": "hkr"},
    "k128": {"k_coef_lip": 128.0, "step_size": 0.02 / 128},
    "long": {"epochs": 300},  # 1 500 steps
}


def max_grad_norm(model, x) -> float:
    """The largest ``‖∇E(x_i)‖`` over samples: a lower bound of Lip(E)."""
    import tensorflow as tf  # after deel_ebm: Keras 2

    x = tf.convert_to_tensor(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        e = model.energy(x)
    g = tf.reshape(tape.gradient(e, x), [len(x), -1])
    return float(tf.reduce_max(tf.norm(g, axis=1)))


def grade(x, x_test) -> dict:
    x = np.asarray(x, np.float32)
    shown = np.clip(x, -1.0, 1.0)  # the classifier's pixel range
    hist = metrics.class_histogram(shown)
    return {
        "fd": metrics.frechet_distance(x, x_test),
        "confidence": metrics.mean_confidence(shown),
        "classes_covered": int(np.sum(hist >= 0.02)),
    }


def samplings(model, full: bool):
    """``name -> samples`` for one trained model (the default first)."""
    n, seed = N_SAMPLES, SAMPLE_SEED
    out = {"default: sample()": model.sample(n, seed=seed)}
    out["old default: prior + 40 ULA"] = model.sample(n, init="prior", seed=seed)
    if not full:
        return out
    eta = float(model.sampler.step_size.numpy())
    out["base draws, no chain"] = model.base.sample(n, [0, seed])
    out["base + 200 ULA"] = model.sample(n, num_steps=200, seed=seed)
    out["base + 40 MALA"] = model.sample(
        n, seed=seed, sampler=samplers.MALASampler(num_steps=40, step_size=eta)
    )
    out["buffer + 40 ULA"] = model.sample(n, init="buffer", seed=seed)
    out["prior + 400 ULA"] = model.sample(n, init="prior", num_steps=400, seed=seed)
    out["prior + 2000 ULA"] = model.sample(n, init="prior", num_steps=2000, seed=seed)
    return out


def figure(x_test, x_model, x_gmm, rows, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6))
    shown = (
        (x_test, f"test images (floor FD {rows['train images (floor)']['fd']:.2f})"),
        (x_model, f"deel-ebm default samples (FD {rows['default']['fd']:.2f})"),
        (x_gmm, f"GaussianMixture samples (FD {rows['GaussianMixture']['fd']:.2f})"),
    )
    for ax, (x, title) in zip(axes, shown):
        plotting.plot_image_grid(x[:64], nrow=8, value_range=(-1, 1), ax=ax)
        ax.set_title(title, fontsize=10)
    fig.suptitle(
        "Digits: `deel-ebm train --dataset digits` (600 steps) then sample(): a "
        "fitted mixture refined by 40 Langevin steps on E = 64 f\n"
        "Fréchet digits distance to the 540 test images (lower is better)",
        fontsize=10,
    )
    fig.tight_layout()
    plotting.save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument(
        "--out", default="benchmarks/results/digits_samples.json", help="JSON table"
    )
    parser.add_argument("--figure", default="docs/img/digits_samples.png")
    args = parser.parse_args(argv)
    data = datasets.load_digits(seed=0)
    x_train, x_test = data.x_train, data.x_test
    rows = {}

    def add(name, steps, x):
        rows[name] = {"steps": steps, **grade(x, x_test)}
        r = rows[name]
        print(
            f"{name:42s} {str(steps):>5s} {r['fd']:8.2f} {r['confidence']:6.3f} "
            f"{r['classes_covered']:4d}",
            flush=True,
        )

    print(f"{'method':42s} {'steps':>5s} {'FD':>8s} {'conf':>6s} {'cov':>4s}")
    add("train images (floor)", "-", x_train)
    noise = np.random.default_rng(0).uniform(-1, 1, (N_SAMPLES, 8, 8, 1))
    add("uniform noise", "-", noise)
    gmm = baselines.GaussianMixtureBaseline(seed=0).fit(x_train)
    x_gmm, _ = gmm.estimator_.sample(N_SAMPLES)  # sorted by component: shuffle
    x_gmm = x_gmm[np.random.default_rng(SAMPLE_SEED).permutation(N_SAMPLES)]
    x_gmm = x_gmm.reshape(-1, 8, 8, 1).astype(np.float32)
    add("GaussianMixture", f"{gmm.n_components_}c", x_gmm)
    x_default, certified = None, {}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for variant in args.variants:
        config = runs.RunConfig(dataset="digits", **VARIANTS[variant])
        with tempfile.TemporaryDirectory() as tmp:
            out = runs.train_run(config, Path(tmp) / "run", progress_every=None)
            model, _, _ = runs.load_run(Path(tmp) / "run")
        steps = str(out["steps_run"])
        own = None
        for name, x in samplings(model, full=variant == "default").items():
            x = np.asarray(x)
            own = x if own is None else own
            if variant == "default" and name.startswith("default"):
                x_default = x
                add("default", steps, x)
            else:
                add(f"{variant}: {name}", steps, x)
        if variant == "default":
            Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
            figure(x_test, x_default, x_gmm, rows, args.figure)
        bound = model.k_coef_lip * certificates.lipschitz_upper_bound(model.network)
        lower = max_grad_norm(model, own)
        certified[variant] = {"k": model.k_coef_lip, "upper": bound, "lower": lower}
        print(
            f"  {variant}: k = {model.k_coef_lip:g}, "
            f"Lip(E) in [{lower:.2f}, {bound:.2f}]"
        )
        results = {
            "protocol": "sklearn digits (seed-0 70/30 split), 1000 samples, seed 1, "
            "Frechet digits distance to the 540 test images",
            "deel_ebm_version": deel_ebm.__version__,
            "rows": rows,
            "lipschitz": certified,
        }
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(
        f"wrote {args.out}" + (f" and {args.figure}" if x_default is not None else "")
    )


if __name__ == "__main__":
    main()

"""Learning schemes × 2D densities: exact quality at wall-time checkpoints.

Each scheme is trained through the public Python API (``EnergyModel``,
``compile``, ``fit``) for the largest checkpoint; at each checkpoint the exact
KL(data‖model), reverse KL, test NLL and (8gaussians) per-mode masses are
computed on the grid (evaluation time is not counted). KernelDensity and
GaussianMixture are fitted on the same training points in the same run.

    python benchmarks/bench_schemes.py --schemes default pcd --minutes 3 5 \\
        --densities 8gaussians rings checkerboard 2spirals --seeds 0 \\
        --out benchmarks/results/schemes.json

Schemes (see ``docs/guide.md``):

- ``default``: ``EnergyModel(net)``, ``Adam(1e-3)``, ``fit(x)`` with
  ``net = lipschitz_mlp(input_shape=(2,))``: what a user writes by hand (in 2D:
  64 FullSort units then 2 × 128 GroupSort8, importance-sampled maximum
  likelihood, k learned from 20 within 80, batch 1024, the weight average 0.995);
- ``default-no-average``: the same with ``weight_average=None``;
- ``learn-k``: k learned from 20 within 80, explicitly;
- ``pcd``: the earlier default: chains (60 ULA steps of 5e-3, replay buffer)
  with the CD loss, k = 20, Adam(1e-3, beta_1=0) with the weight average;
- ``pcd-ml``: chains with the maximum-likelihood loss and k = 40;
- ``mala``: chains of MALA with step-size adaptation toward acceptance 0.57;
- ``jarzynski``: 1024 Jarzynski-weighted walkers (``JarzynskiWalkers``; 60 ULA
  steps of 5e-3 each step, resampled when the ESS falls below half), maximum
  likelihood, k = 40.

``--units``, ``--activation`` (the net of every scheme: a name, or one per
layer separated by commas, e.g. ``fullsort,fullsort,fullsort``), ``--lr`` and
``--model-kw`` (EnergyModel arguments, JSON; ``default`` scheme) make sweeps;
``--label`` names the rows. ``{"k_coef_lip": 40.0}`` gives a fixed k.
``--schemes`` with no name fits and scores the baselines alone.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import deel_ebm
from deel_ebm import baselines, datasets, metrics
from deel_ebm.app import runs

# isort: split
import tensorflow as tf

DENSITIES = datasets.DENSITIES  # the six built-in densities


def _adam(lr=1e-3, beta_1=0.9, ema=None):
    extra = {} if ema is None else {"use_ema": True, "ema_momentum": ema}
    return tf.keras.optimizers.Adam(lr, beta_1=beta_1, **extra)


def build(scheme, domain, seed, lr=1e-3, units=None, model_kw=None, activation=None):
    """``(model, batch_size)`` for a scheme; ``batch_size=None``: fit's default.

    ``lr``, ``units`` and ``model_kw`` (extra EnergyModel arguments) apply to the
    ``default`` scheme (sweeps)."""
    units = None if units is None else tuple(units)  # None: lipschitz_mlp's default
    net = deel_ebm.nets.lipschitz_mlp(
        input_shape=(2,), units=units, seed=seed, activation=activation
    )
    buffer = deel_ebm.ReplayBuffer(domain=domain, seed=seed)
    if scheme == "default":
        model = deel_ebm.EnergyModel(net, seed=seed, **(model_kw or {}))
        opt, batch = _adam(lr), None
    elif scheme == "default-no-average":
        model = deel_ebm.EnergyModel(net, weight_average=None, seed=seed)
        opt, batch = _adam(), None
    elif scheme == "learn-k":
        model = deel_ebm.EnergyModel(
            net, k_coef_lip=20.0, learn_k=True, k_max=80.0, seed=seed
        )
        opt, batch = _adam(), None
    elif scheme == "pcd":
        model = deel_ebm.EnergyModel(
            net,
            k_coef_lip=20.0,
            sampler=deel_ebm.LangevinSampler(num_steps=60, step_size=5e-3),
            buffer=buffer,
            loss="cd",
            proposal=None,
            weight_average=None,
            seed=seed,
        )
        opt, batch = _adam(beta_1=0.0, ema=0.995), 256
    elif scheme == "pcd-ml":
        model = deel_ebm.EnergyModel(
            net, k_coef_lip=40.0, buffer=buffer, proposal=None, seed=seed
        )
        opt, batch = _adam(ema=0.995), 256
    elif scheme == "mala":
        sampler = deel_ebm.MALASampler(
            num_steps=30,
            step_size=5e-3,
            target_accept=0.57,
            max_step_size=2e-2,
        )
        model = deel_ebm.EnergyModel(
            net,
            k_coef_lip=40.0,
            sampler=sampler,
            buffer=buffer,
            proposal=None,
            seed=seed,
        )
        opt, batch = _adam(ema=0.995), 256
    elif scheme == "jarzynski":
        model = deel_ebm.EnergyModel(
            net,
            k_coef_lip=40.0,
            buffer=buffer,
            walkers=deel_ebm.core.JarzynskiWalkers(1024),
            seed=seed,
        )
        opt, batch = _adam(), 256
    else:
        raise ValueError(f"unknown scheme {scheme!r}")
    model.compile(optimizer=opt)
    return model, batch


class Checkpoints(tf.keras.callbacks.Callback):
    """Evaluates at wall-time checkpoints; evaluation time is not counted."""

    def __init__(self, seconds, evaluate):
        super().__init__()
        self.seconds, self.evaluate = sorted(seconds), evaluate
        self.rows, self.train_time, self.started = [], 0.0, None

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.train_time += time.perf_counter() - self.started
        if self.train_time >= self.seconds[len(self.rows)]:
            row = self.evaluate(self.model)
            row.update(
                seconds=self.train_time,
                steps=int(self.model.optimizer.iterations.numpy()),
                logs={k: float(v) for k, v in (logs or {}).items()},
            )
            self.rows.append(row)
            print(
                f"    {row['seconds']:.0f}s {row['steps']} steps KL {row['kl']:.4f}"
                f" rev {row['reverse_kl']:.3f}",
                flush=True,
            )
            if len(self.rows) == len(self.seconds):
                self.model.stop_training = True


def exact(energy, name, x_test):
    m = metrics.exact_metrics_2d(energy, name, x_test=x_test)
    keys = ("kl", "reverse_kl", "test_nll", "data_test_nll", "mode_masses")
    return {k: m[k] for k in keys}


def run_scheme(scheme, name, minutes, seed, **build_kw):
    density = datasets.get_density(name)
    x_train, x_test = datasets.load_2d(name, 20_000, 5_000, seed)
    tf.keras.utils.set_random_seed(seed)
    model, batch = build(scheme, density.domain, seed, **build_kw)

    def evaluate(model):
        """Exact metrics of the weights ``fit`` would end with (the average)."""
        opt, averaging = model.optimizer, model.averaging
        keras_ema = getattr(opt, "use_ema", False)
        if keras_ema:
            saved = [v.numpy() for v in model.trainable_variables]
            opt.finalize_variable_values(model.trainable_variables)
        elif averaging is not None:
            averaging.swap_in()
        model.refresh_constraints()

        def energy(x):
            return model.energy(np.asarray(x, np.float32), batch_size=65536).numpy()

        row = exact(energy, name, x_test)
        row["k"] = float(model.k_coef_lip)
        if keras_ema:
            for v, value in zip(model.trainable_variables, saved):
                v.assign(value)
        elif averaging is not None:
            averaging.swap_out()
        model.refresh_constraints()
        return row

    ck = Checkpoints([60.0 * m for m in minutes], evaluate)
    model.fit(x_train, batch_size=batch, epochs=100_000, verbose=0, callbacks=[ck])
    return ck.rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--schemes",
        nargs="*",
        default=["default"],
        help="schemes to train (none given: the baselines alone)",
    )
    p.add_argument("--densities", nargs="+", default=list(DENSITIES))
    p.add_argument("--minutes", nargs="+", type=float, default=[3.0, 5.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--lr", type=float, default=1e-3, help="default scheme: Adam lr")
    p.add_argument("--units", type=int, nargs="+", default=None)
    p.add_argument("--activation", default=None, help="default: lipschitz_mlp's")
    p.add_argument(
        "--model-kw", default="{}", help="default scheme: EnergyModel kwargs (JSON)"
    )
    p.add_argument("--label", default=None, help="scheme name in the output")
    p.add_argument("--out", default=None, help="append JSON lines here")
    args = p.parse_args(argv)
    if not args.schemes and args.no_baselines:
        p.error("nothing to run: no scheme and --no-baselines")
    for seed in args.seeds:
        for name in args.densities:
            if not args.no_baselines:
                x_train, x_test = datasets.load_2d(name, 20_000, 5_000, seed)
                for label, cls in (
                    ("gmm", baselines.GaussianMixtureBaseline),
                    ("kde", baselines.KernelDensityBaseline),
                ):
                    est = cls(seed=seed).fit(x_train)
                    row = exact(est.energy, name, x_test)
                    print(f"{name:13s} {label:12s} KL {row['kl']:.4f}", flush=True)
                    _write(args.out, dict(scheme=label, density=name, seed=seed, **row))
            for scheme in args.schemes:
                print(f"{name:13s} {scheme} seed {seed}", flush=True)
                rows = run_scheme(
                    scheme,
                    name,
                    args.minutes,
                    seed,
                    lr=args.lr,
                    units=args.units,
                    model_kw=json.loads(args.model_kw),
                    activation=args.activation,
                )
                label = args.label or scheme
                for row in rows:
                    _write(args.out, dict(scheme=label, density=name, seed=seed, **row))


def _write(path, row):
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(runs.to_jsonable(row)) + "\n")


if __name__ == "__main__":
    main()

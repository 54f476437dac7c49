"""deel-ebm against its PyTorch peer (torchebm + deel-torchlip) on the same energies.

Speed (default): Langevin throughput (sample-steps per second: batch / time of one
chain step) and full PCD train step time, on the 3x256 dense energy with 2D and 64D
inputs and on the digits conv energy (8x8x1), batch 512, 60 steps of size 5e-3,
k = 20: deel-ebm's Lipschitz energy and its unconstrained GroupSort2 twin (timed
by ``bench_train_step.py``'s functions, in this process), then the peer
(``benchmarks/peer/bench_peer.py``, run with the peer's Python) for the same
configs. ``--rounds N`` alternates the two N times and pools the repeats.

    python benchmarks/bench_peer_compare.py --repeats 5 --json peer_speed.json

Quality per second (``--time-to-kl``): both train deel-ebm's default recipe
(``runs.RunConfig()``) on the same 8gaussians points and, every ``--eval-every``
seconds of training time (evaluations not counted), score the weight average with
``metrics.exact_metrics_2d``; the time to the first KL(p_data || p_model) <=
``--kl-target`` is compared.

    python benchmarks/bench_peer_compare.py --time-to-kl --kl-minutes 10 --json kl.json

The peer's environment: ``python3 -m venv /work/peer-venv && /work/peer-venv/bin/pip
install -r benchmarks/peer/requirements.txt``. Ratios above 1 favour deel-ebm.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "peer")]

import bench_train_step as bts  # noqa: E402
import kl_companion  # noqa: E402

import deel_ebm  # noqa: E402  (first: it selects the Keras 2 API)

# isort: split
import tensorflow as tf  # noqa: E402

from deel_ebm import keras, metrics  # noqa: E402
from deel_ebm.app import runs  # noqa: E402

CONFIGS = {  # name: (net, sample shape); bench_peer.py has the same
    "dense2d": ("dense", (2,)),
    "dense64d": ("dense", (64,)),
    "digits_conv": ("conv", (8, 8, 1)),
}
PEER = HERE / "peer" / "bench_peer.py"


# ---------------------------------------------------------------- speed
def build_deel(kind, name, args):
    """deel-ebm's model for one config, built by ``bench_train_step.build``."""
    net_kind, shape = CONFIGS[name]
    ns = argparse.Namespace(net=net_kind, dim=shape[-1], units=args.units)
    ns.steps = args.steps
    ns.scheme = "pcd"  # chains in every train step, on both sides
    if net_kind == "dense" or hasattr(bts, "build_net"):  # it knows --net conv
        return bts.build(kind, ns)
    if kind == "lipschitz":  # an older bench_train_step: the same settings here
        net = deel_ebm.nets.lipschitz_convnet(shape)
    else:
        net = deel_ebm.nets.unconstrained_convnet(shape, activation=kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = deel_ebm.EnergyModel(
            net,
            k_coef_lip=20.0,
            sampler=deel_ebm.LangevinSampler(num_steps=args.steps, step_size=5e-3),
            buffer=deel_ebm.ReplayBuffer(capacity=10_000, domain=(-4.5, 4.5)),
        )
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    return model


def make_data(shape, batch):
    x = np.random.default_rng(0).normal(size=(batch * 8, *shape)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(x).batch(batch).repeat()


def run_peer(args, configs):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [
            args.peer_python,
            str(PEER),
            "--configs",
            *configs,
            "--modes",
            *args.peer_modes,
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--inner",
            str(args.inner),
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.peer_threads),
            "--json",
            str(out),
        ]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def speed(args):
    timing = argparse.Namespace(batch=args.batch, steps=args.steps, inner=args.inner)
    kinds = ["lipschitz", *args.twins]
    models = {c: {k: build_deel(k, c, args) for k in kinds} for c in args.configs}
    data = {c: make_data(CONFIGS[c][1], args.batch) for c in args.configs}
    deel = {
        c: {"chain": {k: [] for k in kinds}, "train": {k: [] for k in kinds}}
        for c in args.configs
    }
    peer = {c: {"chain": {}, "train": {}} for c in args.configs}
    versions = None
    for _ in range(args.rounds):
        for c in args.configs:
            for _ in range(args.repeats):  # interleaved, as bench_train_step.py
                for k, m in models[c].items():
                    deel[c]["chain"][k].append(bts.time_chain(m, timing))
                    deel[c]["train"][k].append(bts.time_train_step(m, timing, data[c]))
            print(f"[deel-ebm] {c} done", flush=True)
        if args.peer_python:
            out = run_peer(args, args.configs)
            versions = out["versions"]
            for c in args.configs:
                s = out["configs"][c]["samples_s"]
                for key, src in (("chain", "chain_step"), ("train", "train_step")):
                    for label, v in s[src].items():
                        peer[c][key].setdefault(label, []).extend(v)
    med = statistics.median
    res = {
        "config": {k: v for k, v in vars(args).items()},
        "tf_version": tf.__version__,
        "deel_ebm_version": deel_ebm.__version__,
        "peer_versions": versions,
        "configs": {},
    }
    for c in args.configs:
        row = {"deel_ebm": {}, "peer": {}, "ratios": {}}
        for side, d in (("deel_ebm", deel[c]), ("peer", peer[c])):
            chain_ms = {k: 1e3 * med(v) for k, v in d["chain"].items() if v}
            row[side] = {
                "chain_step_ms": chain_ms,
                "sample_steps_per_s": {
                    k: args.batch / (v / 1e3) for k, v in chain_ms.items()
                },
                "train_step_ms": {k: 1e3 * med(v) for k, v in d["train"].items() if v},
            }
        if peer[c]["chain"]:
            row["ratios"] = ratios(row, args.twins)
        res["configs"][c] = row
    return res


def ratios(row, twins):
    """Throughput and train-step ratios, deel-ebm to peer (> 1: deel-ebm ahead)."""
    d, p = row["deel_ebm"], row["peer"]
    lip_modes = {k: v for k, v in p["train_step_ms"].items() if k.startswith("lip")}
    fastest = min(lip_modes, key=lip_modes.get)
    out = {
        "peer_fastest_lipschitz_mode": fastest,
        "throughput_lipschitz": d["sample_steps_per_s"]["lipschitz"]
        / p["sample_steps_per_s"]["lipschitz"],
        "train_step_lipschitz": lip_modes[fastest] / d["train_step_ms"]["lipschitz"],
    }
    for mode, ms in lip_modes.items():
        out[f"train_step_vs_peer_{mode}"] = ms / d["train_step_ms"]["lipschitz"]
    if "unconstrained" in p["chain_step_ms"] and "groupsort2" in twins:
        out["throughput_twin"] = (
            d["sample_steps_per_s"]["groupsort2"]
            / p["sample_steps_per_s"]["unconstrained"]
        )
        out["train_step_twin"] = (
            p["train_step_ms"]["unconstrained"] / d["train_step_ms"]["groupsort2"]
        )
    return out


def print_speed(res):
    print(
        f"{'config':12} {'side':9} {'kind':22} {'chain ms':>9} "
        f"{'sample-steps/s':>15} {'train ms':>9}"
    )
    for c, row in res["configs"].items():
        for side in ("deel_ebm", "peer"):
            r = row[side]
            for k, ms in r["chain_step_ms"].items():
                print(
                    f"{c:12} {side:9} {k:22} {ms:9.3f} "
                    f"{r['sample_steps_per_s'][k]:15.0f} "
                    f"{r['train_step_ms'].get(k, float('nan')):9.1f}"
                )
            for k, ms in r["train_step_ms"].items():
                if k not in r["chain_step_ms"]:
                    print(f"{c:12} {side:9} {k:22} {'':9} {'':15} {ms:9.1f}")
        for k, v in row["ratios"].items():
            print(f"{c:12} ratio     {k:34} {v if isinstance(v, str) else f'{v:.2f}'}")


# ---------------------------------------------------------------- time to KL
class KLEvery(keras.callbacks.Callback):
    """Exact KL of the weight average every ``every`` seconds of training time."""

    def __init__(self, every, budget, target, workdir):
        super().__init__()
        self.every, self.budget, self.target = every, budget, target
        self.workdir = workdir
        self.meta = json.loads((workdir / "meta.json").read_text())
        self.x_test = np.load(workdir / "x_test.npy")
        self.history, self.reached = [], None
        self.steps, self.paused, self.next = 0, 0.0, every

    def on_train_begin(self, logs=None):
        self.t0 = time.perf_counter()

    def evaluate(self, train_s):
        model, opt = self.model, self.model.optimizer
        variables = model.trainable_variables
        saved = [v.numpy() for v in variables]
        # the weights fit would end with: the optimizer's or the model's average
        if getattr(opt, "use_ema", False):
            opt.finalize_variable_values(variables)
        elif model.averaging is not None and int(model.averaging.update_count.numpy()):
            for v, average in zip(variables, model.averaging.averages):
                v.assign(average)
        model.refresh_constraints()
        exact = metrics.exact_metrics_2d(
            runs.energy_fn(model),
            self.meta["dataset"],
            x_test=self.x_test,
            domain=tuple(self.meta["domain"]),
        )
        for v, s in zip(variables, saved):
            v.assign(s)
        model.refresh_constraints()  # the chains go on with the live weights
        row = {"train_seconds": train_s, "steps": self.steps}
        row.update(
            {
                k: np.asarray(v).tolist() if v is not None else None
                for k, v in exact.items()
            }
        )
        self.history.append(row)
        print(
            f"[deel-ebm] {train_s:7.1f}s step {self.steps}: KL {exact['kl']:.4f}",
            flush=True,
        )
        return exact["kl"]

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        train_s = time.perf_counter() - self.t0 - self.paused
        if train_s < self.next and train_s < self.budget:
            return
        while self.next <= train_s:  # after a slow step, no catch-up evaluations
            self.next += self.every
        t = time.perf_counter()
        kl = self.evaluate(train_s)
        self.paused += time.perf_counter() - t
        if kl <= self.target and self.reached is None:
            self.reached = {"train_seconds": train_s, "steps": self.steps, "kl": kl}
        if self.reached is not None or train_s >= self.budget:
            self.model.stop_training = True


def deel_time_to_kl(workdir, args):
    meta = json.loads((workdir / "meta.json").read_text())
    config = runs.RunConfig.from_json(meta["recipe"])
    config.epochs = 1_000_000  # the time budget ends the run
    keras.utils.set_random_seed(config.seed)
    x_train = np.load(workdir / "x_train.npy")
    model = runs.build_model(config, x_train.shape[1:], tuple(meta["domain"]))
    cb = KLEvery(args.eval_every, 60.0 * args.kl_minutes, args.kl_target, workdir)
    model.fit(
        x_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        callbacks=[cb],
        verbose=0,
    )
    return {
        "recipe": meta["recipe"],
        "kl_target": args.kl_target,
        "eval_every_s": args.eval_every,
        "budget_s": 60.0 * args.kl_minutes,
        "time_to_kl_s": None if cb.reached is None else cb.reached["train_seconds"],
        "reached": cb.reached,
        "history": cb.history,
        "steps": cb.steps,
    }


def time_to_kl(args):
    with tempfile.TemporaryDirectory(prefix="peer_kl_") as tmp:
        workdir = Path(tmp)
        kl_companion.prepare(workdir, args.kl_dataset, seed=args.kl_seed)
        res = {"deel_ebm": deel_time_to_kl(workdir, args)}
        if args.peer_python:
            out = Path(tmp) / "peer.json"
            minutes = args.peer_kl_minutes or args.kl_minutes
            cmd = [
                args.peer_python,
                str(PEER),
                "--time-to-kl",
                str(workdir),
                "--mode",
                args.peer_kl_mode,
                "--minutes",
                str(minutes),
                "--eval-every",
                str(args.eval_every),
                "--kl-target",
                str(args.kl_target),
                "--threads",
                str(args.peer_threads),
                "--main-python",
                sys.executable,
                "--json",
                str(out),
            ]
            subprocess.run(cmd, check=True)
            peer = json.loads(out.read_text())
            res["peer"] = peer["time_to_kl"]
            res["peer_versions"] = peer["versions"]
    d = res["deel_ebm"]["time_to_kl_s"]
    if "peer" in res and d:
        p = res["peer"]["time_to_kl_s"]
        if p is not None:
            res["peer_over_deel_time_to_kl"] = p / d
        else:  # not reached: the peer's budget over deel-ebm's time is a lower bound
            res["peer_over_deel_time_to_kl_at_least"] = res["peer"]["budget_s"] / d
    summary = {
        side: res[side]["time_to_kl_s"] for side in ("deel_ebm", "peer") if side in res
    }
    print(
        f"time to KL <= {args.kl_target:g} (s of training; None: not reached):",
        summary,
        {k: v for k, v in res.items() if k.startswith("peer_over")},
    )
    return res


# ---------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--units", type=int, nargs="+", default=[256, 256, 256])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--inner", type=int, default=5, help="calls per timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=1, help="deel-ebm/peer alternations")
    p.add_argument("--twins", nargs="*", default=["groupsort2"])
    p.add_argument(
        "--peer-python",
        default="/work/peer-venv/bin/python",
        help="Python of the peer's environment ('' for deel-ebm alone)",
    )
    p.add_argument("--peer-modes", nargs="+", default=["cached", "shared"])
    p.add_argument(
        "--peer-threads",
        type=int,
        default=2,
        help="torch.set_num_threads of the peer (TensorFlow uses every core)",
    )
    p.add_argument("--time-to-kl", action="store_true")
    p.add_argument("--kl-dataset", default="8gaussians")
    p.add_argument(
        "--kl-seed",
        type=int,
        default=0,
        help="seed of the recipe and of the data, for both sides",
    )
    p.add_argument("--kl-minutes", type=float, default=10.0, help="training budget")
    p.add_argument(
        "--peer-kl-minutes",
        type=float,
        default=None,
        help="the peer's budget (default: --kl-minutes)",
    )
    p.add_argument("--peer-kl-mode", default="shared")
    p.add_argument("--eval-every", type=float, default=10.0, help="seconds")
    p.add_argument("--kl-target", type=float, default=0.1)
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args(argv)
    if args.time_to_kl:
        res = time_to_kl(args)
    else:
        res = speed(args)
        print_speed(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()

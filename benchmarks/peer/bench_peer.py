"""PyTorch peer of deel-ebm: torchebm's Langevin sampler and PCD on deel-torchlip nets.

Runs in its own virtual environment (``benchmarks/peer/requirements.txt``), usually
through ``benchmarks/bench_peer_compare.py``; never a dependency of deel-ebm.

The peer is built from the two libraries' public APIs, nothing re-implemented:

- energy: ``E = k f`` (``torchebm.core.BaseModel``) with ``f`` a deel-torchlip twin of
  :mod:`deel_ebm.nets`: ``lipschitz_mlp`` = (``SpectralLinear`` -> ``GroupSort2``) x L
  -> ``FrobeniusLinear(1)`` (``--time-to-kl``: the recipe's activations per layer,
  ``FullSort`` / ``GroupSort(n)``); ``lipschitz_convnet`` = (``SpectralConv2d`` 3x3
  same -> ``GroupSort2`` -> ``ScaledL2NormPool2d(2)``) x 2 -> Flatten ->
  ``SpectralLinear`` -> ``GroupSort2`` -> ``FrobeniusLinear(1)``; the convolutions'
  Lipschitz coefficient is set from the input size as deel-lip does
  (deel-torchlip's default ignores it).
  ``--kinds unconstrained`` times the plain-torch twin (``Linear``/``Conv2d``,
  ``AvgPool2d``, the same GroupSort2).
- chains: ``torchebm.samplers.LangevinDynamics`` (Euler-Maruyama,
  ``x - eta grad E + sqrt(2 eta) xi``: deel-ebm's ``LangevinSampler`` update).
- loss and buffer: ``torchebm.losses.PersistentContrastiveDivergence`` (its
  ``compute_loss`` is deel-ebm's CD loss, mean E+ - mean E- + l2 (mean E+^2 +
  mean E-^2)). Its buffer is replaced by deel-ebm's recipe (:class:`DeelRecipePCD`):
  states drawn uniformly on the domain box, distinct random slots, 5 % of the chains
  restarted from that prior, end states written back to their slots. torchebm's
  own buffer (Gaussian N(0, 0.01^2) fill, FIFO writes, and a "new_sample_ratio"
  that only adds 0.01 noise to 5 % of the starts) is ``--torchebm-buffer``.

deel-torchlip constrains weights through ``torch.nn.utils.parametrize``
(spectral_norm power iteration -> Bjorck -> coefficients), recomputed at every
access of ``.weight`` unless inside ``parametrize.cached()``. Train-step modes:

- ``cached``: the chain runs inside ``cached()`` with the constrained weights
  computed once under ``torch.no_grad``; the loss pass (``compute_loss``) runs in a
  second ``cached()`` block, where they are computed once more, with gradient, and
  shared by its two forwards. Two computations per step, one differentiated.
- ``shared``: one ``cached()`` block for the whole step: the constrained weights are
  computed once, with gradient, and used by the chain (input gradients only) and
  by the loss. One computation per step: the fastest honest configuration.
- ``naive`` (opt-in): torchebm's own ``loss, x_neg = pcd(x_pos)``, no cache: the
  constraint is recomputed at each of the chain's gradient calls.

Timing (``--configs``): Langevin step time (one chain of ``--steps`` steps, the
constrained weights computed once per chain) and full PCD train step time (buffer
draw, chain, loss, one Adam step), ``torch.set_num_threads(--threads)``, one
warm-up call, median over ``--repeats`` of the mean of ``--inner`` calls.

``--time-to-kl DIR``: trains deel-ebm's default recipe (``DIR/meta.json``, written
by ``kl_companion.py prepare`` from ``deel_ebm.runs.RunConfig()``) on the same
8gaussians points, with an EMA of the weights (``torch.optim.swa_utils``), and every
``--eval-every`` seconds of training time (evaluation excluded) exports the EMA
energy on deel-ebm's metric grid; ``kl_companion.py serve``, run with deel-ebm's
Python, returns ``deel_ebm.metrics.exact_metrics_2d``. Stops at the first KL <=
``--kl-target`` or when ``--minutes`` of training time are spent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.utils.parametrize as parametrize
from deel import torchlip
from deel.torchlip.utils.lconv_norm import _LConvNorm, compute_lconv_coef
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchebm.core import BaseModel
from torchebm.losses import PersistentContrastiveDivergence
from torchebm.samplers import LangevinDynamics

HERE = Path(__file__).resolve().parent
CONFIGS = {  # name: (net, sample shape (channels first), buffer domain)
    # bench_train_step.py's buffer box for all three (it does not change the cost)
    "dense2d": ("mlp", (2,), (-4.5, 4.5)),
    "dense64d": ("mlp", (64,), (-4.5, 4.5)),
    "digits_conv": ("conv", (1, 8, 8), (-4.5, 4.5)),
}
MODES = ("cached", "shared", "naive")


# ---------------------------------------------------------------- networks
def activation(name):
    """deel-torchlip's twin of a deel-ebm activation name: ``groupsort2``,
    ``fullsort`` or ``groupsort<n>``."""
    name = name.strip().lower()
    if name == "fullsort":
        return torchlip.FullSort()
    if name.startswith("groupsort") and name[len("groupsort") :].isdigit():
        return torchlip.GroupSort(int(name[len("groupsort") :]))
    raise ValueError(f"no deel-torchlip twin for the activation {name!r}")


def lipschitz_mlp(dim, units=(256, 256, 256), activations=None):
    """deel_ebm.nets.lipschitz_mlp in deel-torchlip. ``activations`` as deel-ebm's
    ``activation``: one name for every layer, names separated by commas, or a
    sequence of names, one per layer (default GroupSort2 everywhere)."""
    activations = activations or "groupsort2"
    if isinstance(activations, str):
        activations = activations.split(",")
    if len(activations) == 1:
        activations = list(activations) * len(units)
    if len(activations) != len(units):
        raise ValueError(f"{len(activations)} activations for {len(units)} layers")
    layers, width = [], dim
    for u, a in zip(units, activations):
        layers += [torchlip.SpectralLinear(width, u), activation(a)]
        width = u
    layers.append(torchlip.FrobeniusLinear(width, 1))
    return torchlip.Sequential(*layers)


def _deel_lip_conv_coef(conv, hw):
    """Set the convolution's Lipschitz coefficient from its input size (deel-lip)."""
    for p in conv.parametrizations.weight:
        if isinstance(p, _LConvNorm):
            p.lconv_coefficient = float(compute_lconv_coef(conv.kernel_size, hw))
    return conv


def lipschitz_convnet(shape=(1, 8, 8), filters=(32, 64), dense_units=128):
    """deel_ebm.nets.lipschitz_convnet in deel-torchlip (channels first)."""
    c, h, w = shape
    layers = []
    for f in filters:
        conv = torchlip.SpectralConv2d(c, f, 3, padding=1)
        layers += [
            _deel_lip_conv_coef(conv, (h, w)),
            torchlip.GroupSort2(),
            torchlip.ScaledL2NormPool2d(2),
        ]
        c, h, w = f, h // 2, w // 2
    layers += [
        torch.nn.Flatten(),
        torchlip.SpectralLinear(c * h * w, dense_units),
        torchlip.GroupSort2(),
        torchlip.FrobeniusLinear(dense_units, 1),
    ]
    return torchlip.Sequential(*layers)


def _orthogonal(layer):
    torch.nn.init.orthogonal_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    return layer


def unconstrained_mlp(dim, units=(256, 256, 256)):
    layers, width = [], dim
    for u in units:
        layers += [_orthogonal(torch.nn.Linear(width, u)), torchlip.GroupSort2()]
        width = u
    layers.append(_orthogonal(torch.nn.Linear(width, 1)))
    return torch.nn.Sequential(*layers)


def unconstrained_convnet(shape=(1, 8, 8), filters=(32, 64), dense_units=128):
    c, h, w = shape
    layers = []
    for f in filters:
        layers += [
            _orthogonal(torch.nn.Conv2d(c, f, 3, padding=1)),
            torchlip.GroupSort2(),
            torch.nn.AvgPool2d(2),
        ]
        c, h, w = f, h // 2, w // 2
    layers += [
        torch.nn.Flatten(),
        _orthogonal(torch.nn.Linear(c * h * w, dense_units)),
        torchlip.GroupSort2(),
        _orthogonal(torch.nn.Linear(dense_units, 1)),
    ]
    return torch.nn.Sequential(*layers)


class Energy(BaseModel):
    """torchebm energy ``E(x) = k f(x)``, one scalar per sample."""

    def __init__(self, net, k_coef_lip):
        super().__init__()
        self.net = net
        self.k = float(k_coef_lip)

    def forward(self, x):
        return self.k * self.net(x).reshape(-1)


# ---------------------------------------------------------------- PCD
class DeelRecipePCD(PersistentContrastiveDivergence):
    """torchebm's PCD loss with deel-ebm's replay buffer (``deel_ebm.ReplayBuffer``).

    Uniform prior on ``domain``, ``batch`` distinct random slots per step, each
    start restarted from the prior with probability ``reinit_prob``, end states
    written back into their slots.
    """

    def __init__(self, model, sampler, k_steps, buffer_size, reinit_prob, domain, l2):
        super().__init__(
            model,
            sampler,
            k_steps=k_steps,
            buffer_size=buffer_size,
            init_steps=0,
            new_sample_ratio=0.0,
            energy_reg_weight=l2,
        )
        self.reinit_prob = float(reinit_prob)
        self.domain = tuple(float(v) for v in domain)
        self._slots = None

    def _prior(self, shape):
        low, high = self.domain
        return torch.empty(shape).uniform_(low, high)

    def initialize_buffer(self, data_shape_no_batch, *args, **kwargs):
        if not self.buffer_initialized:
            self.replay_buffer = self._prior((self.buffer_size, *data_shape_no_batch))
            self.buffer_initialized = True
        return self.replay_buffer

    def get_start_points(self, x, generator=None):
        if not self.buffer_initialized:
            self.initialize_buffer(tuple(x.shape[1:]))
        n = x.shape[0]
        self._slots = torch.randperm(self.buffer_size)[:n]
        starts = self.replay_buffer[self._slots]
        restart = torch.rand(n) < self.reinit_prob
        mask = restart.view(-1, *([1] * (starts.dim() - 1)))
        return torch.where(mask, self._prior(starts.shape), starts)

    def update_buffer(self, samples):
        self.replay_buffer[self._slots] = samples.detach()


def build(kind, net_kind, shape, domain, args, units=(256, 256, 256), activations=None):
    if kind == "lipschitz":
        net = (
            lipschitz_mlp(shape[0], units, activations)
            if net_kind == "mlp"
            else lipschitz_convnet(shape)
        )
    else:
        net = (
            unconstrained_mlp(shape[0], units)
            if net_kind == "mlp"
            else unconstrained_convnet(shape)
        )
    model = Energy(net, args.k)
    sampler = LangevinDynamics(model, step_size=args.step_size, noise_scale=1.0)
    if args.torchebm_buffer:
        pcd = PersistentContrastiveDivergence(
            model,
            sampler,
            k_steps=args.steps,
            buffer_size=args.buffer_size,
            init_steps=0,
            new_sample_ratio=args.reinit_prob,
            energy_reg_weight=args.l2,
        )
    else:
        pcd = DeelRecipePCD(
            model,
            sampler,
            args.steps,
            args.buffer_size,
            args.reinit_prob,
            domain,
            args.l2,
        )
    return pcd


# ---------------------------------------------------------------- steps
def run_chain(pcd, x0, num_steps):
    """One chain; deel-torchlip's constrained weights computed once, no gradient."""
    with parametrize.cached():
        with torch.no_grad():
            pcd.model(x0[:1])  # fills the cache
        return pcd.sampler.sample(x=x0, n_steps=num_steps)


def train_step(pcd, opt, x_pos, mode, ema=None):
    """One PCD step: buffer draw, chain, CD loss, one optimizer step."""
    model = pcd.model
    if mode == "naive":
        loss, _ = pcd(x_pos)
    else:
        starts = pcd.get_start_points(x_pos)
        if mode == "cached":
            x_neg = run_chain(pcd, starts, pcd.k_steps)
            with parametrize.cached():
                loss = pcd.compute_loss(x_pos, x_neg)
        elif mode == "shared":
            with parametrize.cached():
                model(starts[:1])  # constrained weights once, with gradient
                x_neg = pcd.sampler.sample(x=starts, n_steps=pcd.k_steps)
                loss = pcd.compute_loss(x_pos, x_neg)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        pcd.update_buffer(x_neg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if ema is not None:
        ema.update_parameters(model)
    return loss


def make_optimizer(model, lr, beta_1=0.9):
    # Keras' Adam epsilon, so both sides run the same update
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(beta_1, 0.999), eps=1e-7)


def _sync():
    """Wait for the device (CUDA runs asynchronously; a no-op on the CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_chain(pcd, x0, args):
    run_chain(pcd, x0, args.steps)  # warm-up
    _sync()
    t = time.perf_counter()
    for _ in range(args.inner):
        run_chain(pcd, x0, args.steps)
    _sync()
    return (time.perf_counter() - t) / (args.inner * args.steps)


def time_train_step(pcd, opt, batches, mode, args):
    it = iter(batches)
    train_step(pcd, opt, next(it), mode)  # warm-up
    _sync()
    t = time.perf_counter()
    for _ in range(args.inner):
        loss = train_step(pcd, opt, next(it), mode)
    float(loss.detach())
    return (time.perf_counter() - t) / args.inner


def _cycle(x, batch):
    while True:
        for i in range(0, len(x) - batch + 1, batch):
            yield x[i : i + batch]


def versions():
    out = {"python": sys.version.split()[0], "torch": torch.__version__}
    for name in ("torchebm", "deel-torchlip"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def bench(args):
    results = {}
    for name in args.configs:
        net_kind, shape, domain = CONFIGS[name]
        gen = torch.Generator(device=args.device).manual_seed(0)
        x = torch.randn((args.batch * 8, *shape), generator=gen)
        entries = {}  # label -> (pcd, optimizer, mode or None for chain-only)
        for kind in args.kinds:
            pcd = build(kind, net_kind, shape, domain, args)
            opt = make_optimizer(pcd.model, 1e-3)
            pcd.initialize_buffer(tuple(shape))
            modes = args.modes if kind == "lipschitz" else ["cached"]
            entries[kind] = (pcd, opt, modes)
        chain = {k: [] for k in entries}
        step = {
            f"{k}_{m}" if k == "lipschitz" else k: []
            for k, (_, _, modes) in entries.items()
            for m in modes
        }
        low, high = domain  # chains start from the buffer's prior, as deel-ebm's
        x0 = torch.empty((args.batch, *shape)).uniform_(low, high, generator=gen)
        for _ in range(args.repeats):  # interleaved, as bench_train_step.py
            for kind, (pcd, opt, modes) in entries.items():
                chain[kind].append(time_chain(pcd, x0, args))
                for m in modes:
                    label = f"{kind}_{m}" if kind == "lipschitz" else kind
                    batches = _cycle(x, args.batch)
                    step[label].append(time_train_step(pcd, opt, batches, m, args))
        med_chain = {k: 1e3 * statistics.median(v) for k, v in chain.items()}
        med_step = {k: 1e3 * statistics.median(v) for k, v in step.items()}
        lip_steps = {k: v for k, v in med_step.items() if k.startswith("lipschitz_")}
        results[name] = {
            "net": net_kind,
            "sample_shape": list(shape),
            "chain_step_ms": med_chain,
            "sample_steps_per_s": {
                k: args.batch / (v / 1e3) for k, v in med_chain.items()
            },
            "train_step_ms": med_step,
            "fastest_lipschitz_mode": min(lip_steps, key=lip_steps.get)
            if lip_steps
            else None,
            "samples_s": {"chain_step": chain, "train_step": step},
        }
        print(f"[peer] {name}: chain {med_chain} ms, train {med_step} ms", flush=True)
    return results


# ---------------------------------------------------------------- time to KL
def _copy_power_vectors(src, dst):
    """Copy spectral_norm's power-iteration vectors (buffers, not averaged)."""
    dst_buffers = dict(dst.named_buffers())
    for name, buf in src.named_buffers():
        if name.endswith(("_u", "_v")) and name in dst_buffers:
            dst_buffers[name].copy_(buf)


@torch.no_grad()
def evaluate_energy(model, points, warm_calls=5, batch=65536):
    """Energies of ``points`` with freshly computed constrained weights."""
    model.train()  # training mode: power iteration and Bjorck run on the weights
    for _ in range(warm_calls):
        model(points[:1])
    out = []
    with parametrize.cached():
        for i in range(0, len(points), batch):
            out.append(model(points[i : i + batch]))
    return torch.cat(out).double().numpy()


class KLServer:
    """``kl_companion.py serve`` in deel-ebm's environment: exact metrics on demand."""

    def __init__(self, python, workdir):
        self.proc = subprocess.Popen(
            [python, str(HERE / "kl_companion.py"), "serve", "--dir", str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __call__(self, grid_path, test_path):
        line = json.dumps({"grid": str(grid_path), "test": str(test_path)})
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("kl_companion.py serve ended without an answer")
        return json.loads(answer)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def time_to_kl(args):
    workdir = Path(args.time_to_kl)
    meta = json.loads((workdir / "meta.json").read_text())
    recipe = meta.get("peer_recipe", meta["recipe"])
    torch.manual_seed(recipe["seed"])
    x_train = torch.from_numpy(np.load(workdir / "x_train.npy")).float()
    grid = torch.from_numpy(np.load(workdir / "grid.npy")).float()
    x_test = torch.from_numpy(np.load(workdir / "x_test.npy")).float()
    args.k, args.step_size, args.steps = (
        recipe["k_coef_lip"],
        recipe["step_size"],
        recipe["num_steps"],
    )
    args.buffer_size, args.reinit_prob, args.l2 = (
        recipe["buffer_size"],
        recipe["reinit_prob"],
        recipe["l2_weight"],
    )
    kind = "lipschitz" if recipe["lipschitz"] else "unconstrained"
    units = tuple(recipe["units"])
    pcd = build(
        kind,
        "mlp",
        (x_train.shape[1],),
        meta["domain"],
        args,
        units=units,
        activations=recipe.get("activation"),  # "fullsort,groupsort8,..."
    )
    model = pcd.model
    opt = make_optimizer(model, recipe["learning_rate"], recipe["beta_1"])
    ema = None
    if recipe["ema_momentum"] is not None:
        ema = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(recipe["ema_momentum"])
        )
    server = KLServer(args.main_python, workdir)
    out_dir = Path(tempfile.mkdtemp(prefix="peer_kl_"))
    batch, n = recipe["batch_size"], len(x_train)
    budget, history = 60.0 * args.minutes, []
    train_s, steps, next_eval, reached = 0.0, 0, args.eval_every, None

    def evaluate():
        target = model
        if ema is not None:
            target = ema.module
            _copy_power_vectors(model, target)
        grid_path = out_dir / f"grid_{len(history)}.npy"
        test_path = out_dir / f"test_{len(history)}.npy"
        np.save(grid_path, evaluate_energy(target, grid))
        np.save(test_path, evaluate_energy(target, x_test, warm_calls=0))
        exact = server(grid_path, test_path)
        row = {"train_seconds": train_s, "steps": steps, **exact}
        history.append(row)
        print(
            f"[peer] {train_s:7.1f}s step {steps}: KL {exact['kl']:.4f}",
            flush=True,
        )
        return exact["kl"]

    try:
        done = False
        while not done:
            perm = torch.randperm(n)
            for i in range(0, n, batch):
                t = time.perf_counter()
                train_step(pcd, opt, x_train[perm[i : i + batch]], args.mode, ema)
                train_s += time.perf_counter() - t
                steps += 1
                if train_s >= next_eval or train_s >= budget:
                    next_eval += args.eval_every
                    kl = evaluate()
                    model.train()
                    if kl <= args.kl_target and reached is None:
                        reached = {"train_seconds": train_s, "steps": steps, "kl": kl}
                    if reached is not None or train_s >= budget:
                        done = True
                        break
    finally:
        server.close()
    return {
        "recipe": recipe,
        "mode": args.mode,
        "ema": ema is not None,
        "kl_target": args.kl_target,
        "eval_every_s": args.eval_every,
        "budget_s": budget,
        "time_to_kl_s": None if reached is None else reached["train_seconds"],
        "reached": reached,
        "history": history,
        "train_seconds": train_s,
        "steps": steps,
    }


# ---------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--kinds", nargs="+", default=["lipschitz", "unconstrained"])
    p.add_argument("--modes", nargs="+", default=["cached", "shared"], choices=MODES)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--step-size", type=float, default=5e-3)
    p.add_argument("--k", type=float, default=20.0)
    p.add_argument("--buffer-size", type=int, default=10_000)
    p.add_argument("--reinit-prob", type=float, default=0.05)
    p.add_argument("--l2", type=float, default=0.1)
    p.add_argument("--torchebm-buffer", action="store_true")
    p.add_argument("--inner", type=int, default=5, help="calls per timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--device", default="cpu", help="torch device of the speed benchmark (cuda)"
    )
    p.add_argument("--json", default=None, help="write results here")
    p.add_argument("--time-to-kl", metavar="DIR", default=None)
    p.add_argument("--mode", default="shared", choices=MODES, help="for --time-to-kl")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget")
    p.add_argument("--eval-every", type=float, default=10.0, help="seconds")
    p.add_argument("--kl-target", type=float, default=0.1)
    p.add_argument(
        "--main-python",
        default=os.fspath(HERE.parents[1] / ".venv" / "bin" / "python"),
        help="Python of deel-ebm's environment (for kl_companion.py)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device != "cpu":
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            p.error(f"--device {args.device}: torch sees no CUDA device")
        torch.set_default_device(args.device)  # every factory call, modules too
    res = {"versions": versions(), "config": vars(args)}
    if args.time_to_kl:
        res["time_to_kl"] = time_to_kl(args)
    else:
        res["configs"] = bench(args)
    text = json.dumps(res, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    return res


if __name__ == "__main__":
    main()

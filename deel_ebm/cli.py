"""The ``deel-ebm`` command: demo, train, sample, score, evaluate.

Every subcommand reads users' files safely (``.npy`` without pickle, Keras models
in safe mode) and exits with status 2 and a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser"]

DEMO_DIR = "runs/demo"


def _add_recipe(p, defaults):
    g = p.add_argument_group("recipe (defaults: the documented 2D recipe)")
    g.add_argument(
        "--epochs", type=int, default=defaults.epochs, help="passes over the data"
    )
    g.add_argument("--batch-size", type=int, default=defaults.batch_size)
    g.add_argument(
        "--n-train",
        type=int,
        default=defaults.n_train,
        help="training points drawn from a built-in 2D density",
    )
    g.add_argument(
        "--k",
        type=float,
        default=defaults.k_coef_lip,
        dest="k_coef_lip",
        help="Lipschitz constant k of the energy E = k f",
    )
    g.add_argument(
        "--units",
        type=int,
        nargs="+",
        default=list(defaults.units),
        help="hidden widths of the dense energy net (even numbers)",
    )
    g.add_argument(
        "--num-steps",
        type=int,
        default=defaults.num_steps,
        help="Langevin steps per training step",
    )
    g.add_argument(
        "--step-size",
        type=float,
        default=defaults.step_size,
        help="Langevin step size eta",
    )
    g.add_argument(
        "--init-temperature",
        type=float,
        default=defaults.init_temperature,
        help="start temperature of annealed chains (1: no annealing)",
    )
    g.add_argument("--buffer-size", type=int, default=defaults.buffer_size)
    g.add_argument("--reinit-prob", type=float, default=defaults.reinit_prob)
    g.add_argument(
        "--l2-weight",
        type=float,
        default=defaults.l2_weight,
        help="weight of the L2 energy regulariser",
    )
    g.add_argument("--loss", choices=("cd", "hkr"), default=defaults.loss)
    g.add_argument(
        "--lr", type=float, default=defaults.learning_rate, dest="learning_rate"
    )
    g.add_argument(
        "--ema-momentum",
        type=_ema_momentum,
        default=defaults.ema_momentum,
        help="momentum of the moving average of the weights kept by the optimizer "
        "and swapped in when training ends ('none': off; default %(default)s)",
    )
    g.add_argument(
        "--unconstrained",
        action="store_true",
        help="ablation: the same net without the Lipschitz constraint",
    )
    g.add_argument("--seed", type=int, default=defaults.seed)
    g.add_argument(
        "--max-minutes",
        type=float,
        default=defaults.max_minutes,
        help="stop training after this wall time",
    )
    g.add_argument("--quiet", action="store_true", help="one line per epoch")


def _ema_momentum(text: str):
    if text.strip().lower() in ("none", "off", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number in (0, 1) or 'none', got {text!r}"
        ) from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1) or be 'none', got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from deel_ebm.runs import RunConfig

    defaults = RunConfig()
    parser = argparse.ArgumentParser(
        prog="deel-ebm",
        description="Energy-based models with a certified k-Lipschitz energy.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train the default recipe on 8gaussians (~2 min)")
    p.add_argument("--out", default=DEMO_DIR, help="run folder to write")
    p.add_argument("--dataset", default="8gaussians", help="built-in 2D density")
    p.add_argument("--max-minutes", type=float, default=2.0, help="time budget")

    p = sub.add_parser("train", help="train on a built-in dataset or a .npy array")
    p.add_argument(
        "--dataset",
        required=True,
        help="8gaussians, rings, checkerboard, 2spirals, pinwheel, moons, "
        "digits, or a path to an (n, d) / (n, h, w, c) .npy file",
    )
    p.add_argument("--out", required=True, help="run folder to write")
    _add_recipe(p, defaults)

    p = sub.add_parser("sample", help="draw samples from a trained run")
    p.add_argument("--model", required=True, help="run folder")
    p.add_argument("-n", type=int, default=1000, help="number of samples")
    p.add_argument("--out", required=True, help="samples.npy or samples.png")
    p.add_argument("--num-steps", type=int, default=None, help="chain length")
    p.add_argument("--mala", action="store_true", help="Metropolis-adjusted chains")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("score", help="energies (and in/out decisions) of an array")
    p.add_argument("--model", required=True, help="run folder")
    p.add_argument("--input", required=True, help="x.npy, shape (n, *sample_shape)")
    p.add_argument("--out", required=True, help="energies.npy to write")
    p.add_argument(
        "--epsilon",
        type=float,
        default=0.0,
        help="report decisions certified against perturbations of norm eps",
    )

    p = sub.add_parser("evaluate", help="metrics of a run beside sklearn baselines")
    p.add_argument("--model", required=True, help="run folder")
    p.add_argument("--json", default=None, help="also write the table here")
    return parser


def _config_from_args(args):
    from deel_ebm.runs import RunConfig

    return RunConfig(
        dataset=args.dataset,
        n_train=args.n_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        k_coef_lip=args.k_coef_lip,
        units=tuple(args.units),
        num_steps=args.num_steps,
        step_size=args.step_size,
        init_temperature=args.init_temperature,
        buffer_size=args.buffer_size,
        reinit_prob=args.reinit_prob,
        l2_weight=args.l2_weight,
        loss=args.loss,
        learning_rate=args.learning_rate,
        ema_momentum=args.ema_momentum,
        lipschitz=not args.unconstrained,
        seed=args.seed,
        max_minutes=args.max_minutes,
    )


def _summary(metrics):
    lines = [
        f"trained {metrics['steps_run']} steps in {metrics['train_seconds']:.0f} s"
    ]
    exact = metrics.get("exact")
    if exact:
        lines.append(
            f"exact KL(data||model) = {exact['kl']:.3f} nats, test NLL = "
            f"{exact['test_nll']:.3f} (data's own: {exact['data_test_nll']:.3f})"
        )
    return "\n".join(lines)


def cmd_demo(args):
    from deel_ebm import datasets
    from deel_ebm.runs import RunConfig, train_run

    if args.dataset not in datasets.DENSITIES:
        raise ValueError(f"demo needs a built-in 2D density {list(datasets.DENSITIES)}")
    config = RunConfig(dataset=args.dataset, epochs=1000, max_minutes=args.max_minutes)
    print(
        f"deel-ebm demo: {config.dataset}, k = {config.k_coef_lip}, "
        f"budget {args.max_minutes} min -> {args.out}"
    )
    metrics = train_run(config, args.out, verbose=0)
    print(_summary(metrics))
    print(f"wrote {sorted(p.name for p in Path(args.out).iterdir())}")


def cmd_train(args):
    from deel_ebm.runs import train_run

    config = _config_from_args(args).validate()
    metrics = train_run(config, args.out, verbose=0 if args.quiet else 1)
    print(_summary(metrics))


def cmd_sample(args):
    from deel_ebm import plotting
    from deel_ebm.runs import load_run
    from deel_ebm.samplers import MALASampler

    out = Path(args.out)
    if out.suffix not in (".npy", ".png"):
        raise ValueError(f"--out must end in .npy or .png, got {out.name}")
    if args.n < 1:
        raise ValueError(f"-n must be positive, got {args.n}")
    model, _, _ = load_run(args.model)
    sampler = None
    if args.mala:
        sampler = MALASampler(
            num_steps=args.num_steps or model.sampler.num_steps,
            step_size=float(model.sampler.step_size.numpy()),
        )
    x = model.sample(args.n, num_steps=args.num_steps, sampler=sampler, seed=args.seed)
    x = x.numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, x)
    elif x.ndim == 4:
        plotting.save_figure(plotting.plot_image_grid(x[:100]), out)
    elif x.shape[1] == 2:
        plotting.save_figure(plotting.plot_samples(x), out)
    else:
        raise ValueError("a .png needs 2D samples or images; use .npy")
    print(f"wrote {len(x)} samples to {out}")


def cmd_score(args):
    from deel_ebm import certificates
    from deel_ebm.runs import check_input, load_array, load_run

    model, _, metrics = load_run(args.model)
    x = check_input(model, load_array(args.input), "--input")
    e = model.energy(x, batch_size=65536).numpy()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, e)
    print(f"wrote {len(e)} energies to {out} (mean {e.mean():.3f})")
    t = metrics.get("threshold")
    if t is not None:
        radius = certificates.certified_radius(e, t, model.k_coef_lip)
        inside = radius > args.epsilon
        print(
            f"threshold t = {t:.4f} (rejects {metrics['threshold_fpr']:.0%} of "
            f"held-out data); in-distribution: {inside.mean():.1%}"
            + (f", certified at radius {args.epsilon}" if args.epsilon else "")
        )
        np.save(out.with_name(out.stem + "_radius.npy"), radius)


def cmd_evaluate(args):
    from deel_ebm.evaluation import evaluate_run, format_table

    table = evaluate_run(args.model)
    print(format_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "sample": cmd_sample,
    "score": cmd_score,
    "evaluate": cmd_evaluate,
}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import deel_ebm  # noqa: F401  (Keras-2 guard before TensorFlow loads)

    try:
        COMMANDS[args.command](args)
    except (ValueError, TypeError) as err:
        print(f"deel-ebm {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

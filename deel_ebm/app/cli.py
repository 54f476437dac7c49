"""The ``deel-ebm`` command: demo, train, sample, score, evaluate.

Every subcommand reads users' files safely (``.npy`` without pickle, Keras models
in safe mode) and exits with status 2 and a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser", "recipe_options"]

DEMO_DIR = "runs/demo"


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


def _optional_float(text: str):
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or 'none', got {text!r}"
        ) from None


#: argparse types of the RunConfig fields that are not plain int/float/str
_FIELD_TYPES = {"ema_momentum": _ema_momentum, "max_minutes": _optional_float}


def recipe_options(config_cls=None):
    """``[(field, flag, argparse kwargs)]``: the ``train`` options, one per
    :class:`~deel_ebm.app.runs.RunConfig` field (so the two cannot drift)."""
    from deel_ebm.app.runs import RunConfig

    config_cls = config_cls or RunConfig
    defaults = config_cls()
    options = []
    for field in dataclasses.fields(config_cls):
        meta = dict(field.metadata)
        if not meta.pop("cli", True):
            continue
        flag = meta.pop("flag", "--" + field.name.replace("_", "-"))
        help_text = meta.pop("help")
        auto = meta.pop("auto", None)
        default = getattr(defaults, field.name)
        kwargs = {"dest": field.name, "default": default, **meta}
        if kwargs.get("action") is None:
            if field.name in _FIELD_TYPES:
                kwargs["type"] = _FIELD_TYPES[field.name]
            elif isinstance(default, bool):
                raise TypeError(f"boolean field {field.name} needs an action")
            elif isinstance(default, tuple):
                kwargs["type"] = type(default[0])
            elif field.name == "domain":
                kwargs["type"] = float
            elif default is not None:
                kwargs["type"] = type(default)
        shown = "none" if default is None else default
        if default is None and auto:
            shown = f"auto: {auto}"
        if isinstance(shown, tuple):
            shown = " ".join(map(str, shown))
        if kwargs.get("action") in ("store_true", "store_false"):
            kwargs["help"] = f"{help_text} (off by default)"  # a flag: no value
        else:
            kwargs["help"] = f"{help_text} (default: {shown})"
        options.append((field.name, flag, kwargs))
    return options


def _add_recipe(p):
    g = p.add_argument_group("recipe (defaults marked auto are chosen from the data)")
    for _, flag, kwargs in recipe_options():
        g.add_argument(flag, **kwargs)
    g.add_argument("--quiet", action="store_true", help="one line per epoch")


def build_parser() -> argparse.ArgumentParser:
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
    _add_recipe(p)

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
    from deel_ebm.app.runs import RunConfig

    values = {name: getattr(args, name) for name, _, _ in recipe_options()}
    for key in ("units", "domain"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    return RunConfig(dataset=args.dataset, **values)


def _summary(metrics):
    resolved = metrics.get("resolved_config", {})
    lines = [
        f"trained {metrics['steps_run']} steps in {metrics['train_seconds']:.0f} s "
        f"(negatives: {resolved.get('negatives')}, k = {metrics['k_coef_lip']:.4g})"
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
    from deel_ebm.app.runs import RunConfig, train_run

    if args.dataset not in datasets.DENSITIES:
        raise ValueError(f"demo needs a built-in 2D density {list(datasets.DENSITIES)}")
    config = RunConfig(dataset=args.dataset, epochs=1000, max_minutes=args.max_minutes)
    print(
        f"deel-ebm demo: {config.dataset}, default recipe, "
        f"budget {args.max_minutes} min -> {args.out}"
    )
    metrics = train_run(config, args.out, verbose=0)
    print(_summary(metrics))
    print(f"wrote {sorted(p.name for p in Path(args.out).iterdir())}")


def cmd_train(args):
    from deel_ebm.app.runs import train_run

    config = _config_from_args(args).validate()
    metrics = train_run(config, args.out, verbose=0 if args.quiet else 1)
    print(_summary(metrics))


def cmd_sample(args):
    from deel_ebm import plotting
    from deel_ebm.app.runs import load_run
    from deel_ebm.core.samplers import MALASampler

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
        )  # the MH correction of the model's Langevin proposal
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
    from deel_ebm.app.runs import check_input, load_array, load_run

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
    from deel_ebm.app.evaluation import evaluate_run, format_table

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
    try:
        COMMANDS[args.command](args)
    except (ValueError, TypeError) as err:
        print(f"deel-ebm {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

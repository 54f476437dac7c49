"""The ``deel-ebm`` command: demo, train, sample, score, evaluate.

Every subcommand reads users' files safely (``.npy`` without pickle, Keras models
in safe mode) and exits with status 2 and a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
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


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one ``--help`` away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _radius(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(
            f"a radius is a finite number >= 0, got {text}"
        )
    return value


#: ``sample --class`` values besides a class number
CLASS_ALL = "all"
CLASS_MARGINAL = "marginal"


def _class_choice(text: str):
    """A class number >= 0, ``all`` or ``marginal``."""
    word = text.strip().lower()
    if word in (CLASS_ALL, CLASS_MARGINAL):
        return word
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a class number, {CLASS_ALL!r} or {CLASS_MARGINAL!r}, got "
            f"{text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a class number is >= 0, got {value}")
    return value


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--tf-log",
        action="store_true",
        help="show TensorFlow's native start-up and compilation log (hidden by "
        "default)",
    )
    parser = _Parser(
        prog="deel-ebm",
        description="Energy-based models with a certified k-Lipschitz energy.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "demo",
        help="train the default recipe on 8gaussians (~2 min)",
        parents=[common],
    )
    p.add_argument(
        "--out", default=DEMO_DIR, help=f"run folder to write (default: {DEMO_DIR})"
    )
    p.add_argument(
        "--dataset",
        default="8gaussians",
        help="built-in 2D density (default: 8gaussians)",
    )
    p.add_argument(
        "--max-minutes",
        type=_minutes,
        default=2.0,
        help="time budget in minutes (default: 2)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in --out (default: on for the demo folder)",
    )

    p = sub.add_parser(
        "train",
        help="train on a built-in dataset or a .npy array",
        parents=[common],
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="8gaussians, rings, checkerboard, 2spirals, pinwheel, moons, "
        "digits, or a path to an (n, d) / (n, h, w, c) .npy file (required, "
        "except with --resume; --model joint: digits, or a .npy with --labels)",
    )
    p.add_argument("--out", required=True, help="run folder to write (required)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run in --out (off by default: refused)",
    )
    mode.add_argument(
        "--resume",
        action="store_true",
        help="train the run in --out further, from its saved state (only "
        "--epochs, default: as many again, and --max-minutes may be given)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress lines, only the summary (off by default: a line at "
        "most every 10 s)",
    )
    p.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="also log energies, gap, certificate and sample images to this "
        "TensorBoard folder (default: none)",
    )
    _add_recipe(p)

    p = sub.add_parser(
        "sample", help="draw samples from a trained run", parents=[common]
    )
    p.add_argument(
        "--model", required=True, help="run folder or .keras file (required)"
    )
    p.add_argument(
        "-n", type=_positive_int, default=1000, help="number of samples (default: 1000)"
    )
    p.add_argument(
        "--out", required=True, help="samples.npy or samples.png to write (required)"
    )
    p.add_argument(
        "--num-steps",
        type=_positive_int,
        default=None,
        help="chain length (default: the model's sampler's)",
    )
    p.add_argument(
        "--mala",
        action="store_true",
        help="Metropolis-adjusted chains with the model's step size; prints the "
        "acceptance rate (off by default)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the chains (default: 0)"
    )
    p.add_argument(
        "--class",
        dest="class_",
        type=_class_choice,
        default=None,
        metavar="C|all|marginal",
        help="joint model: C draws n samples of class C (chains on E(x, y) = "
        "-k f_y(x), from starts resampled toward p(x|y): JointEnergyModel.sample); "
        "all splits the n samples evenly across the classes (a .png "
        "has one row per class, a .npy gets their labels in <name>_labels.npy); "
        "marginal draws from p(x), as for an energy model (default: all for a "
        "joint model, marginal otherwise)",
    )

    p = sub.add_parser(
        "score", help="energies (and in/out decisions) of an array", parents=[common]
    )
    p.add_argument(
        "--model", required=True, help="run folder or .keras file (required)"
    )
    p.add_argument(
        "--input", required=True, help="x.npy, shape (n, *sample_shape) (required)"
    )
    p.add_argument(
        "--out",
        required=True,
        help="energies.npy to write; the certified radii go beside it in "
        "<name>_radius.npy (required)",
    )
    p.add_argument(
        "--epsilon",
        type=_radius,
        default=0.0,
        help="count decisions certified against every perturbation of l2 norm "
        "up to epsilon (>= 0; default: 0)",
    )

    p = sub.add_parser(
        "evaluate",
        help="metrics of a run beside sklearn baselines",
        parents=[common],
    )
    p.add_argument("--model", required=True, help="run folder (required)")
    p.add_argument(
        "--json",
        default=None,
        help="write the table as JSON here (default: evaluation.json in the run)",
    )
    p.add_argument(
        "--markdown",
        default=None,
        help="write the table as Markdown here (default: evaluation.md in the run)",
    )
    return parser


#: ``train`` options that ``--resume`` accepts (the rest is the run's recipe)
RESUME_OPTIONS = ("epochs", "max_minutes")


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
    cls = metrics.get("classification")
    if cls:
        line = (
            f"test accuracy {cls['test_accuracy']:.3f}, ECE {cls['test_ece']:.3f} "
            f"({cls['ece_bins']} bins)"
        )
        robust = cls.get("certified_accuracy")
        if robust:
            values = " / ".join(f"{v:.3f}" for v in robust.values())
            line += f", certified accuracy {values} at l2 radius {' / '.join(robust)}"
        else:
            line += " (not a Lipschitz network: no certified accuracy)"
        lines.append(line)
    exact = metrics.get("exact")
    if exact:
        lines.append(
            f"exact KL(data||model) = {exact['kl']:.3f} nats, test NLL = "
            f"{exact['test_nll']:.3f} (data's own: {exact['data_test_nll']:.3f})"
        )
    return "\n".join(lines)


def _check_writable(path: Path, suffixes) -> Path:
    """``path`` if a file can be written there (checked before any work)."""
    if path.suffix not in suffixes:
        raise ValueError(f"--out must end in {' or '.join(suffixes)}, got {path.name}")
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write {path}: {parent} is not a writable folder")
    return path


def cmd_demo(args):
    from deel_ebm import datasets
    from deel_ebm.app.runs import RunConfig, train_run

    if args.dataset not in datasets.DENSITIES:
        raise ValueError(f"demo needs a built-in 2D density {list(datasets.DENSITIES)}")
    # the default recipe with its train step compiled by XLA (--xla of train):
    # 2.7x the steps of the graph-compiled step in the same budget (2026-12-07)
    config = RunConfig(
        dataset=args.dataset,
        epochs=1000,
        max_minutes=args.max_minutes,
        jit_compile=True,
    )
    print(
        f"deel-ebm demo: {config.dataset}, default recipe (XLA train step), "
        f"budget {args.max_minutes:g} min -> {args.out}"
    )
    # the demo folder is the demo's own: running it again replaces it
    overwrite = args.overwrite or Path(args.out) == Path(DEMO_DIR)
    metrics = train_run(config, args.out, overwrite=overwrite)
    print(_summary(metrics))
    print(f"wrote {sorted(p.name for p in Path(args.out).iterdir())}")


def cmd_train(args):
    from deel_ebm.app.runs import RunConfig, resume_run, train_run

    every = None if args.quiet else 10.0
    if args.resume:
        defaults = RunConfig()
        changed = [
            flag
            for name, flag, _ in recipe_options()
            if name not in RESUME_OPTIONS
            and getattr(args, name) != getattr(defaults, name)
        ]
        if args.dataset is not None:
            changed.insert(0, "--dataset")
        if changed:
            raise ValueError(
                f"--resume trains the run's own recipe on its own data; drop "
                f"{' '.join(changed)} (only --epochs and --max-minutes apply)"
            )
        metrics = resume_run(
            args.out,
            epochs=args.epochs,
            max_minutes=args.max_minutes,
            progress_every=every,
        )
    else:
        if args.dataset is None:
            raise ValueError("--dataset is required (unless --resume)")
        config = _config_from_args(args).validate()
        metrics = train_run(
            config,
            args.out,
            overwrite=args.overwrite,
            progress_every=every,
            tensorboard=args.tensorboard,
        )
    print(_summary(metrics))
    print(f"run folder: {args.out}")


def _sample_labels(args, model):
    """The ``y`` of ``sample`` (None: the marginal) and a description."""
    from deel_ebm.app.runs import class_sample_labels
    from deel_ebm.core.joint import JointEnergyModel

    joint = isinstance(model, JointEnergyModel)
    choice = args.class_
    if choice is None:
        choice = CLASS_ALL if joint else CLASS_MARGINAL
    if choice == CLASS_MARGINAL:
        return None, ""
    if not joint:
        raise ValueError(
            f"--class draws class-conditional samples of a joint model (train "
            f"--model joint); {args.model} holds an energy model"
        )
    c = model.num_classes
    if choice == CLASS_ALL:
        return class_sample_labels(args.n, c), f"classes 0-{c - 1}"
    if choice >= c:
        raise ValueError(
            f"--class must lie in 0..{c - 1} (the model's {c} classes), got {choice}"
        )
    return np.full(args.n, choice, np.int32), f"class {choice}"


def _sample_figure(x, y, what, run_name):
    from deel_ebm import plotting
    from deel_ebm.app.figures import class_samples_figure

    shown = min(len(x), 100)
    if y is not None and np.unique(y).size > 1:
        per_class = 10 if x.ndim == 4 else len(x)
        title = f"{run_name}: {len(x)} samples of {what}, one row per class"
        if x.ndim == 4 and len(x) > per_class * np.unique(y).size:
            title += f" (the first {per_class} of each)"
        return class_samples_figure(
            x, y, plotting.DEFAULT_VALUE_RANGE if x.ndim == 4 else None, per_class,
            title=title,
        )  # fmt: skip
    what = f"of {what} " if what else ""
    if x.ndim == 4:
        title = f"{run_name}: samples {what}({shown} of {len(x)} shown)"
        return plotting.plot_image_grid(x[:shown], title=title)
    return plotting.plot_samples(
        x, title=f"{run_name}: {len(x)} samples {what}".strip()
    )


def cmd_sample(args):
    from deel_ebm.app.runs import load_run
    from deel_ebm.core.samplers import MALASampler

    out = _check_writable(Path(args.out), (".npy", ".png"))
    model, _, _ = load_run(args.model)
    if out.suffix == ".png" and not (
        len(model.sample_shape) == 3 or model.sample_shape == (2,)
    ):
        raise ValueError("a .png needs 2D samples or images; use .npy")
    y, what = _sample_labels(args, model)
    sampler = None
    if args.mala:
        chains = model.sampler
        while not hasattr(chains, "step_size"):  # e.g. replica exchange: its moves
            chains = chains.inner_kernel
        sampler = MALASampler(
            num_steps=args.num_steps or model.sampler.num_steps,
            step_size=float(chains.step_size.numpy()),
        )  # the MH correction of the model's Langevin proposal
    x, results = model.sample(
        args.n,
        num_steps=args.num_steps,
        sampler=sampler,
        seed=args.seed,
        return_results=True,
        **({} if y is None else {"y": y}),
    )
    x = x.numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    line = f"wrote {len(x)} samples" + (f" of {what}" if what else "") + f" to {out}"
    if out.suffix == ".npy":
        np.save(out, x)
        if y is not None and np.unique(y).size > 1:
            labels_out = out.with_name(out.stem + "_labels.npy")
            np.save(labels_out, y.astype(np.int64))
            line += f" and their classes to {labels_out}"
    else:
        from deel_ebm import plotting

        run_name = Path(args.model).name
        plotting.save_figure(_sample_figure(x, y, what, run_name), out)
    if args.mala:
        line += f" (MALA acceptance rate {float(results.acceptance_rate):.1%})"
    print(line)


def cmd_score(args):
    from deel_ebm import certificates
    from deel_ebm.app.runs import check_input, load_array, load_run

    out = _check_writable(Path(args.out), (".npy",))
    model, _, metrics = load_run(args.model)
    x = check_input(model, load_array(args.input), "--input")
    e = model.energy(x, batch_size=65536).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, e)
    print(f"wrote {len(e)} energies to {out} (mean {e.mean():.3f})")
    t = metrics.get("threshold")
    if t is None:
        print("no calibrated threshold (not a run folder): energies only")
        return
    radius = certificates.certified_radius(e, t, model.k_coef_lip)
    inside = radius > args.epsilon
    print(
        f"threshold t = {t:.4f} (rejects {metrics['threshold_fpr']:.0%} of "
        f"held-out data); in-distribution: {inside.mean():.1%}"
        + (f", certified at radius {args.epsilon:g}" if args.epsilon else "")
    )
    radius_out = out.with_name(out.stem + "_radius.npy")
    np.save(radius_out, radius)
    print(f"wrote the certified radii to {radius_out}")


def cmd_evaluate(args):
    from deel_ebm.app.evaluation import evaluate_run, format_table, write_evaluation

    run = Path(args.model)
    if not run.is_dir():
        raise ValueError(f"evaluate needs a run folder, got {run}")
    json_path = Path(args.json) if args.json else run / "evaluation.json"
    md_path = Path(args.markdown) if args.markdown else run / "evaluation.md"
    _check_writable(json_path, (".json",))
    _check_writable(md_path, (".md",))
    table = evaluate_run(run)
    print(format_table(table))
    write_evaluation(table, json_path, md_path, title=f"Evaluation of {run.name}")
    print(f"wrote {json_path} and {md_path}")


COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "sample": cmd_sample,
    "score": cmd_score,
    "evaluate": cmd_evaluate,
}


def main(argv=None) -> int:
    """Run the command; 0 on success, 2 on bad input, 130 when interrupted."""
    from deel_ebm.app._native_log import filtered_stderr

    args = build_parser().parse_args(argv)
    args.tf_log = args.tf_log or "--tf-log" in (sys.argv if argv is None else argv)
    if not args.tf_log:
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
    prefix = f"deel-ebm {args.command}: error:"
    with filtered_stderr(enabled=not args.tf_log):
        try:
            COMMANDS[args.command](args)
        except (ValueError, TypeError) as err:
            print(f"{prefix} {err}", file=sys.stderr)
            return 2
        except OSError as err:
            what = f"cannot write or read {err.filename}: " if err.filename else ""
            print(f"{prefix} {what}{err.strerror or err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(
                f"deel-ebm {args.command}: interrupted; nothing was written "
                "(an earlier run folder is left as it was)",
                file=sys.stderr,
            )
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

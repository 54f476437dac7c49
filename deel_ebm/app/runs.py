"""Training runs: a documented default recipe, run folders, loading and scoring.

A *run folder* holds everything a run produced, readable without deel-ebm's
Python objects: ``config.json`` (the recipe), ``metrics.json`` (final logs, exact
metrics, the calibrated threshold), ``history.csv``, ``model.keras`` (the saved
EnergyModel, buffer included) and figures. The CLI and the benchmarks train
through :func:`train_run`, so every number they report comes from one recipe.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from deel_ebm import certificates, datasets, export, keras, nets, plotting
from deel_ebm import metrics as metrics_lib
from deel_ebm.core import EnergyModel, buffers, losses, samplers

__all__ = [
    "RunConfig",
    "load_data",
    "build_model",
    "default_network",
    "default_sampler",
    "default_buffer",
    "default_loss",
    "default_optimizer",
    "train_run",
    "load_run",
    "load_array",
    "TimeBudget",
    "energy_fn",
    "check_input",
    "to_jsonable",
    "MODEL_FILE",
]

MODEL_FILE = "model.keras"
DEFAULT_FPR = 0.05  # share of held-out data rejected by the calibrated threshold
#: The recipe's own choices (the rest are the constructors' defaults).
RECIPE_K_COEF_LIP = 20.0
RECIPE_N_TRAIN = 20_000
RECIPE_N_TEST = 5_000
RECIPE_BATCH_SIZE = 256
RECIPE_LEARNING_RATE = 1e-3
RECIPE_BETA_1 = 0.0
RECIPE_EMA_MOMENTUM = 0.995


def _opt(default, help, **cli):
    """A RunConfig field with its command-line option (``cli``: argparse extras,
    ``flag`` for a flag name other than ``--field-name``, ``cli=False`` to leave
    it out of the command line)."""
    if isinstance(default, tuple):
        return dataclasses.field(
            default_factory=lambda: default, metadata={"help": help, **cli}
        )
    return dataclasses.field(default=default, metadata={"help": help, **cli})


@dataclasses.dataclass
class RunConfig:
    """A training recipe. Defaults are the documented 2D recipe of the demo.

    Attributes mirror the constructor arguments of :class:`EnergyModel`, the
    sampler, the buffer and the optimizer, and take their defaults from those
    constructors' constants; ``dataset`` is a built-in name
    (:data:`deel_ebm.datasets.DENSITIES` or ``"digits"``) or a ``.npy`` path.
    ``max_minutes`` stops training when the time budget is spent.
    ``ema_momentum`` (None: off) makes the optimizer keep an exponential moving
    average of the weights, swapped into the model when ``fit`` ends: persistent
    contrastive divergence estimates its gradient from a few hundred chains, so
    the weights (and the masses of separated modes) fluctuate from step to step,
    and the average is a much better density (see ``docs/benchmarks.md``). Every
    field is an option of ``deel-ebm train`` (its help text is the field's
    ``metadata["help"]``).
    """

    dataset: str = _opt(
        "8gaussians",
        "8gaussians, rings, checkerboard, 2spirals, pinwheel, moons, digits, or a "
        "path to an (n, d) / (n, h, w, c) .npy file",
        cli=False,
    )
    n_train: int = _opt(RECIPE_N_TRAIN, "training points drawn from a 2D density")
    n_test: int = _opt(RECIPE_N_TEST, "test points drawn from a 2D density")
    lipschitz: bool = _opt(
        True,
        "ablation: the same net without the Lipschitz constraint",
        flag="--unconstrained",
        action="store_false",
    )
    units: tuple = _opt(
        nets.DEFAULT_UNITS, "hidden widths of the dense energy net (even)", nargs="+"
    )
    k_coef_lip: float = _opt(
        RECIPE_K_COEF_LIP, "Lipschitz constant k of the energy E = k f", flag="--k"
    )
    num_steps: int = _opt(samplers.DEFAULT_NUM_STEPS, "Langevin steps per train step")
    step_size: float = _opt(samplers.DEFAULT_STEP_SIZE, "Langevin step size eta")
    init_temperature: float = _opt(
        1.0, "start temperature of annealed chains (1: no annealing)"
    )
    anneal_fraction: float = _opt(
        1.0, "share of the chain steps over which the temperature decreases"
    )
    buffer_size: int = _opt(buffers.DEFAULT_CAPACITY, "replay buffer capacity")
    reinit_prob: float = _opt(
        buffers.DEFAULT_REINIT_PROB, "share of chains restarted from the prior"
    )
    domain: tuple | None = _opt(
        None, "box (low high) of the data (default: from the dataset)", nargs=2
    )
    loss: str = _opt("cd", "training loss", choices=("cd", "hkr"))
    l2_weight: float = _opt(
        losses.DEFAULT_L2_WEIGHT, "weight of the L2 energy regulariser (cd loss)"
    )
    batch_size: int = _opt(RECIPE_BATCH_SIZE, "data points (and chains) per step")
    epochs: int = _opt(10, "passes over the data")
    learning_rate: float = _opt(RECIPE_LEARNING_RATE, "Adam learning rate", flag="--lr")
    beta_1: float = _opt(RECIPE_BETA_1, "Adam beta_1")
    ema_momentum: float | None = _opt(
        RECIPE_EMA_MOMENTUM,
        "momentum of the moving average of the weights kept by the optimizer and "
        "swapped in when training ends ('none': off)",
    )
    seed: int = _opt(0, "seed of every random draw")
    max_minutes: float | None = _opt(None, "stop training after this wall time")

    def validate(self):
        for name in ("n_train", "n_test", "num_steps", "buffer_size", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        for name in ("k_coef_lip", "step_size", "learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.ema_momentum is not None and not (
            isinstance(self.ema_momentum, (int, float)) and 0 < self.ema_momentum < 1
        ):
            raise ValueError(
                f"ema_momentum must lie in (0, 1) or be None, got {self.ema_momentum!r}"
            )
        if self.loss not in ("cd", "hkr"):
            raise ValueError(f"loss must be 'cd' or 'hkr', got {self.loss!r}")
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {unknown}")
        data = dict(data)
        for key in ("units", "domain"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


# ------------------------------------------------------------------ data
def load_array(path) -> np.ndarray:
    """A user's array from ``.npy`` (never unpickled), as float32.

    Raises:
        ValueError: missing, malformed or pickled file, non-numeric dtype, rank
            below 2, or non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    if path.suffix != ".npy":
        raise ValueError(f"expected a .npy file, got {path.name}")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as err:  # pickled object arrays, bad header
        raise ValueError(f"{path} is not a plain numeric .npy array: {err}") from err
    except (OSError, EOFError) as err:
        raise ValueError(f"{path} is truncated or not a .npy file: {err}") from err
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{path} holds dtype {x.dtype}; expected numbers")
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"{path} has shape {x.shape}; expected (n, features...)")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path} contains NaN or Inf values")
    return x


def load_data(config: RunConfig):
    """``(x_train, x_test, domain)`` for a config's dataset."""
    name = config.dataset
    if name in datasets.DENSITIES:
        x_train, x_test = datasets.load_2d(
            name, config.n_train, config.n_test, config.seed
        )
        return x_train, x_test, datasets.get_density(name).domain
    if name == "digits":
        data = datasets.load_digits(seed=config.seed)
        return data.x_train, data.x_test, datasets.DIGITS_DOMAIN
    if name.endswith(".npy"):
        x = load_array(name)
        rng = np.random.default_rng(config.seed)
        x = x[rng.permutation(len(x))]
        n_test = max(1, len(x) // 10)
        lo, hi = float(x.min()), float(x.max())
        margin = 0.1 * (hi - lo) or 1.0
        return x[n_test:], x[:n_test], (lo - margin, hi + margin)
    raise ValueError(
        f"unknown dataset {name!r}: use one of {list(datasets.DENSITIES)}, "
        "'digits', or a path to a .npy file"
    )


# ------------------------------------------------------------------ model
def default_network(config: RunConfig, sample_shape):
    """The recipe's energy network: conv for images, dense otherwise."""
    if len(sample_shape) == 3:
        builder = (
            nets.lipschitz_convnet if config.lipschitz else nets.unconstrained_convnet
        )
        return builder(sample_shape, seed=config.seed)
    builder = nets.lipschitz_mlp if config.lipschitz else nets.unconstrained_mlp
    return builder(sample_shape, units=tuple(config.units), seed=config.seed)


def default_sampler(config: RunConfig):
    """The recipe's training sampler: unadjusted Langevin."""
    return samplers.LangevinSampler(
        num_steps=config.num_steps,
        step_size=config.step_size,
        init_temperature=config.init_temperature,
        anneal_fraction=config.anneal_fraction,
    )


def default_buffer(config: RunConfig, domain):
    """The recipe's replay buffer, uniform prior on the data's box."""
    return buffers.ReplayBuffer(
        capacity=config.buffer_size,
        reinit_prob=config.reinit_prob,
        domain=domain,
        seed=config.seed,
    )


def default_loss(config: RunConfig):
    """The recipe's loss object."""
    if config.loss == "cd":
        return losses.ContrastiveDivergenceLoss(config.l2_weight)
    return losses.HingeKRLoss()


def default_optimizer(config: RunConfig):
    """Adam, with the moving average of the weights when ``ema_momentum`` is set."""
    ema = config.ema_momentum
    averaging = {} if ema is None else {"use_ema": True, "ema_momentum": ema}
    return keras.optimizers.Adam(
        config.learning_rate, beta_1=config.beta_1, **averaging
    )


def build_model(
    config: RunConfig,
    sample_shape,
    domain,
    network_fn=default_network,
    sampler_fn=default_sampler,
    buffer_fn=default_buffer,
    loss_fn=default_loss,
    optimizer_fn=default_optimizer,
) -> EnergyModel:
    """The compiled EnergyModel a config describes.

    Each part comes from a factory of the config (and of the sample shape for
    the network, of the data's box for the buffer), so an experiment swaps one
    part without touching the others, e.g.
    ``build_model(config, (2,), box, sampler_fn=lambda c: MALASampler(...))``.
    """
    sample_shape = tuple(sample_shape)
    with warnings.catch_warnings():
        if not config.lipschitz:
            warnings.simplefilter("ignore")  # the ablation is deliberate
        model = EnergyModel(
            network_fn(config, sample_shape),
            k_coef_lip=config.k_coef_lip,
            sampler=sampler_fn(config),
            buffer=buffer_fn(config, domain),
            loss=loss_fn(config),
            seed=config.seed,
        )
    model.compile(optimizer=optimizer_fn(config))
    return model


class TimeBudget(keras.callbacks.Callback):
    """Stops training once ``minutes`` of wall time are spent (checked per batch)."""

    def __init__(self, minutes: float):
        super().__init__()
        if not minutes > 0:
            raise ValueError(f"minutes must be positive, got {minutes}")
        self.seconds = 60.0 * minutes
        self.start = None
        self.stopped = False

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True
            self.stopped = True


class _Progress(keras.callbacks.Callback):
    """One line per epoch: the progress of long runs when verbose=0."""

    def __init__(self, epochs, log):
        super().__init__()
        self.epochs, self.log, self.t0 = epochs, log, time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        keys = ("loss", "energy_gap", "e_pos", "e_neg", "grad_norm")
        shown = " ".join(f"{k}={logs[k]:.3g}" for k in keys if k in logs)
        elapsed = time.perf_counter() - self.t0
        self.log(f"epoch {epoch + 1}/{self.epochs} [{elapsed:.0f}s] {shown}")


# ------------------------------------------------------------------ runs
def _write_history(path, history):
    keys = list(history)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *keys])
        for i in range(len(history[keys[0]]) if keys else 0):
            writer.writerow([i + 1, *(history[k][i] for k in keys)])


def to_jsonable(value):
    """``value`` with NumPy numbers and arrays as Python ones (NaN, Inf: None)."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in np.asarray(value).tolist()]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def energy_fn(model):
    """numpy → numpy energy function of a model (for metrics and plots)."""
    return lambda x: model.energy(np.asarray(x, np.float32), batch_size=65536).numpy()


def train_run(
    config: RunConfig, out_dir, verbose: int = 1, log=print, **factories
) -> dict:
    """Train ``config`` and write a run folder; returns the metrics dict.

    ``factories`` (``network_fn``, ``sampler_fn``, ...) go to :func:`build_model`.
    """
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    x_train, x_test, domain = load_data(config)
    if config.domain is not None:
        domain = tuple(config.domain)
    if config.batch_size > config.buffer_size:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds buffer_size {config.buffer_size}"
        )
    (out / "config.json").write_text(json.dumps(config.to_json(), indent=2))
    model = build_model(config, x_train.shape[1:], domain, **factories)
    callbacks = [] if verbose else [_Progress(config.epochs, log)]
    budget = None
    if config.max_minutes:
        budget = TimeBudget(config.max_minutes)
        callbacks.append(budget)
    t0 = time.perf_counter()
    hist = model.fit(
        x_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=2 if verbose else 0,
    )
    train_seconds = time.perf_counter() - t0
    model.save(out / MODEL_FILE)
    _write_history(out / "history.csv", hist.history)
    e_test = model.energy(x_test, batch_size=65536).numpy()
    threshold = certificates.calibrate_threshold(e_test, DEFAULT_FPR)
    metrics = {
        "train_seconds": train_seconds,
        "epochs_run": len(hist.history.get("loss", [])),
        "steps_run": int(model.optimizer.iterations),
        "stopped_by_time_budget": bool(budget and budget.stopped),
        "stop_reason": model.stop_reason,
        "k_coef_lip": config.k_coef_lip,
        "is_lipschitz": model.is_lipschitz,
        "final_logs": {k: v[-1] for k, v in hist.history.items()},
        "threshold": threshold,
        "threshold_fpr": DEFAULT_FPR,
        "test_energy_mean": float(np.mean(e_test)),
    }
    samples = model.sample(2000).numpy()
    np.save(out / "samples.npy", samples)
    if config.dataset in datasets.DENSITIES:
        exact = metrics_lib.exact_metrics_2d(
            energy_fn(model), config.dataset, x_test=x_test
        )
        metrics["exact"] = exact
        fig = plotting.plot_landscape(
            energy_fn(model), domain=domain, samples=samples[:1000], title="model"
        )
        plotting.save_figure(fig, out / "landscape.png")
        fig = plotting.plot_samples(samples, domain=domain, title="samples")
        plotting.save_figure(fig, out / "samples.png")
    elif len(x_train.shape) == 4:
        fig = plotting.plot_image_grid(samples[:64], value_range=domain)
        plotting.save_figure(fig, out / "samples.png")
    elif x_train.shape[1] == 2:
        fig = plotting.plot_landscape(
            energy_fn(model), domain=domain, samples=samples[:1000]
        )
        plotting.save_figure(fig, out / "landscape.png")
    fig = plotting.plot_training_curves(hist.history)
    plotting.save_figure(fig, out / "curves.png")
    metrics = to_jsonable(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def load_run(run_dir):
    """``(model, config, metrics)`` of a run folder, with clear errors."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ValueError(f"no such run folder: {run}")
    missing = [n for n in (MODEL_FILE, "config.json") if not (run / n).is_file()]
    if missing:
        raise ValueError(f"{run} is not a deel-ebm run folder (missing {missing})")
    try:
        config = RunConfig.from_json(json.loads((run / "config.json").read_text()))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{run / 'config.json'} is malformed: {err}") from err
    metrics = {}
    if (run / "metrics.json").is_file():
        metrics = json.loads((run / "metrics.json").read_text())
    try:  # checked archive, all-or-nothing, an EnergyModel or an error
        model = export.load_model(run / MODEL_FILE)
    except export.ModelLoadError as err:
        raise ValueError(f"cannot load {run / MODEL_FILE}: {err}") from err
    return model, config, metrics


def check_input(model, x, name="input"):
    """``x`` checked against the model's sample shape (a clear ValueError)."""
    if tuple(x.shape[1:]) != model.sample_shape:
        raise ValueError(
            f"{name} must have samples of shape {model.sample_shape}, got "
            f"{tuple(x.shape[1:])}"
        )
    return x

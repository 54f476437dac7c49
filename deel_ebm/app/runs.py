"""Training runs: a documented default recipe, run folders, loading and scoring.

A *run folder* holds everything a run produced, readable without deel-ebm's
Python objects: ``config.json`` (the recipe), ``metrics.json`` (final logs, exact
metrics, the calibrated threshold; for a joint model, test accuracy, calibration
and certified robust accuracy), ``history.csv``, ``model.keras`` (the saved
EnergyModel or JointEnergyModel, buffer included) and figures. The CLI and the
benchmarks train through :func:`train_run`, so every number they report comes
from one recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from deel_ebm import certificates, datasets, export, keras, nets
from deel_ebm import metrics as metrics_lib
from deel_ebm.app import figures, folders
from deel_ebm.app.progress import Progress, TimeBudget, interrupt_stops_training
from deel_ebm.core import (
    EnergyModel,
    buffers,
    classifier_losses,
    losses,
    proposals,
    samplers,
)
from deel_ebm.core import joint as joint_lib
from deel_ebm.core import model as model_lib
from deel_ebm.core import walkers as walkers_lib
from deel_ebm.core.inputs import SCALE_WARNING, scale_warning

__all__ = [
    "RunConfig",
    "load_data",
    "load_labeled_data",
    "load_labels",
    "LabeledData",
    "classification_metrics",
    "class_sample_labels",
    "build_model",
    "default_network",
    "default_sampler",
    "default_buffer",
    "default_loss",
    "default_optimizer",
    "train_run",
    "resume_run",
    "load_run",
    "scale_warning",
    "load_array",
    "TimeBudget",
    "energy_fn",
    "check_input",
    "to_jsonable",
    "MODEL_FILE",
]

MODEL_FILE = "model.keras"
DEFAULT_FPR = 0.05  # share of held-out data rejected by the calibrated threshold
#: The recipe's own choices (the rest are the constructors' defaults, and the
#: fields left at ``None`` are chosen from the data by :meth:`RunConfig.resolved`).
RECIPE_N_TRAIN = 20_000
RECIPE_N_TEST = 5_000
#: the fewest training / test points a run accepts
MIN_TRAIN_POINTS = 100
MIN_TEST_POINTS = 10
#: validation points evaluated during training (the first of the test split),
#: at most about ``VALIDATIONS`` times in a run
VALIDATION_POINTS = 2048
VALIDATIONS = 20
RECIPE_LEARNING_RATE = 1e-3
RECIPE_EMA_MOMENTUM = 0.995
#: Adam's beta_1 with proposal negatives / with chains (chains: no momentum, as
#: in IGEBM: the chains' negatives change with every update)
RECIPE_BETA_1_PROPOSAL = 0.9
RECIPE_BETA_1_CHAINS = 0.0
#: optimizer steps of a default run (``epochs=None``)
RECIPE_STEPS_PROPOSAL = 2000
RECIPE_STEPS_CHAINS = 600
NEGATIVES = ("auto", "proposal", "chains", "walkers")
SAMPLERS = ("langevin", "mala", "tempering")
NETS = ("dense", "conv")
MODELS = ("energy", "joint")
#: the classes of sklearn's digits
DIGITS_CLASSES = 10
#: class-conditional samples per class in a joint run's class_samples.png
#: (images; 2D data: CLASS_POINTS per class)
CLASS_SAMPLES = 10
CLASS_POINTS = 200


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
    """A training recipe; by default, the model's own defaults for the data.

    Attributes mirror the constructor arguments of :class:`EnergyModel`, the
    sampler, the buffer and the optimizer, and take their defaults from those
    constructors' constants; ``dataset`` is a built-in name
    (:data:`deel_ebm.datasets.DENSITIES` or ``"digits"``) or a ``.npy`` path.
    ``model`` is ``"energy"`` (an :class:`EnergyModel` of ``x``) or ``"joint"``
    (a :class:`~deel_ebm.core.joint.JointEnergyModel` of ``(x, y)``, on digits
    or on a ``.npy`` with a ``labels`` ``.npy`` beside it).
    ``max_minutes`` stops training when the time budget is spent.
    ``ema_momentum`` (None: off) is the model's ``weight_average``: a moving
    average of the weights, swapped into the model when ``fit`` ends (the
    likelihood's gradient is estimated from a few thousand draws, so the weights
    fluctuate from step to step, and the average is the better density). Fields
    left at ``None`` are chosen from the data (:meth:`resolved`). Every
    field is an option of ``deel-ebm train`` (its help text is the field's
    ``metadata["help"]``).
    """

    dataset: str = _opt(
        "8gaussians",
        "8gaussians, rings, checkerboard, 2spirals, pinwheel, moons, digits, or a "
        "path to an (n, d) / (n, h, w, c) .npy file",
        cli=False,
    )
    model: str = _opt(
        "energy",
        "what to train: energy (an EnergyModel of x) or joint (a JointEnergyModel: "
        "a Lipschitz classifier whose logits k f_y(x) are also the energy "
        "-k f_y(x) of (x, y); needs labels: digits, or --labels)",
        choices=MODELS,
    )
    labels: str | None = _opt(
        None,
        "--model joint on a .npy dataset: a .npy of (n,) integer class labels "
        "0..C-1, entry i the class of row i of --dataset",
        metavar="Y.npy",
    )
    num_classes: int | None = _opt(
        None,
        "--model joint: number of classes C; every label must lie in 0..C-1",
        type=int,
        auto="10 for digits, the largest label + 1 for --labels",
    )
    generative_weight: float | None = _opt(
        None,
        "--model joint: weight of the generative term (the --loss of the marginal "
        "energy -logsumexp_y k f_y(x)) beside the classification term "
        "(--classifier-loss); 0: a plain classifier (the chains still run)",
        type=float,
        auto=f"{joint_lib.DEFAULT_GENERATIVE_WEIGHT:g}, the library's "
        "(deel_ebm.core.joint.DEFAULT_GENERATIVE_WEIGHT)",
    )
    classifier_loss: str | None = _opt(
        None,
        "--model joint: the classification term: ce (cross-entropy of p(y|x) = "
        "softmax(k f)) or hkr (deel-lip's multiclass hinge-KR on f: it widens "
        "margins, hence certified radii)",
        choices=joint_lib.CLASSIFIER_LOSSES,
        auto=f"{joint_lib.DEFAULT_CLASSIFIER_LOSS}, the library's "
        "(deel_ebm.core.joint.DEFAULT_CLASSIFIER_LOSS)",
    )
    n_train: int | None = _opt(
        None,
        "training points (drawn from a 2D density; the first of the shuffled "
        "training split otherwise)",
        type=int,
        auto=f"{RECIPE_N_TRAIN} from a 2D density, else the whole training split",
    )
    n_test: int | None = _opt(
        None,
        "test points (drawn from a 2D density; the first of the shuffled test "
        "split otherwise)",
        type=int,
        auto=f"{RECIPE_N_TEST} from a 2D density, else the whole test split",
    )
    lipschitz: bool = _opt(
        True,
        "ablation: the same net without the Lipschitz constraint",
        flag="--unconstrained",
        action="store_false",
    )
    net: str | None = _opt(
        None,
        "network: dense (MLP, images flattened) or conv (images)",
        choices=NETS,
        auto="dense for --model energy; for --model joint, conv on (h, w, c) "
        "images, else dense (nets.lipschitz_classifier)",
    )
    units: tuple | None = _opt(
        None,
        "hidden widths of the dense net (even)",
        nargs="+",
        type=int,
        auto="64 128 128 up to 8 dimensions, else 256 256 256",
    )
    activation: str | None = _opt(
        None,
        "sorting activation of the dense Lipschitz energy net: one of "
        f"{', '.join(nets.LIPSCHITZ_ACTIVATIONS)} for every layer, or one per layer "
        "separated by commas (a joint model's classifier uses groupsort2)",
        auto="fullsort,groupsort8,groupsort8 up to 8 dimensions, else groupsort2",
    )
    negatives: str = _opt(
        "auto",
        "where training negatives come from: proposal (importance-sampled maximum "
        "likelihood with a mixture fitted to the data), chains (persistent "
        "Langevin chains from a replay buffer), walkers (Jarzynski-weighted "
        "persistent walkers), auto (proposal up to 8 dimensions, else chains)",
        choices=NEGATIVES,
    )
    num_negatives: int | None = _opt(
        None,
        "proposal draws per step (proposal), or walkers (walkers)",
        type=int,
        auto=f"{proposals.DEFAULT_NUM_NEGATIVES} proposal draws, "
        f"{walkers_lib.DEFAULT_NUM_WALKERS} walkers",
    )
    k_coef_lip: float | None = _opt(
        None,
        "Lipschitz constant k of the energy E = k f",
        flag="--k",
        type=float,
        auto="up to 8 dimensions, learned from 20 (see --learn-k); with "
        "--learn-k or --no-learn-k given, 40; above 8 dimensions max(40, dimension)",
    )
    learn_k: bool | None = _opt(
        None,
        "learn k = k_max * sigmoid(s), starting at --k (certified at every step)",
        action=argparse.BooleanOptionalAction,
        auto="learned (start 20, cap 80) when --k is not given, up to 8 "
        "dimensions; else fixed",
    )
    k_max: float | None = _opt(
        None, "cap of a learned k", type=float, auto="4 x the starting k"
    )
    sampler: str = _opt(
        "langevin",
        "chain kernel: langevin (ULA), mala, or tempering (replica exchange of "
        "MALA chains on a ladder from 1 to k * gap / 2)",
        choices=SAMPLERS,
    )
    tempering_gap: float = _opt(
        1.0, "tempering: width of the widest gap between modes the chains must cross"
    )
    num_steps: int | None = _opt(
        None, "chain steps per train step", type=int, auto="60 up to 8 dims, else 40"
    )
    step_size: float | None = _opt(
        None,
        "chain step size eta",
        type=float,
        auto="0.2/k up to 8 dimensions, else 0.02/k",
    )
    target_accept: float | None = _opt(
        None,
        "mala: adapt the step size toward this acceptance, capped at 4x the start",
        type=float,
    )
    base_starts: float | None = _opt(
        None,
        "chains: share of the training chains started from fresh draws of the "
        "mixture fitted to the data (the base) instead of the replay buffer, in "
        "[0, 1]",
        type=float,
        auto="1 for --model joint, 0 otherwise; 0 without a base (up to 8 or "
        "above 64 dimensions)",
    )
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
    loss: str = _opt(
        "ml",
        "training loss: ml (maximum likelihood), cd (contrastive divergence + L2), "
        "hkr (hinge-KR)",
        choices=("ml", "cd", "hkr"),
    )
    l2_weight: float = _opt(
        losses.DEFAULT_L2_WEIGHT, "weight of the L2 energy regulariser (cd loss)"
    )
    batch_size: int | None = _opt(
        None,
        "data points (and chains) per step",
        type=int,
        auto="1024 with a proposal, 256 with chains",
    )
    epochs: int | None = _opt(
        None,
        "passes over the data",
        type=int,
        auto=f"enough for {RECIPE_STEPS_PROPOSAL} steps with a proposal, "
        f"{RECIPE_STEPS_CHAINS} with chains",
    )
    learning_rate: float = _opt(RECIPE_LEARNING_RATE, "Adam learning rate", flag="--lr")
    beta_1: float | None = _opt(
        None, "Adam beta_1", type=float, auto="0.9 with a proposal, 0 with chains"
    )
    ema_momentum: float | None = _opt(
        RECIPE_EMA_MOMENTUM,
        "momentum of the moving average of the weights kept by the model and "
        "swapped in when training ends ('none': off)",
    )
    seed: int = _opt(0, "seed of every random draw")
    jit_compile: bool = _opt(
        False,
        "compile the whole train step with XLA (compile(jit_compile=True)): "
        "about 2x faster steps for the low-dimensional default net, after a "
        "compilation of some seconds; seeded results differ from the default",
        flag="--xla",
        action="store_true",
    )
    max_minutes: float | None = _opt(None, "stop training after this wall time")

    def validate(self):
        """``self`` if every field is valid; a one-line ValueError otherwise."""
        optional = (
            "num_steps",
            "batch_size",
            "n_train",
            "n_test",
            "num_negatives",
            "num_classes",
        )
        for name in ("buffer_size", "num_negatives", *optional):
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, least in (("n_train", MIN_TRAIN_POINTS), ("n_test", MIN_TEST_POINTS)):
            value = getattr(self, name)
            if value is not None and value < least:
                raise ValueError(
                    f"{name} must be at least {least} (a density is estimated "
                    f"from the data), got {value}"
                )
        for name in (
            "k_coef_lip",
            "step_size",
            "learning_rate",
            "k_max",
            "beta_1",
            "target_accept",
            "ema_momentum",
            "init_temperature",
            "anneal_fraction",
            "reinit_prob",
            "l2_weight",
            "max_minutes",
            "tempering_gap",
            "generative_weight",
            "base_starts",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        for name in ("lipschitz", "jit_compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{name} must be true or false, got {getattr(self, name)!r}"
                )
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be positive, got {self.max_minutes}")
        if not self.init_temperature >= 1:
            raise ValueError(
                f"init_temperature must be >= 1 (1: no annealing), got "
                f"{self.init_temperature}"
            )
        for name in ("anneal_fraction", "reinit_prob", "base_starts"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) <= 1:
                raise ValueError(
                    f"{name} must lie in [0, 1], got {getattr(self, name)}"
                )
        if not self.tempering_gap > 0:
            raise ValueError(
                f"tempering_gap must be positive, got {self.tempering_gap}"
            )
        if self.l2_weight < 0:
            raise ValueError(f"l2_weight must be >= 0, got {self.l2_weight}")
        if self.domain is not None and not (
            len(self.domain) == 2
            and all(math.isfinite(v) for v in self.domain)
            and self.domain[0] < self.domain[1]
        ):
            raise ValueError(
                f"domain must be two finite numbers low < high, got {self.domain}"
            )
        if self.epochs is not None and (
            isinstance(self.epochs, bool)
            or not isinstance(self.epochs, int)
            or self.epochs < 1
        ):
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        for name in ("k_coef_lip", "step_size", "learning_rate", "k_max"):
            value = getattr(self, name)
            if value is None and name != "learning_rate":
                continue
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name, choices in (
            ("model", MODELS),
            ("negatives", NEGATIVES),
            ("sampler", SAMPLERS),
            ("net", NETS),
        ):
            value = getattr(self, name)
            if value is None and name == "net":
                continue
            if value not in choices:
                raise ValueError(
                    f"{name} must be one of {list(choices)}, got {value!r}"
                )
        if self.activation is not None:
            if not isinstance(self.activation, str):
                raise TypeError(f"activation must be a string, got {self.activation!r}")
            for name in self.activation.split(","):
                try:
                    nets.group_size(name.strip())
                except ValueError:
                    raise ValueError(
                        "activation must be one of "
                        f"{list(nets.LIPSCHITZ_ACTIVATIONS)} (or groupsort<n>), or "
                        f"one per layer separated by commas, got {self.activation!r}"
                    ) from None
        if self.beta_1 is not None and not (
            isinstance(self.beta_1, (int, float)) and 0 <= self.beta_1 < 1
        ):
            raise ValueError(f"beta_1 must lie in [0, 1), got {self.beta_1!r}")
        if self.target_accept is not None and not (
            isinstance(self.target_accept, (int, float)) and 0 < self.target_accept < 1
        ):
            raise ValueError(
                f"target_accept must lie in (0, 1), got {self.target_accept!r}"
            )
        if self.target_accept is not None and self.sampler != "mala":
            raise ValueError("target_accept adapts MALA chains: add --sampler mala")
        if self.k_max is not None and self.learn_k is False:
            raise ValueError("k_max is the cap of a learned k: add --learn-k")
        if self.ema_momentum is not None and not (
            isinstance(self.ema_momentum, (int, float)) and 0 < self.ema_momentum < 1
        ):
            raise ValueError(
                f"ema_momentum must lie in (0, 1) or be None, got {self.ema_momentum!r}"
            )
        if self.loss not in ("ml", "cd", "hkr"):
            raise ValueError(f"loss must be 'ml', 'cd' or 'hkr', got {self.loss!r}")
        self._validate_joint()
        return self

    def _validate_joint(self):
        """The fields of ``--model joint``: refused without it, checked with it."""
        if self.model != "joint":
            for name in (
                "labels",
                "num_classes",
                "generative_weight",
                "classifier_loss",
            ):
                if getattr(self, name) is not None:
                    flag = "--" + name.replace("_", "-")
                    raise ValueError(f"{flag} is an option of a joint model: add "
                                     "--model joint")  # fmt: skip
            return
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(
                f"num_classes must be at least 2 (a classifier), got {self.num_classes}"
            )
        if (
            self.classifier_loss is not None
            and self.classifier_loss not in joint_lib.CLASSIFIER_LOSSES
        ):
            raise ValueError(
                f"classifier_loss must be one of {joint_lib.CLASSIFIER_LOSSES}, "
                f"got {self.classifier_loss!r}"
            )
        if self.generative_weight is not None and self.generative_weight < 0:
            raise ValueError(
                f"generative_weight must be >= 0, got {self.generative_weight}"
            )
        if self.labels is not None and not isinstance(self.labels, str):
            raise ValueError(f"labels must be a path to a .npy, got {self.labels!r}")
        if self.activation not in (None, "groupsort2"):
            raise ValueError(
                "a joint model's classifier uses groupsort2 "
                "(nets.lipschitz_classifier): drop --activation"
            )

    def resolved(self, sample_shape) -> RunConfig:
        """A copy with the fields left at ``None`` (or ``"auto"``) chosen for
        data of ``sample_shape``, by the rules in each field's help (``epochs``
        needs the number of samples: :func:`train_run` sets it).

        Raises:
            ValueError: for MALA step adaptation without chains to adapt.
        """
        shape = tuple(sample_shape)
        negatives = self.negatives
        if negatives == "auto":
            low = nets.is_low_dimensional(shape)
            negatives = "proposal" if low else "chains"
        learn_k = self.learn_k
        k_max = self.k_max
        if learn_k is None:
            learn_k = self.k_coef_lip is None and model_lib.default_learn_k(shape)
            if learn_k:
                k_max = k_max or model_lib.LOW_DIM_K_MAX
        if k_max is not None and not learn_k:
            raise ValueError("k_max is the cap of a learned k: add --learn-k")
        k = self.k_coef_lip or (
            model_lib.LOW_DIM_K_START
            if learn_k and self.learn_k is None
            else model_lib.default_k_coef_lip(shape)
        )
        units, _ = nets.default_mlp_shape(shape)
        if self.units:
            units = tuple(self.units)
        activation = ",".join(nets.default_activation(shape, len(units)))
        if len(set(activation.split(","))) == 1:
            activation = activation.split(",")[0]
        joint = self.model == "joint"
        if joint:  # nets.lipschitz_classifier's: GroupSort2, conv on images
            activation = "groupsort2"
        net = self.net or ("conv" if joint and len(shape) == 3 else "dense")
        chains = model_lib.default_sampler(shape, k)
        with_proposal = negatives == "proposal"
        if negatives == "walkers" and self.target_accept is not None:
            raise ValueError(
                "target_accept adapts replay-buffer chains; walkers keep their "
                "step size (drop --target-accept)"
            )
        if with_proposal and self.target_accept is not None:
            raise ValueError(
                "target_accept adapts training chains, and these data train with "
                "proposal negatives: add --negatives chains"
            )
        base_starts = self.base_starts
        if base_starts is None:  # the model's rule: its class default, with a base
            model_cls = joint_lib.JointEnergyModel if joint else EnergyModel
            has_base = model_lib.has_default_base(shape)
            base_starts = model_cls.DEFAULT_BASE_STARTS if has_base else 0.0
        return dataclasses.replace(
            self,
            negatives=negatives,
            base_starts=float(base_starts),
            net=net,
            generative_weight=(
                (
                    self.generative_weight
                    if self.generative_weight is not None
                    else joint_lib.DEFAULT_GENERATIVE_WEIGHT
                )
                if joint
                else None
            ),
            classifier_loss=(
                (self.classifier_loss or joint_lib.DEFAULT_CLASSIFIER_LOSS)
                if joint
                else None
            ),
            units=units,
            activation=self.activation or activation,
            k_coef_lip=float(k),
            learn_k=learn_k,
            k_max=(4.0 * k if learn_k and k_max is None else k_max),
            num_steps=self.num_steps or chains.num_steps,
            step_size=self.step_size or float(chains.step_size.numpy()),
            batch_size=self.batch_size
            or (
                model_lib.DEFAULT_BATCH_SIZE_PROPOSAL
                if with_proposal
                else model_lib.DEFAULT_BATCH_SIZE_CHAINS
            ),
            beta_1=(
                self.beta_1
                if self.beta_1 is not None
                else RECIPE_BETA_1_PROPOSAL
                if with_proposal
                else RECIPE_BETA_1_CHAINS
            ),
        )

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
def _read_npy(path) -> tuple[Path, np.ndarray]:
    """A numeric array from a ``.npy`` file, never unpickled (one-line errors)."""
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
    return path, x


def load_array(path) -> np.ndarray:
    """A user's array from ``.npy`` (never unpickled), as float32.

    Raises:
        ValueError: missing, malformed or pickled file, non-numeric dtype, rank
            below 2, or non-finite values.
    """
    path, x = _read_npy(path)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"{path} has shape {x.shape}; expected (n, features...)")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path} contains NaN or Inf values")
    return x


def load_labels(path, n: int, data_name: str = "--dataset") -> np.ndarray:
    """Integer class labels ``(n,)`` (int64, >= 0) from a ``.npy`` (never
    unpickled): entry ``i`` is the class of row ``i`` of the data.

    Raises:
        ValueError: missing, malformed or pickled file, a shape other than
            ``(n,)`` (or ``(n, 1)``), values that are not integers >= 0.
    """
    path, y = _read_npy(path)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"{path} has shape {y.shape}; expected (n,) integer class labels"
        )
    if len(y) != n:
        raise ValueError(f"{path} has {len(y)} labels for the {n} rows of {data_name}")
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise ValueError(f"{path} holds labels that are not integers")
    if y.size and y.min() < 0:
        raise ValueError(
            f"{path}: labels are classes 0..C-1, got {y.min():g} (negative)"
        )
    return y.astype(np.int64)


class LabeledData(NamedTuple):
    """A config's data with their classes (:func:`load_labeled_data`)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    domain: tuple
    num_classes: int


def load_data(config: RunConfig):
    """``(x_train, x_test, domain)`` for a config's dataset."""
    x_train, _, x_test, _, domain = _load(config, labels=False)
    return x_train, x_test, domain


def load_labeled_data(config: RunConfig) -> LabeledData:
    """The data of a joint run with their classes: digits' own, or
    ``config.labels`` beside a ``.npy`` dataset (split with the same shuffle).

    ``num_classes`` is ``config.num_classes``, else 10 for digits and the largest
    label + 1 for user labels.

    Raises:
        ValueError: a dataset without labels, labels of the wrong length or out
            of ``0..num_classes-1``, fewer than 2 classes (one line each).
    """
    x_train, y_train, x_test, y_test, domain = _load(config, labels=True)
    largest = int(max(y_train.max(), y_test.max()))
    if config.num_classes is not None:
        num_classes = config.num_classes
    elif config.dataset == "digits":
        num_classes = DIGITS_CLASSES
    else:
        num_classes = largest + 1
    source = "digits" if config.dataset == "digits" else config.labels
    if num_classes < 2:
        raise ValueError(
            f"{source} holds one class (0); a classifier needs at least 2 classes"
        )
    if largest >= num_classes:
        raise ValueError(
            f"{source}: labels must lie in 0..{num_classes - 1} (num_classes "
            f"{num_classes}), got {largest}"
        )
    return LabeledData(x_train, y_train, x_test, y_test, domain, num_classes)


def _load(config: RunConfig, labels: bool):
    """``(x_train, y_train, x_test, y_test, domain)``; the labels are ``None``
    unless ``labels``."""
    name = config.dataset
    if name in datasets.DENSITIES:
        if labels:
            raise ValueError(
                f"{name} has no class labels; a joint model trains on digits, or "
                "on --dataset x.npy --labels y.npy"
            )
        x_train, x_test = datasets.load_2d(
            name,
            config.n_train or RECIPE_N_TRAIN,
            config.n_test or RECIPE_N_TEST,
            config.seed,
        )
        return x_train, None, x_test, None, datasets.get_density(name).domain
    y_train = y_test = None
    if name == "digits":
        if config.labels is not None:
            raise ValueError("digits has its own labels: drop --labels")
        data = datasets.load_digits(seed=config.seed)
        x_train, x_test, domain = data.x_train, data.x_test, datasets.DIGITS_DOMAIN
        if labels:
            y_train, y_test = (
                data.y_train.astype(np.int64),
                data.y_test.astype(np.int64),
            )
    elif name.endswith(".npy"):
        x = load_array(name)
        y = None
        if labels:
            if config.labels is None:
                raise ValueError(
                    f"a joint model needs the class of every row of {name}: add "
                    "--labels y.npy"
                )
            y = load_labels(config.labels, len(x), name)
        rng = np.random.default_rng(config.seed)
        order = rng.permutation(len(x))
        x = x[order]
        n_test = max(1, len(x) // 10)
        lo, hi = float(x.min()), float(x.max())
        margin = 0.1 * (hi - lo) or 1.0
        x_train, x_test, domain = x[n_test:], x[:n_test], (lo - margin, hi + margin)
        if y is not None:
            y = y[order]
            y_train, y_test = y[n_test:], y[:n_test]
    else:
        raise ValueError(
            f"unknown dataset {name!r}: use one of {list(datasets.DENSITIES)}, "
            "'digits', or a path to a .npy file"
        )
    for split, field, x, least in (
        ("training", "n_train", x_train, MIN_TRAIN_POINTS),
        ("test", "n_test", x_test, MIN_TEST_POINTS),
    ):
        wanted = getattr(config, field)
        if wanted is not None and wanted > len(x):
            raise ValueError(
                f"{name} has {len(x)} {split} points; {field} asks for {wanted}"
            )
        if len(x) < least:
            raise ValueError(
                f"{name} has {len(x)} {split} points (a tenth of the array is held "
                f"out for testing); a run needs at least {least}"
            )
    if config.n_train:
        x_train = x_train[: config.n_train]
        y_train = None if y_train is None else y_train[: config.n_train]
    if config.n_test:
        x_test = x_test[: config.n_test]
        y_test = None if y_test is None else y_test[: config.n_test]
    return x_train, y_train, x_test, y_test, domain


# ------------------------------------------------------------------ model
def default_network(config: RunConfig, sample_shape):
    """The recipe's energy network: dense (images flattened; on 8×8 digits it
    separates classes far better than the conv net, ``research/r2``) or conv;
    for ``model="joint"``, :func:`deel_ebm.nets.lipschitz_classifier` with
    ``num_classes`` logits (conv on images, dense otherwise)."""
    if config.model == "joint":
        return _joint_network(config, tuple(sample_shape))
    if config.net == "conv":
        if len(sample_shape) != 3:
            raise ValueError(
                f"the conv net needs (h, w, c) samples, got shape {sample_shape}"
            )
        builder = (
            nets.lipschitz_convnet if config.lipschitz else nets.unconstrained_convnet
        )
        return builder(sample_shape, seed=config.seed)
    units = None if config.units is None else tuple(config.units)
    if not config.lipschitz:
        return nets.unconstrained_mlp(
            sample_shape, units=units or nets.DEFAULT_UNITS, seed=config.seed
        )
    return nets.lipschitz_mlp(
        sample_shape,
        units=units,
        seed=config.seed,
        activation=config.activation,
    )


def _joint_network(config: RunConfig, shape):
    if config.num_classes is None:
        raise ValueError(
            "a joint model's classifier needs num_classes (train_run takes it "
            "from the labels)"
        )
    images = len(shape) == 3
    net = config.net or ("conv" if images else "dense")
    if net == "conv" and not images:
        raise ValueError(f"the conv net needs (h, w, c) samples, got shape {shape}")
    if net == "dense" and images:
        raise ValueError(
            "a joint model's classifier of (h, w, c) images is convolutional "
            "(nets.lipschitz_classifier): drop --net dense"
        )
    builder = (
        nets.lipschitz_classifier if config.lipschitz else nets.unconstrained_classifier
    )
    sizes = {} if images else {"units": tuple(config.units or nets.DEFAULT_UNITS)}
    return builder(shape, config.num_classes, seed=config.seed, **sizes)


def default_sampler(config: RunConfig):
    """The recipe's chains: unadjusted Langevin, or MALA (``config.sampler``),
    for a resolved config (:meth:`RunConfig.resolved`)."""
    common = dict(
        num_steps=config.num_steps,
        step_size=config.step_size,
        init_temperature=config.init_temperature,
        anneal_fraction=config.anneal_fraction,
    )
    if config.sampler == "mala":
        return samplers.MALASampler(target_accept=config.target_accept, **common)
    if config.sampler == "tempering":
        if config.init_temperature != 1.0:
            raise ValueError("tempering replaces annealing: drop --init-temperature")
        return samplers.ReplicaExchange(
            samplers.MALASampler(
                num_steps=config.num_steps, step_size=config.step_size
            ),
            temperatures=samplers.temperature_ladder(
                config.k_coef_lip, config.tempering_gap
            ),
        )
    return samplers.LangevinSampler(**common)


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
    if config.loss == "ml":
        return losses.MaximumLikelihoodLoss()
    if config.loss == "cd":
        return losses.ContrastiveDivergenceLoss(config.l2_weight)
    return losses.HingeKRLoss()


def default_optimizer(config: RunConfig):
    """Adam (the weight average is the model's: ``ema_momentum`` goes to
    ``EnergyModel(weight_average=...)``)."""
    return keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1)


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
    """The compiled EnergyModel a config describes (its ``None`` fields chosen
    for ``sample_shape`` by :meth:`RunConfig.resolved`); a
    :class:`~deel_ebm.core.joint.JointEnergyModel` for ``model="joint"`` (the
    config's ``num_classes`` set: :func:`train_run` takes it from the labels).

    Each part comes from a factory of the config (and of the sample shape for
    the network, of the data's box for the buffer), so an experiment swaps one
    part without touching the others, e.g.
    ``build_model(config, (2,), box, sampler_fn=lambda c: MALASampler(...))``.
    """
    sample_shape = tuple(sample_shape)
    config = config.resolved(sample_shape)
    joint = {}
    model_cls = EnergyModel
    if config.model == "joint":
        model_cls = joint_lib.JointEnergyModel
        joint = {
            "generative_weight": config.generative_weight,
            "classifier_loss": config.classifier_loss,
        }
    with warnings.catch_warnings():
        if not config.lipschitz:
            warnings.simplefilter("ignore")  # the ablation is deliberate
        model = model_cls(
            network_fn(config, sample_shape),
            k_coef_lip=config.k_coef_lip,
            sampler=sampler_fn(config),
            buffer=buffer_fn(config, domain),
            loss=loss_fn(config),
            seed=config.seed,
            proposal=(
                proposals.MixtureProposal(domain=domain, seed=config.seed)
                if config.negatives == "proposal"
                else None
            ),
            num_negatives=config.num_negatives or proposals.DEFAULT_NUM_NEGATIVES,
            walkers=(
                walkers_lib.JarzynskiWalkers(
                    config.num_negatives or walkers_lib.DEFAULT_NUM_WALKERS
                )
                if config.negatives == "walkers"
                else None
            ),
            learn_k=config.learn_k,
            k_max=config.k_max,
            weight_average=config.ema_momentum,
            base_starts=config.base_starts,
            **joint,
        )
    model.compile(optimizer=optimizer_fn(config), jit_compile=config.jit_compile)
    return model


# ------------------------------------------------------------------ runs
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


def classification_metrics(model, x_test, y_test, radii=None) -> dict:
    """What a joint model's classifier scores on held-out points.

    ``test_accuracy``; ``test_ece``, the expected calibration error of
    ``p(y|x)`` in :data:`~deel_ebm.metrics.DEFAULT_ECE_BINS` bins
    (``ece_bins``); ``certified_accuracy`` ``{"ε": share}``, the share of test
    points classified correctly with a certified ℓ2 radius above ε at each
    ``radii`` (default :data:`~deel_ebm.certificates.DEFAULT_ROBUST_RADII`;
    ``None`` when the network is not Lipschitz, ``certified: false``);
    ``certified_radius_median``; ``margin_factor`` (√2 or 2), ``num_classes``
    and ``generative_weight``.
    """
    radii = certificates.DEFAULT_ROBUST_RADII if radii is None else tuple(radii)
    logits = model.logits(x_test, batch_size=4096).numpy().astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    y_test = np.asarray(y_test)
    robust = certificates.certified_robust_accuracy(
        logits, y_test, model.k_coef_lip, radii, margin_factor=model.margin_factor
    )
    radius = certificates.certified_margin_radius(
        logits, model.k_coef_lip, model.margin_factor
    )
    certified = bool(model.is_lipschitz)
    return {
        "num_classes": model.num_classes,
        "generative_weight": model.generative_weight,
        "classifier_loss": classifier_losses.name_of(model.classifier_loss),
        "test_accuracy": robust[0.0],
        "test_ece": metrics_lib.expected_calibration_error(probs, y_test),
        "ece_bins": metrics_lib.DEFAULT_ECE_BINS,
        "certified": certified,
        "margin_factor": model.margin_factor,
        "certified_accuracy": (
            {f"{r:g}": robust[float(r)] for r in radii} if certified else None
        ),
        "certified_radius_median": float(np.median(radius)) if certified else None,
    }


def class_sample_labels(n: int, num_classes: int) -> np.ndarray:
    """``n`` labels split evenly across the classes, sorted: the ``y`` of
    class-conditional samples of every class (class ``c`` gets ``n // C`` or one
    more)."""
    return np.sort(np.arange(n) % num_classes).astype(np.int32)


def _history_rows(history: dict, progress: Progress) -> list[dict]:
    """Keras' per-epoch history joined with the step and time of each epoch;
    validation metrics (``val_*``) are empty on the epochs without validation."""
    rows = [dict(r) for r in progress.rows]
    train_keys = [k for k in history if not k.startswith("val_")]
    val_keys = [k for k in history if k.startswith("val_")]
    for i, row in enumerate(rows):
        for key in train_keys:
            if i < len(history[key]):
                row[key] = history[key][i]
    if val_keys:  # Keras appends val_* only on the epochs that validated
        validated = [r for r in rows if r.get("_validated")]
        for key in val_keys:
            for row, value in zip(validated, history[key]):
                row[key] = value
    for row in rows:
        row.pop("_validated", None)
    return rows


class _ValidationMarks(keras.callbacks.Callback):
    """Marks the progress rows of the epochs whose logs hold validation."""

    def __init__(self, progress: Progress):
        super().__init__()
        self.progress = progress

    def on_epoch_end(self, epoch, logs=None):
        if any(k.startswith("val_") for k in (logs or {})) and self.progress.rows:
            self.progress.rows[-1]["_validated"] = True


def train_run(
    config: RunConfig,
    out_dir,
    verbose: int = 0,
    log=print,
    *,
    overwrite: bool = False,
    progress_every: float | None = 10.0,
    callbacks=(),
    tensorboard=None,
    **factories,
) -> dict:
    """Train ``config`` and write a run folder; returns the metrics dict.

    The folder is written atomically (:func:`~deel_ebm.app.folders.staged`):
    on an error or a second Ctrl-C, ``out_dir`` is left as it was; a first
    Ctrl-C stops training after the current step and saves the run as usual
    (``stop_reason`` says so; :func:`resume_run` trains it further).

    Args:
        config: the recipe.
        out_dir: the run folder; an existing run is replaced only with
            ``overwrite`` (an empty folder is used as is).
        verbose: 0: progress lines at most every ``progress_every`` seconds
            (``None``: none); 1: Keras' epoch lines.
        log: where progress and warnings go.
        callbacks: more Keras callbacks for ``fit``.
        tensorboard: a TensorBoard log folder: energies, gap, certificate and
            sample images (:func:`~deel_ebm.callbacks.tensorboard_callbacks`, the
            test points as the certificate's probes).
        factories: ``network_fn``, ``sampler_fn``, ... for :func:`build_model`.

    Raises:
        ValueError: bad config, data or ``out_dir`` (one line).
    """
    config.validate()
    out = Path(out_dir)
    keras.utils.set_random_seed(config.seed)
    x_train, x_test, domain, labels, num_classes = _run_data(config)
    folders.refuse_existing(out, overwrite)
    if config.domain is not None:
        domain = tuple(config.domain)
    warning = scale_warning(x_train)
    if warning:
        log(f"warning: {warning}")
    resolved = config.resolved(x_train.shape[1:])
    if num_classes is not None:
        resolved = dataclasses.replace(resolved, num_classes=num_classes)
    if resolved.negatives == "chains" and resolved.batch_size > config.buffer_size:
        raise ValueError(
            f"batch_size {resolved.batch_size} exceeds buffer_size {config.buffer_size}"
        )
    model = build_model(resolved, x_train.shape[1:], domain, **factories)
    if resolved.epochs is None:
        steps = (
            RECIPE_STEPS_PROPOSAL
            if resolved.negatives == "proposal"
            else RECIPE_STEPS_CHAINS
        )
        per_epoch = math.ceil(len(x_train) / resolved.batch_size)
        resolved = dataclasses.replace(resolved, epochs=math.ceil(steps / per_epoch))
    resolved = dataclasses.replace(resolved, n_train=len(x_train), n_test=len(x_test))
    if tensorboard is not None:
        from deel_ebm.callbacks import tensorboard_callbacks

        callbacks = [
            *callbacks,
            *tensorboard_callbacks(tensorboard, probe_points=x_test),
        ]
    with folders.staged(out) as staging, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SCALE_WARNING)  # logged above
        folders.write_json(staging / "config.json", config.to_json())
        return _fit_and_write(
            staging,
            model,
            resolved,
            (x_train, x_test, domain),
            verbose=verbose,
            log=log,
            progress_every=progress_every,
            callbacks=callbacks,
            labels=labels,
        )


def _run_data(config: RunConfig):
    """``(x_train, x_test, domain, labels, num_classes)`` of a run: ``labels``
    ``(y_train, y_test)`` and ``num_classes`` for a joint model, else None."""
    if config.model != "joint":
        return (*load_data(config), None, None)
    data = load_labeled_data(config)
    labels = (data.y_train, data.y_test)
    return data.x_train, data.x_test, data.domain, labels, data.num_classes


def resume_run(
    run_dir,
    epochs: int | None = None,
    max_minutes: float | None = None,
    verbose: int = 0,
    log=print,
    *,
    progress_every: float | None = 10.0,
    callbacks=(),
) -> dict:
    """Train a finished run further, in place and atomically; returns the
    new metrics.

    The model (weights, optimizer state, proposal, replay buffer, weight
    average) continues from its saved state on the run's own data and recipe;
    ``history.csv`` goes on from the last epoch.

    Args:
        epochs: more epochs to train (default: as many as the run has trained).
        max_minutes: a time budget for this part (default: the run's own).
    """
    run = Path(run_dir)
    if folders.run_state(run) != "run":
        raise ValueError(
            f"{run} holds no finished run to resume (it needs "
            f"{', '.join(folders.RUN_FILES)})"
        )
    model, config, metrics = load_run(run)
    previous = metrics.get("resolved_config")
    if not previous or "epochs_run" not in metrics:
        raise ValueError(f"{run / 'metrics.json'} lacks the run's resolved recipe")
    resolved = RunConfig.from_json(previous)
    done_epochs = int(metrics["epochs_run"])
    more = epochs if epochs is not None else max(done_epochs, 1)
    if isinstance(more, bool) or not isinstance(more, int) or more < 1:
        raise ValueError(f"epochs must be a positive integer, got {more!r}")
    resolved = dataclasses.replace(
        resolved,
        max_minutes=max_minutes if max_minutes is not None else config.max_minutes,
    ).validate()
    x_train, x_test, domain, labels, num_classes = _run_data(config)
    if num_classes is not None and num_classes != resolved.num_classes:
        raise ValueError(
            f"the labels now hold {num_classes} classes; the run was trained on "
            f"{resolved.num_classes}"
        )
    if config.domain is not None:
        domain = tuple(config.domain)
    with folders.staged(run) as staging:
        for name in ("config.json",):
            shutil.copy2(run / name, staging / name)
        return _fit_and_write(
            staging,
            model,
            resolved,
            (x_train, x_test, domain),
            verbose=verbose,
            log=log,
            progress_every=progress_every,
            callbacks=callbacks,
            labels=labels,
            initial_epoch=done_epochs,
            epochs=done_epochs + more,
            previous=(folders.read_history(run / "history.csv"), metrics),
        )


def _fit_and_write(
    out,
    model,
    config,
    data,
    *,
    verbose,
    log,
    progress_every,
    callbacks,
    labels=None,
    initial_epoch=0,
    epochs=None,
    previous=None,
):
    """Fit ``model`` and write every file of a run into ``out``; ``labels``
    ``(y_train, y_test)`` of a joint model."""
    x_train, x_test, domain = data
    epochs = config.epochs if epochs is None else epochs
    per_epoch = math.ceil(len(x_train) / config.batch_size)
    history_before, metrics_before = previous or ([], {})
    seconds_before = float(metrics_before.get("train_seconds", 0.0))
    budget = TimeBudget(config.max_minutes) if config.max_minutes else None
    start_step = int(model.optimizer.iterations.numpy())
    progress = Progress(
        total_steps=start_step + (epochs - initial_epoch) * per_epoch,
        budget=budget,
        log=log,
        every=progress_every if verbose == 0 else None,
        elapsed_offset=seconds_before,
    )
    x_val = x_test[:VALIDATION_POINTS]
    inputs, validation = (x_train,), x_val
    if labels is not None:
        inputs = (x_train, labels[0])
        validation = (x_val, labels[1][:VALIDATION_POINTS])
    fit_callbacks = [progress, _ValidationMarks(progress), *callbacks]
    if budget is not None:
        fit_callbacks.append(budget)
    with interrupt_stops_training(log) as interrupt:
        fit_callbacks.append(interrupt)
        t0 = time.perf_counter()
        hist = model.fit(
            *inputs,
            batch_size=config.batch_size,
            epochs=epochs,
            initial_epoch=initial_epoch,
            validation_data=validation,
            validation_freq=max(1, (epochs - initial_epoch) // VALIDATIONS),
            callbacks=fit_callbacks,
            verbose=2 if verbose else 0,
        )
        train_seconds = time.perf_counter() - t0
    outcome = progress.outcome(interrupt.raised, model.stop_reason)
    log(outcome)
    model.save(out / MODEL_FILE)
    rows = history_before + _history_rows(hist.history, progress)
    folders.write_history(out / "history.csv", rows)
    e_test = model.energy(x_test, batch_size=65536).numpy()
    threshold = certificates.calibrate_threshold(e_test, DEFAULT_FPR)
    epochs_run = initial_epoch + len(hist.history.get("loss", []))
    stop_reason = model.stop_reason or ("interrupted" if interrupt.raised else None)
    metrics = {
        "train_seconds": seconds_before + train_seconds,
        "epochs_run": epochs_run,
        "steps_run": int(model.optimizer.iterations),
        "stopped_by_time_budget": bool(budget and budget.stopped),
        "stop_reason": stop_reason,
        "outcome": outcome,
        "resumed": (int(metrics_before.get("resumed", 0)) + 1) if previous else 0,
        "k_coef_lip": model.k_coef_lip,
        "resolved_config": dataclasses.replace(config, epochs=epochs).to_json(),
        "is_lipschitz": model.is_lipschitz,
        "final_logs": {k: v[-1] for k, v in hist.history.items() if v},
        "threshold": threshold,
        "threshold_fpr": DEFAULT_FPR,
        "test_energy_mean": float(np.mean(e_test)),
    }
    class_samples = None
    if labels is not None:
        metrics["classification"] = classification_metrics(model, x_test, labels[1])
        per_class = CLASS_SAMPLES if x_train.ndim == 4 else CLASS_POINTS
        y = class_sample_labels(per_class * model.num_classes, model.num_classes)
        class_samples = (model.sample(len(y), y=y, seed=config.seed).numpy(), y)
    samples = model.sample(2000).numpy()
    np.save(out / "samples.npy", samples)
    if config.dataset in datasets.DENSITIES:
        exact = metrics_lib.exact_metrics_2d(
            energy_fn(model), config.dataset, x_test=x_test
        )
        metrics["exact"] = exact
    figures.write_run_figures(
        out,
        energy_fn(model),
        dataset=config.dataset,
        x_train=x_train,
        samples=samples,
        history_rows=rows,
        domain=domain,
        exact=metrics.get("exact"),
        class_samples=class_samples,
    )
    metrics = to_jsonable(metrics)
    folders.write_json(out / "metrics.json", metrics)
    return metrics


def load_run(run_dir):
    """``(model, config, metrics)`` of a run folder, with clear errors.

    ``run_dir`` may also be a ``.keras`` file: inside a run folder, the
    folder's config and metrics come with it; elsewhere they are ``None`` and
    ``{}`` (no calibrated threshold, no dataset to evaluate on).
    """
    run = Path(run_dir)
    if run.is_file() and run.suffix == ".keras":
        model_file = run
        run = run.parent
        has_config = (run / "config.json").is_file() and model_file.name == MODEL_FILE
    elif run.is_dir():
        missing = [n for n in (MODEL_FILE, "config.json") if not (run / n).is_file()]
        if missing:
            raise ValueError(f"{run} is not a deel-ebm run folder (missing {missing})")
        model_file, has_config = run / MODEL_FILE, True
    elif run.exists():
        raise ValueError(f"{run} is neither a run folder nor a .keras model file")
    else:
        raise ValueError(f"no such run folder or model file: {run}")
    config, metrics = None, {}
    if has_config:
        try:
            config = RunConfig.from_json(json.loads((run / "config.json").read_text()))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{run / 'config.json'} is malformed: {err}") from err
        if (run / "metrics.json").is_file():
            try:
                metrics = json.loads((run / "metrics.json").read_text())
            except ValueError as err:
                raise ValueError(f"{run / 'metrics.json'} is malformed: {err}") from err
    try:  # checked archive, all-or-nothing, an EnergyModel or an error
        model = export.load_model(model_file)
    except export.ModelLoadError as err:
        raise ValueError(f"cannot load {model_file}: {err}") from err
    return model, config, metrics


def check_input(model, x, name="input"):
    """``x`` checked against the model's sample shape (a clear ValueError)."""
    if tuple(x.shape[1:]) != model.sample_shape:
        raise ValueError(
            f"{name} must have samples of shape {model.sample_shape}, got "
            f"{tuple(x.shape[1:])}"
        )
    return x

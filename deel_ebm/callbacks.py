r"""Keras callbacks that watch and protect the training of an energy-based model.

Each callback writes what it measures into ``logs``, so ``History``, ``CSVLogger``
and ``TensorBoard`` record it; list them *before* those loggers in ``callbacks=``
(Keras calls callbacks in list order and the loggers read the same ``logs``).

- :class:`EnergyGapMonitor`: the gap :math:`E(x^-) - E(x^+)` and the energies;
  flags collapse and blow-up (``gap_status``).
- :class:`LipschitzCertificate`: a certified upper bound and an empirical lower
  bound of :math:`\mathrm{Lip}(E)` against ``k`` (``lip_upper``, ``lip_lower``).
- :class:`SampleSnapshot`: samples as PNG files and TensorBoard images.
- :class:`DivergenceGuard`: rolls back to the last good state and retries with a
  smaller step size and learning rate when training diverges.
- :class:`NetworkCallback`: runs a callback on the energy network, so deel-lip's
  ``CondenseCallback`` and ``MonitorCallback`` see its deel-lip layers.
"""

from __future__ import annotations

import io
import math
import numbers
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from deel_ebm import certificates, plotting
from deel_ebm._backend import keras, tf

__all__ = [
    "EnergyGapMonitor",
    "LipschitzCertificate",
    "LipschitzViolationError",
    "SampleSnapshot",
    "DivergenceGuard",
    "NetworkCallback",
    "lipschitz_report",
    "GAP_OK",
    "GAP_COLLAPSE",
    "GAP_BLOWUP",
]

GAP_OK, GAP_COLLAPSE, GAP_BLOWUP = 0, 1, 2
DEFAULT_COLLAPSE_TOL = 1e-3
DEFAULT_PATIENCE = 3
DEFAULT_BLOWUP_THRESHOLD = 1e4
DEFAULT_GROWTH_FACTOR = 2.0
#: Below this energy scale (nats) a fast relative growth is normal early training.
GROWTH_MIN_SCALE = 1.0
DEFAULT_LIP_TOL = 1e-3
DEFAULT_ASCENT_STEPS = 10
DEFAULT_NUM_POINTS = 256
VIOLATION_MODES = ("flag", "raise")
DEFAULT_NUM_SAMPLES = 256
SNAPSHOT_RESOLUTION = 100
_GAP_KEYS = ("energy_gap", "e_pos", "e_neg")


# ------------------------------------------------------------------ validation
def _positive(name, value, integer=False, allow_none=False):
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return int(value) if integer else float(value)


def _factor(name, value):
    value = _positive(name, value)
    if value > 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    return value


def _finite(logs, keys):
    return all(np.isfinite(logs[key]) for key in keys if key in logs)


def _stop(model, message):
    model.stop_reason = message
    model.stop_training = True


# ------------------------------------------------------------- energy gap
@keras.utils.register_keras_serializable(package="deel_ebm")
class EnergyGapMonitor(keras.callbacks.Callback):
    r"""Tracks the energy gap and flags collapse or blow-up of training.

    Reads ``energy_gap`` (:math:`\bar E(x^-) - \bar E(x^+)`), ``e_pos`` and
    ``e_neg`` from the :class:`~deel_ebm.EnergyModel` logs. Per batch it records
    the values of each step (recovered from Keras' running means) in
    :attr:`batch_history`; per epoch the epoch means in :attr:`epoch_history`.

    Rule, applied at each epoch end (``gap_status`` written into the logs):

    - **blow-up** (2): a non-finite value, or :math:`\max(|E^+|, |E^-|, |gap|)` above
      ``blowup_threshold``, or the scale :math:`s = \max(|E^+|, |E^-|)` growing by at
      least ``growth_factor`` per epoch for ``patience`` consecutive epochs (growth
      counts only from :math:`s \ge` :data:`GROWTH_MIN_SCALE`);
    - **collapse** (1): :math:`|gap| <` ``collapse_tol`` for ``patience``
      consecutive epochs: positives and negatives look the same to the energy
      (flat landscape, or chains stuck on the data). A well-mixed PCD run also
      drives the gap towards 0, so keep ``collapse_tol`` small;
    - otherwise ok (0).

    With ``per_batch=True`` the blow-up thresholds are also checked on every
    step's values and ``gap_status`` is written into the batch logs. A change of
    status warns (``RuntimeWarning``); with ``stop_on_failure`` training stops and
    ``model.stop_reason`` says why.

    Args:
        collapse_tol: gap magnitude (energy units) below which an epoch counts as
            collapsed (> 0).
        patience: consecutive epochs needed for collapse or geometric growth.
        blowup_threshold: energy magnitude considered a blow-up (> 0).
        growth_factor: per-epoch growth ratio of the energy scale counted as
            geometric growth (> 1).
        stop_on_failure: stop training on collapse or blow-up.
        per_batch: also check and log every batch.

    Example:
        >>> monitor = EnergyGapMonitor(collapse_tol=1e-3, patience=3)
        >>> history = model.fit(x, epochs=5, callbacks=[monitor])
        >>> history.history["gap_status"]      # [0, 0, 0, 0, 0]
        >>> monitor.batch_history["energy_gap"]  # one value per step
    """

    def __init__(
        self,
        collapse_tol: float = DEFAULT_COLLAPSE_TOL,
        patience: int = DEFAULT_PATIENCE,
        blowup_threshold: float = DEFAULT_BLOWUP_THRESHOLD,
        growth_factor: float = DEFAULT_GROWTH_FACTOR,
        stop_on_failure: bool = False,
        per_batch: bool = False,
    ):
        super().__init__()
        self.collapse_tol = _positive("collapse_tol", collapse_tol)
        self.patience = _positive("patience", patience, integer=True)
        self.blowup_threshold = _positive("blowup_threshold", blowup_threshold)
        self.growth_factor = _positive("growth_factor", growth_factor)
        if self.growth_factor <= 1.0:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor!r}")
        self.stop_on_failure = bool(stop_on_failure)
        self.per_batch = bool(per_batch)
        self._reset()

    def _reset(self):
        self.status = GAP_OK
        self.batch_history = {key: [] for key in (*_GAP_KEYS, "gap_status")}
        self.epoch_history = {key: [] for key in (*_GAP_KEYS, "gap_status")}
        self._collapse_count = 0
        self._growth_count = 0
        self._previous_scale = None
        self._previous_batch = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._previous_batch = None

    def _read(self, logs):
        missing = [key for key in _GAP_KEYS if key not in logs]
        if missing:
            raise ValueError(
                f"EnergyGapMonitor needs {missing} in the logs: use it with a "
                "deel_ebm.EnergyModel"
            )
        return {key: float(logs[key]) for key in _GAP_KEYS}

    def _blown_up(self, values):
        scale = max(abs(v) for v in values.values())
        if not math.isfinite(scale):
            return "non-finite energies"
        if scale > self.blowup_threshold:
            return (
                f"|energy| {scale:.4g} above blowup_threshold {self.blowup_threshold}"
            )
        return None

    def on_train_batch_end(self, batch, logs=None):
        means = self._read(logs or {})
        count = batch + 1  # steps done this epoch (batch is the last step index)
        if self._previous_batch is None:
            values = means
        else:
            prev_count, prev = self._previous_batch
            span = max(count - prev_count, 1)
            values = {
                k: (count * means[k] - prev_count * prev[k]) / span for k in _GAP_KEYS
            }
        self._previous_batch = (count, means)
        for key in _GAP_KEYS:
            self.batch_history[key].append(values[key])
        status = GAP_OK
        if self.per_batch:
            reason = self._blown_up(values)
            status = GAP_BLOWUP if reason else GAP_OK
            logs["gap_status"] = status
            if reason:
                where = f"epoch {self._epoch + 1}, batch {count}"
                self._report(status, f"{reason} at {where}")
        self.batch_history["gap_status"].append(status)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        values = self._read(logs)
        for key in _GAP_KEYS:
            self.epoch_history[key].append(values[key])
        reason = self._blown_up(values)
        scale = max(abs(values["e_pos"]), abs(values["e_neg"]))
        grew = (
            self._previous_scale is not None
            and self._previous_scale >= GROWTH_MIN_SCALE
            and scale >= self.growth_factor * self._previous_scale
        )
        self._growth_count = self._growth_count + 1 if grew else 0
        self._previous_scale = scale
        if reason is None and self._growth_count >= self.patience:
            reason = (
                f"energy scale grew by >= {self.growth_factor}x per epoch for "
                f"{self._growth_count} epochs (now {scale:.4g})"
            )
        small = abs(values["energy_gap"]) < self.collapse_tol
        self._collapse_count = self._collapse_count + 1 if small else 0
        if reason is not None:
            status = GAP_BLOWUP
        elif self._collapse_count >= self.patience:
            status = GAP_COLLAPSE
            reason = (
                f"|energy gap| below collapse_tol {self.collapse_tol} for "
                f"{self._collapse_count} epochs"
            )
        else:
            status = GAP_OK
        logs["gap_status"] = status
        self.epoch_history["gap_status"].append(status)
        self._report(status, reason and f"{reason} at epoch {epoch + 1}")

    def _report(self, status, reason):
        changed = status != self.status
        self.status = status
        if status == GAP_OK:
            return
        kind = "collapse" if status == GAP_COLLAPSE else "blow-up"
        message = f"EnergyGapMonitor: {kind}: {reason}."
        if self.stop_on_failure:
            _stop(self.model, message + " Training stopped (stop_on_failure).")
            warnings.warn(self.model.stop_reason, RuntimeWarning, stacklevel=2)
        elif changed:
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    def get_config(self):
        return {
            "collapse_tol": self.collapse_tol,
            "patience": self.patience,
            "blowup_threshold": self.blowup_threshold,
            "growth_factor": self.growth_factor,
            "stop_on_failure": self.stop_on_failure,
            "per_batch": self.per_batch,
        }


# ------------------------------------------------------------- Lipschitz
class LipschitzViolationError(RuntimeError):
    """The energy's Lipschitz bound exceeds ``k_coef_lip`` beyond the tolerance."""


def _check_probe_points(points, sample_shape):
    points = np.asarray(points, dtype=np.float32)
    if points.ndim < 2 or tuple(points.shape[1:]) != tuple(sample_shape):
        raise ValueError(
            f"probe_points have shape {points.shape}; expected (n, "
            f"{', '.join(map(str, sample_shape))})"
        )
    if not np.all(np.isfinite(points)):
        raise ValueError("probe_points contain NaN or Inf values")
    return points


def lipschitz_report(
    model,
    probe_points=None,
    num_points: int = DEFAULT_NUM_POINTS,
    ascent_steps: int = DEFAULT_ASCENT_STEPS,
    seed: int = 0,
) -> dict:
    r"""Upper and lower bounds of the Lipschitz constant of ``E = k f``.

    Refreshes the constraints (``model.refresh_constraints()``) so that ``wbar``,
    the weights used at inference, match the current kernels, then computes

    - ``lip_upper`` :math:`= k \cdot` :func:`~deel_ebm.certificates.\
lipschitz_upper_bound` (layer-wise product on the inference weights);
    - ``lip_lower`` :math:`= \max \|\nabla_x E\|` and difference quotients at up to
      ``num_points`` replay-buffer states (where training chains live), the
      ``probe_points``, and along ``ascent_steps`` steps of gradient ascent on
      :math:`\|\nabla_x E\|` (:func:`~deel_ebm.certificates.\
empirical_lipschitz_lower_bound`).

    Honest numbers, not targets: an unconstrained network reports its real bound,
    and deel-lip's ``SpectralConv2D`` can have an operator norm slightly above 1 on
    small images (its zero-padding correction is a heuristic; about 1.08 on 8×8
    inputs was measured), so a Lipschitz convnet may report ``lip_upper`` a few
    percent above ``k``.

    Args:
        model: an :class:`~deel_ebm.EnergyModel`.
        probe_points: optional array ``(m, *sample_shape)`` added to the points.
        num_points: number of buffer states used (>= 1).
        ascent_steps: gradient-ascent steps of the lower bound (>= 0).
        seed: seed of the choice of buffer states.

    Returns:
        ``{"lip_upper": float, "lip_lower": float, "k_coef_lip": float}``.
    """
    num_points = _positive("num_points", num_points, integer=True)
    model.refresh_constraints()
    k = float(model.k_coef_lip)
    upper = k * certificates.lipschitz_upper_bound(model.network)
    storage = model.buffer.storage.numpy()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(storage), min(num_points, len(storage)), replace=False)
    points = storage[np.sort(rows)]
    if probe_points is not None:
        points = np.concatenate(
            [points, _check_probe_points(probe_points, model.sample_shape)]
        )
    lower = certificates.empirical_lipschitz_lower_bound(
        model.network, points, k_coef_lip=k, ascent_steps=ascent_steps, seed=seed
    )
    return {"lip_upper": float(upper), "lip_lower": float(lower), "k_coef_lip": k}


@keras.utils.register_keras_serializable(package="deel_ebm")
class LipschitzCertificate(keras.callbacks.Callback):
    r"""Checks during training that the energy is ``k_coef_lip``-Lipschitz.

    At each epoch end (and every ``every_n_batches`` batches if set) runs
    :func:`lipschitz_report` and logs ``lip_upper`` (certified upper bound of
    :math:`\mathrm{Lip}(E)` on the inference weights), ``lip_lower`` (empirical lower
    bound), ``k_coef_lip`` and ``lip_violation`` (1 when either bound exceeds
    :math:`k(1 + \mathrm{tol})`, else 0). On a violation, ``on_violation="flag"``
    warns once per ``fit`` and keeps training; ``"raise"`` raises
    :class:`LipschitzViolationError`, which ends ``fit``. Every report is kept in
    :attr:`history`.

    Works on unconstrained networks too (an ablation): both bounds are reported
    and the upper one then usually exceeds ``k``. On Lipschitz convnets
    ``lip_upper`` can exceed ``k`` by a few percent (see :func:`lipschitz_report`):
    the certificate reports it rather than hiding it; raise ``tol`` if you accept
    it. Refreshing the constraints runs one extra power iteration in each deel-lip
    layer, a negligible change of the training trajectory.

    Args:
        every_n_batches: also check every N training batches (None: epochs only).
        tol: relative tolerance on ``k`` (>= 0).
        on_violation: ``"flag"`` or ``"raise"``.
        probe_points: optional array ``(m, *sample_shape)`` of extra points for
            the lower bound (e.g. training data).
        ascent_steps: gradient-ascent steps of the lower bound.
        num_points: number of replay-buffer states used for the lower bound.
        seed: seed of the choice of buffer states.

    Example:
        >>> cert = LipschitzCertificate(tol=1e-3, on_violation="raise")
        >>> history = model.fit(x, epochs=3, callbacks=[cert])
        >>> history.history["lip_upper"][-1] <= model.k_coef_lip * (1 + 1e-3)
        True
    """

    def __init__(
        self,
        every_n_batches: int | None = None,
        tol: float = DEFAULT_LIP_TOL,
        on_violation: str = "flag",
        probe_points=None,
        ascent_steps: int = DEFAULT_ASCENT_STEPS,
        num_points: int = DEFAULT_NUM_POINTS,
        seed: int = 0,
    ):
        super().__init__()
        self.every_n_batches = _positive(
            "every_n_batches", every_n_batches, integer=True, allow_none=True
        )
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(f"tol must be a number >= 0, got {tol!r}")
        self.tol = float(tol)
        if on_violation not in VIOLATION_MODES:
            raise ValueError(
                f"on_violation must be one of {VIOLATION_MODES}, got {on_violation!r}"
            )
        self.on_violation = on_violation
        self.probe_points = None
        if probe_points is not None:
            self.probe_points = np.asarray(probe_points, dtype=np.float32)
        if int(ascent_steps) != ascent_steps or ascent_steps < 0:
            raise ValueError(f"ascent_steps must be an int >= 0, got {ascent_steps!r}")
        self.ascent_steps = int(ascent_steps)
        self.num_points = _positive("num_points", num_points, integer=True)
        self.seed = int(seed)
        self.history = []

    def on_train_begin(self, logs=None):
        if self.probe_points is not None:
            _check_probe_points(self.probe_points, self.model.sample_shape)
        self._warned = False
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.every_n_batches and (batch + 1) % self.every_n_batches == 0:
            self._check(logs, f"epoch {self._epoch + 1}, batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, f"epoch {epoch + 1}")

    def _check(self, logs, where):
        report = lipschitz_report(
            self.model,
            self.probe_points,
            self.num_points,
            self.ascent_steps,
            self.seed,
        )
        limit = report["k_coef_lip"] * (1.0 + self.tol)
        violation = max(report["lip_upper"], report["lip_lower"]) > limit
        report["lip_violation"] = int(violation)
        self.history.append({"where": where, **report})
        if logs is not None:
            logs.update(report)
        if not violation:
            return
        message = (
            f"LipschitzCertificate at {where}: the energy is not certified "
            f"{report['k_coef_lip']:g}-Lipschitz: upper bound {report['lip_upper']:.6g}"
            f", empirical lower bound {report['lip_lower']:.6g}, limit k(1 + tol) = "
            f"{limit:.6g}"
        )
        if not self.model.is_lipschitz:
            message += f" (unconstrained layers: {self.model.unconstrained_layers})"
        if self.on_violation == "raise":
            raise LipschitzViolationError(message)
        if not self._warned:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self._warned = True

    def get_config(self):
        return {
            "every_n_batches": self.every_n_batches,
            "tol": self.tol,
            "on_violation": self.on_violation,
            "probe_points": None
            if self.probe_points is None
            else self.probe_points.tolist(),
            "ascent_steps": self.ascent_steps,
            "num_points": self.num_points,
            "seed": self.seed,
        }


# ------------------------------------------------------------- samples
@keras.utils.register_keras_serializable(package="deel_ebm")
class SampleSnapshot(keras.callbacks.Callback):
    """Draws samples every few epochs and saves a picture of them.

    For 2-D data the picture is the model's density on a grid over ``domain``
    with the samples on top (:func:`~deel_ebm.plotting.plot_landscape`); for images
    ``(h, w, 1 or 3)`` it is a grid of samples
    (:func:`~deel_ebm.plotting.plot_image_grid`, values mapped from the buffer's
    domain). The PNG goes to ``folder/samples_epoch0001.png`` ... and, with
    ``log_dir``, into a TensorBoard image summary ``samples`` under
    ``log_dir/samples`` (step = epoch number, from 1). The mean energy of the
    samples is logged as ``sample_energy``. Chains start from the buffer's prior
    with seed ``epoch + 1``: snapshots are reproducible and do not change the
    training's random stream.

    Args:
        every_n_epochs: period in epochs (>= 1).
        folder: directory for the PNG files (created if needed).
        num_samples: number of chains.
        num_steps: chain length (default: the model sampler's).
        domain: ``(low, high)`` plotted for 2-D data (default: the buffer's domain).
        log_dir: TensorBoard log directory.

    Raises:
        ValueError: when neither ``folder`` nor ``log_dir`` is given, on bad
            numbers, or (at the start of training) for samples that are neither
            2-D points nor images.

    Example:
        >>> snap = SampleSnapshot(every_n_epochs=5, folder="runs/samples",
        ...                       log_dir="runs/tb")
        >>> model.fit(x, epochs=20, callbacks=[snap])
        >>> snap.paths[-1]        # PosixPath('runs/samples/samples_epoch0020.png')
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        folder=None,
        num_samples: int = DEFAULT_NUM_SAMPLES,
        num_steps: int | None = None,
        domain=None,
        log_dir=None,
    ):
        super().__init__()
        if folder is None and log_dir is None:
            raise ValueError("SampleSnapshot needs a folder or a log_dir, got neither")
        self.every_n_epochs = _positive("every_n_epochs", every_n_epochs, integer=True)
        self.folder = None if folder is None else Path(folder)
        self.num_samples = _positive("num_samples", num_samples, integer=True)
        self.num_steps = num_steps
        if num_steps is not None and (
            isinstance(num_steps, bool)
            or not isinstance(num_steps, numbers.Integral)
            or num_steps < 0
        ):
            raise ValueError(f"num_steps must be an integer >= 0, got {num_steps!r}")
        if domain is not None:
            low, high = (float(v) for v in domain)
            if not low < high:
                raise ValueError(f"domain must satisfy low < high, got {domain!r}")
            domain = (low, high)
        self.domain = domain
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.paths = []
        self._writer = None

    def on_train_begin(self, logs=None):
        shape = tuple(self.model.sample_shape)
        if shape == (2,):
            self._kind = "2d"
        elif len(shape) == 3 and shape[-1] in (1, 3):
            self._kind = "image"
        else:
            raise ValueError(
                f"SampleSnapshot draws 2-D points or images (h, w, 1|3); the model's "
                f"samples have shape {shape}"
            )
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / "samples"))

    def _figure(self, samples):
        if self._kind == "2d":
            domain = self.domain or self.model.buffer.domain
            return plotting.plot_landscape(
                lambda x: self.model.energy(np.asarray(x, np.float32)).numpy(),
                domain=domain,
                resolution=SNAPSHOT_RESOLUTION,
                samples=samples,
                title=f"epoch {self._step}",
            )
        return plotting.plot_image_grid(
            samples, value_range=self.model.buffer.domain, title=f"epoch {self._step}"
        )

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        self._step = epoch + 1
        samples = self.model.sample(
            self.num_samples, num_steps=self.num_steps, seed=self._step
        )
        energy = float(tf.reduce_mean(self.model.energy(samples)))
        png = io.BytesIO()
        fig = self._figure(samples.numpy())
        try:
            fig.savefig(
                png, format="png", dpi=plotting.DEFAULT_DPI, bbox_inches="tight"
            )
        finally:
            plt.close(fig)
        png = png.getvalue()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"samples_epoch{self._step:04d}.png"
            path.write_bytes(png)
            self.paths.append(path)
        if self._writer is not None:
            image = tf.image.decode_png(png, channels=4)[None]
            with self._writer.as_default():
                tf.summary.image("samples", image, step=self._step)
            self._writer.flush()
        if logs is not None:
            logs["sample_energy"] = energy

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        return {
            "every_n_epochs": self.every_n_epochs,
            "folder": None if self.folder is None else str(self.folder),
            "num_samples": self.num_samples,
            "num_steps": self.num_steps,
            "domain": None if self.domain is None else list(self.domain),
            "log_dir": None if self.log_dir is None else str(self.log_dir),
        }


# ------------------------------------------------------------- divergence
def _optimizer_variables(optimizer):
    variables = optimizer.variables
    if callable(variables) and not isinstance(variables, list):  # legacy optimizers
        variables = variables()
    return list(variables)


def _get_lr(optimizer):
    return float(keras.backend.get_value(optimizer.learning_rate))


def _uses_schedule(optimizer):
    schedule = keras.optimizers.schedules.LearningRateSchedule
    lr = getattr(optimizer, "_learning_rate", None)
    if lr is None and hasattr(optimizer, "_get_hyper"):  # legacy optimizers
        lr = optimizer._get_hyper("learning_rate")
    return isinstance(lr, schedule)


@keras.utils.register_keras_serializable(package="deel_ebm")
class DivergenceGuard(keras.callbacks.Callback):
    r"""Rolls training back to the last good state when it diverges, then retries.

    Keeps in memory a snapshot of the last good state: every model weight (network
    kernels and cached constrained weights, sampler step size, replay-buffer
    storage ...) and every optimizer variable (step counter, moments). It is taken
    when training starts, at each epoch end whose logged energies are finite (and
    below ``energy_limit``), and every ``every_n_batches`` good batches if set.

    A batch *diverges* when its loss or energies are not finite, or when
    :math:`\max(|\bar E^+|, |\bar E^-|)` exceeds ``energy_limit``. The guard then
    restores the snapshot, multiplies the sampler's ``step_size`` by
    ``step_size_factor`` and the optimizer's learning rate by ``lr_factor`` (each
    applied to the value in use when the failure happened, so successive
    recoveries compound), and training continues. At the divergence after
    ``max_attempts`` recoveries it restores the snapshot one last time and stops
    training; ``model.stop_reason`` says what happened. Recoveries are listed in
    :attr:`events`; epoch logs get ``guard_recoveries``, ``sampler_step_size`` and
    ``learning_rate``.

    Restoring the optimizer's step counter replays the same training seeds: the
    retry differs from the failed attempt only by the smaller step sizes.

    The model's built-in non-finite-loss stop runs after user callbacks and would
    end the epoch after a recovery: the guard cancels that stop at the epoch end
    (``EnergyModel.fit`` skips the built-in stop when a callback has
    ``handles_non_finite = True``, and the guard then continues within the
    epoch). Put the guard first in ``callbacks=`` (before ``EarlyStopping`` and
    loggers).

    Args:
        max_attempts: number of recoveries allowed in one ``fit`` (>= 0).
        step_size_factor: factor in (0, 1] applied to the sampler's step size.
        lr_factor: factor in (0, 1] applied to the learning rate (must be 1 when
            the optimizer uses a ``LearningRateSchedule``).
        energy_limit: optional bound on the mean energies (> 0).
        every_n_batches: also snapshot every N good batches (None: epochs only).

    Example:
        >>> guard = DivergenceGuard(max_attempts=3, energy_limit=1e3)
        >>> model.fit(x, epochs=10, callbacks=[guard])
        >>> guard.events     # [] when nothing went wrong
        >>> model.stop_reason  # None unless the guard gave up
    """

    #: tells :meth:`deel_ebm.EnergyModel.fit` not to add its own non-finite stop
    handles_non_finite = True

    def __init__(
        self,
        max_attempts: int = 3,
        step_size_factor: float = 0.5,
        lr_factor: float = 0.5,
        energy_limit: float | None = None,
        every_n_batches: int | None = None,
    ):
        super().__init__()
        if (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, numbers.Integral)
            or max_attempts < 0
        ):
            raise ValueError(
                f"max_attempts must be an integer >= 0, got {max_attempts!r}"
            )
        self.max_attempts = int(max_attempts)
        self.step_size_factor = _factor("step_size_factor", step_size_factor)
        self.lr_factor = _factor("lr_factor", lr_factor)
        self.energy_limit = _positive("energy_limit", energy_limit, allow_none=True)
        self.every_n_batches = _positive(
            "every_n_batches", every_n_batches, integer=True, allow_none=True
        )
        self.events = []
        self.attempts = 0

    # ----------------------------------------------------------- state
    def _variables(self):
        metric_vars = {id(v) for m in self.model.metrics for v in m.variables}
        weights = [v for v in self.model.weights if id(v) not in metric_vars]
        return weights + _optimizer_variables(self.model.optimizer)

    def _snapshot(self, label):
        variables = self._variables()
        self._saved = (label, variables, [v.numpy().copy() for v in variables])

    def _restore(self):
        label, variables, values = self._saved
        for variable, value in zip(variables, values):
            variable.assign(value)
        return label

    # ----------------------------------------------------------- checks
    def _failure(self, logs):
        if not _finite(logs, ("loss", *_GAP_KEYS)):
            return f"non-finite loss ({logs.get('loss')})"
        if self.energy_limit is not None:
            scale = max(abs(float(logs.get(k, 0.0))) for k in ("e_pos", "e_neg"))
            if scale > self.energy_limit:
                return f"|energy| {scale:.4g} above energy_limit {self.energy_limit:g}"
        return None

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ValueError("DivergenceGuard needs a compiled model")
        if self.lr_factor != 1.0 and _uses_schedule(optimizer):
            raise ValueError(
                f"lr_factor={self.lr_factor} cannot scale a LearningRateSchedule; "
                "use lr_factor=1.0 with a schedule"
            )
        self.events, self.attempts = [], 0
        self._epoch, self._gave_up = 0, False
        self._reset_metrics = self._cancel_stop = self._failed_epoch = False
        self._snapshot("the start of training")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._failed_epoch = False

    def on_train_batch_begin(self, batch, logs=None):
        if self._reset_metrics:  # drop the diverged step from the running means
            self.model.reset_metrics()
            self._reset_metrics = False

    def on_train_batch_end(self, batch, logs=None):
        if self._gave_up:
            return
        reason = self._failure(logs or {})
        if reason is not None:
            self._recover(reason, f"epoch {self._epoch + 1}, batch {batch + 1}")
        elif self.every_n_batches and (batch + 1) % self.every_n_batches == 0:
            self._snapshot(f"epoch {self._epoch + 1}, batch {batch + 1}")

    def _recover(self, reason, where):
        sampler, optimizer = self.model.sampler, self.model.optimizer
        step, lr = float(sampler.step_size.numpy()), _get_lr(optimizer)
        label = self._restore()
        self._failed_epoch = True
        if self.attempts >= self.max_attempts:
            self._gave_up = True
            message = (
                f"DivergenceGuard: {reason} at {where}, after {self.attempts} "
                f"recoveries (max_attempts={self.max_attempts}); restored the state "
                f"of {label} and stopped training. Sampler step_size "
                f"{float(sampler.step_size.numpy()):.4g}, learning rate "
                f"{_get_lr(optimizer):.4g}."
            )
            _stop(self.model, message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            return
        # scale the values in use (the snapshot's if those are not finite)
        step = step if math.isfinite(step) else float(sampler.step_size.numpy())
        lr = lr if math.isfinite(lr) else _get_lr(optimizer)
        new_step, new_lr = step * self.step_size_factor, lr * self.lr_factor
        sampler.step_size.assign(new_step)
        if self.lr_factor != 1.0:
            optimizer.learning_rate = new_lr
        self.attempts += 1
        event = {"where": where, "reason": reason, "restored": label}
        event.update(step_size=new_step, learning_rate=new_lr)
        self.events.append(event)
        self._reset_metrics = self._cancel_stop = True
        warnings.warn(
            f"DivergenceGuard: {reason} at {where}; restored the state of {label}, "
            f"step_size {step:.4g} -> {new_step:.4g}, learning rate {lr:.4g} -> "
            f"{new_lr:.4g} (recovery {self.attempts}/{self.max_attempts}).",
            RuntimeWarning,
            stacklevel=2,
        )

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        if self._cancel_stop and not self._gave_up:
            # the built-in non-finite stop ran after our recovery: undo it
            reason = getattr(model, "stop_reason", None) or ""
            if model.stop_training and reason.startswith("EnergyModel: non-finite"):
                model.stop_training = False
                model.stop_reason = None
            self._cancel_stop = False
        logs = logs if logs is not None else {}
        good = self._failure(logs) is None and not self._reset_metrics
        if good and not self._gave_up:
            self._snapshot(f"the end of epoch {epoch + 1}")
        logs["guard_recoveries"] = self.attempts
        logs["sampler_step_size"] = float(model.sampler.step_size.numpy())
        logs["learning_rate"] = _get_lr(model.optimizer)

    def get_config(self):
        return {
            "max_attempts": self.max_attempts,
            "step_size_factor": self.step_size_factor,
            "lr_factor": self.lr_factor,
            "energy_limit": self.energy_limit,
            "every_n_batches": self.every_n_batches,
        }


# ------------------------------------------------------------- adaptor
@keras.utils.register_keras_serializable(package="deel_ebm")
class NetworkCallback(keras.callbacks.Callback):
    """Runs a Keras callback on the energy network ``model.network``.

    deel-lip's ``CondenseCallback`` walks ``model.layers`` and ``MonitorCallback``
    calls ``model.get_layer``: on an :class:`~deel_ebm.EnergyModel` they see the
    network as one nested layer and do nothing (Condense) or fail (Monitor). This
    adaptor gives the wrapped callback ``model.network`` as its model and forwards
    every hook; ``stop_training`` set by the wrapped callback stops the fit.

    Args:
        callback: a ``keras.callbacks.Callback``.

    Example:
        >>> from deel.lip.callbacks import CondenseCallback, MonitorCallback
        >>> model.fit(x, epochs=3, callbacks=[
        ...     NetworkCallback(CondenseCallback(on_epoch=True)),
        ...     NetworkCallback(MonitorCallback(["spectral_dense"], "runs/tb")),
        ... ])
    """

    def __init__(self, callback):
        super().__init__()
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(f"callback must be a Keras callback, got {callback!r}")
        self.callback = callback

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(getattr(model, "network", model))

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)

    def _forward(self, name, *args):
        getattr(self.callback, name)(*args)
        network = self.callback.model
        if getattr(network, "stop_training", False):  # the wrapped callback stops
            network.stop_training = False
            self.model.stop_training = True


def _forwarder(name):
    def hook(self, *args):
        self._forward(name, *args)

    hook.__name__ = name
    return hook


for _hook in (
    "on_train_begin on_train_end on_epoch_begin on_epoch_end "
    "on_train_batch_begin on_train_batch_end on_test_begin on_test_end "
    "on_test_batch_begin on_test_batch_end on_predict_begin on_predict_end "
    "on_predict_batch_begin on_predict_batch_end"
).split():
    setattr(NetworkCallback, _hook, _forwarder(_hook))
del _hook

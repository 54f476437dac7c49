r"""EnergyGapMonitor: the contrastive gap and the energies, collapse and blow-up."""

from __future__ import annotations

import math
import warnings

from deel_ebm._backend import keras
from deel_ebm._checks import check_positive
from deel_ebm.callbacks._base import ConfigMixin, stop

__all__ = [
    "EnergyGapMonitor",
    "GAP_OK",
    "GAP_COLLAPSE",
    "GAP_BLOWUP",
    "GAP_KEYS",
    "GROWTH_MIN_SCALE",
]

GAP_OK, GAP_COLLAPSE, GAP_BLOWUP = 0, 1, 2
DEFAULT_COLLAPSE_TOL = 1e-3
DEFAULT_PATIENCE = 3
DEFAULT_BLOWUP_THRESHOLD = 1e4
DEFAULT_GROWTH_FACTOR = 2.0
#: Below this energy scale (nats) a fast relative growth is normal early training.
GROWTH_MIN_SCALE = 1.0
#: the :class:`~deel_ebm.EnergyModel` logs read by the monitor
GAP_KEYS = ("energy_gap", "e_pos", "e_neg")


@keras.utils.register_keras_serializable(package="deel_ebm")
class EnergyGapMonitor(ConfigMixin, keras.callbacks.Callback):
    r"""Tracks the energy gap and flags collapse or blow-up of training.

    Reads ``energy_gap`` (:math:`\bar E(x^-) - \bar E(x^+)`), ``e_pos`` and
    ``e_neg`` from the :class:`~deel_ebm.EnergyModel` logs. Per batch it records
    the values of each step (recovered from Keras' running means, using the
    model's metric counts when it has them, so a metric reset is handled) in
    :attr:`batch_history`; per epoch the epoch means in :attr:`epoch_history`.

    Rule, applied at each epoch end (``gap_status`` written into the logs), with
    the scale :math:`s = \max(|E^+|, |E^-|, |gap|)`:

    - **blow-up** (2): a non-finite value, or :math:`s >` ``blowup_threshold``, or
      :math:`s` growing by at least ``growth_factor`` per epoch for ``patience``
      consecutive epochs (growth counts only from :math:`s \ge`
      :data:`GROWTH_MIN_SCALE`: small energies move fast early in training);
    - **collapse** (1): :math:`|gap| <` ``collapse_tol`` for ``patience``
      consecutive epochs: positives and negatives look the same to the energy
      (flat landscape, or chains stuck on the data). A well-mixed PCD run also
      drives the gap towards 0, so keep ``collapse_tol`` small;
    - otherwise ok (0).

    With ``per_batch=True`` the non-finite and threshold tests are also applied to
    every step's values and ``gap_status`` is written into the batch logs. A
    change of status warns (``RuntimeWarning``); with ``stop_on_failure`` training
    stops at the first collapse or blow-up and ``model.stop_reason`` says why.

    Args:
        collapse_tol: gap magnitude (energy units) below which an epoch counts as
            collapsed (> 0).
        patience: consecutive epochs needed for collapse or geometric growth (>= 1).
        blowup_threshold: energy magnitude considered a blow-up (> 0).
        growth_factor: per-epoch growth ratio of the energy scale counted as
            geometric growth (> 1).
        stop_on_failure: stop training on collapse or blow-up.
        per_batch: also check and log every batch.

    Raises:
        TypeError / ValueError: on a bad argument (named in the message);
            ValueError during training when the logs lack ``energy_gap``,
            ``e_pos`` or ``e_neg`` (a model that is not an ``EnergyModel``).

    Example:
        >>> monitor = EnergyGapMonitor(collapse_tol=1e-3, patience=3)
        >>> history = model.fit(x, batch_size=32, epochs=2, callbacks=[monitor],
        ...                     verbose=0)
        >>> history.history["gap_status"]      # 0: healthy
        [0, 0]
        >>> len(monitor.batch_history["energy_gap"])  # one value per step
        4
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
        self.collapse_tol = check_positive("collapse_tol", collapse_tol)
        self.patience = check_positive("patience", patience, integer=True)
        self.blowup_threshold = check_positive("blowup_threshold", blowup_threshold)
        self.growth_factor = check_positive("growth_factor", growth_factor)
        if self.growth_factor <= 1.0:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor!r}")
        self.stop_on_failure = bool(stop_on_failure)
        self.per_batch = bool(per_batch)
        self._reset()

    def _reset(self):
        self.status = GAP_OK
        self.batch_history = {key: [] for key in (*GAP_KEYS, "gap_status")}
        self.epoch_history = {key: [] for key in (*GAP_KEYS, "gap_status")}
        self._collapse_count = 0
        self._growth_count = 0
        self._previous_scale = None
        self._previous_batch = None
        self._epoch = 0
        self._stopped = False

    def on_train_begin(self, logs=None):
        self._reset()
        # the running-mean tracker of the gap, if the model exposes one: its count
        # is the number of steps behind the logged means (exact after a reset)
        metrics = getattr(self.model, "metrics", None) or []
        self._tracker = next(
            (m for m in metrics if m.name == "energy_gap" and hasattr(m, "count")),
            None,
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._previous_batch = None

    def _read(self, logs):
        missing = [key for key in GAP_KEYS if key not in logs]
        if missing:
            raise ValueError(
                f"EnergyGapMonitor needs {missing} in the logs: use it with a "
                "deel_ebm.EnergyModel"
            )
        return {key: float(logs[key]) for key in GAP_KEYS}

    def _steps_in_means(self, batch):
        tracker = getattr(self, "_tracker", None)
        if tracker is not None:
            return int(tracker.count.numpy())
        return batch + 1  # one step per batch: batch is the last step's index

    @staticmethod
    def _scale(values):
        return max(abs(v) for v in values.values())

    def _blown_up(self, values):
        scale = self._scale(values)
        if not math.isfinite(scale):
            return "non-finite energies"
        if scale > self.blowup_threshold:
            return (
                f"|energy| {scale:.4g} above blowup_threshold {self.blowup_threshold}"
            )
        return None

    def on_train_batch_end(self, batch, logs=None):
        logs = logs if logs is not None else {}
        means = self._read(logs)
        count = self._steps_in_means(batch)
        previous = self._previous_batch
        if (
            previous is None
            or count <= previous[0]  # the running means were reset
            or not all(math.isfinite(v) for v in previous[1].values())
        ):
            values = means
        else:
            prev_count, prev = previous
            span = count - prev_count
            values = {
                k: (count * means[k] - prev_count * prev[k]) / span for k in GAP_KEYS
            }
        self._previous_batch = (count, means)
        for key in GAP_KEYS:
            self.batch_history[key].append(values[key])
        status = GAP_OK
        if self.per_batch:
            reason = self._blown_up(values)
            status = GAP_BLOWUP if reason else GAP_OK
            logs["gap_status"] = status
            if reason:
                where = f"epoch {self._epoch + 1}, batch {batch + 1}"
                self._report(status, f"{reason} at {where}")
        self.batch_history["gap_status"].append(status)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        values = self._read(logs)
        for key in GAP_KEYS:
            self.epoch_history[key].append(values[key])
        reason = self._blown_up(values)
        scale = self._scale(values)
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
            if self._stopped:  # keep the first reason (e.g. the batch that blew up)
                return
            self._stopped = True
            message += " Training stopped (stop_on_failure)."
            stop(self.model, message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        elif changed:
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def get_config(self):
        return {
            "collapse_tol": self.collapse_tol,
            "patience": self.patience,
            "blowup_threshold": self.blowup_threshold,
            "growth_factor": self.growth_factor,
            "stop_on_failure": self.stop_on_failure,
            "per_batch": self.per_batch,
        }

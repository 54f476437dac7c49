r"""DivergenceGuard: roll back to the last good state when training diverges."""

from __future__ import annotations

import math
import warnings

from deel_ebm._backend import keras
from deel_ebm._checks import check_count, check_factor, check_positive
from deel_ebm.callbacks._base import ConfigMixin, all_finite, stop
from deel_ebm.callbacks._energy_gap import GAP_KEYS

__all__ = ["DivergenceGuard"]

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_STEP_SIZE_FACTOR = 0.5
DEFAULT_LR_FACTOR = 0.5


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
class DivergenceGuard(ConfigMixin, keras.callbacks.Callback):
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

    :class:`~deel_ebm.EnergyModel` adds its own non-finite-loss stop after the
    user callbacks; it ends the epoch in which a recovery happened. The guard
    cancels that stop at the epoch end, so training goes on with the next epoch
    (the step after the failed one is not lost when ``EnergyModel.fit`` leaves out
    its stop for callbacks with ``handles_non_finite = True``). Put the guard
    first in ``callbacks=`` (before ``EarlyStopping`` and loggers).

    Args:
        max_attempts: number of recoveries allowed in one ``fit`` (>= 0).
        step_size_factor: factor in (0, 1] applied to the sampler's step size.
        lr_factor: factor in (0, 1] applied to the learning rate (must be 1 when
            the optimizer uses a ``LearningRateSchedule``).
        energy_limit: optional bound on the mean energies (> 0).
        every_n_batches: also snapshot every N good batches (None: epochs only).

    Raises:
        TypeError / ValueError: on a bad argument (named in the message); at the
            start of training, for a model without optimizer or a
            ``LearningRateSchedule`` with ``lr_factor != 1``.

    Example:
        >>> guard = DivergenceGuard(max_attempts=3, energy_limit=1e3)
        >>> history = model.fit(x, epochs=2, callbacks=[guard], verbose=0)
        >>> guard.events     # nothing went wrong
        []
        >>> model.stop_reason is None  # None unless the guard gave up
        True
    """

    #: tells :meth:`deel_ebm.EnergyModel.fit` not to add its own non-finite stop
    handles_non_finite = True

    def __init__(
        self,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        step_size_factor: float = DEFAULT_STEP_SIZE_FACTOR,
        lr_factor: float = DEFAULT_LR_FACTOR,
        energy_limit: float | None = None,
        every_n_batches: int | None = None,
    ):
        super().__init__()
        self.max_attempts = check_count("max_attempts", max_attempts)
        self.step_size_factor = check_factor("step_size_factor", step_size_factor)
        self.lr_factor = check_factor("lr_factor", lr_factor)
        self.energy_limit = check_positive(
            "energy_limit", energy_limit, allow_none=True
        )
        self.every_n_batches = check_positive(
            "every_n_batches", every_n_batches, integer=True, allow_none=True
        )
        self.events = []
        self.attempts = 0
        self.stop_message = None

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
        if not all_finite(logs, ("loss", *GAP_KEYS)):
            values = ", ".join(
                f"{key}={logs[key]}" for key in ("loss", *GAP_KEYS) if key in logs
            )
            return f"non-finite values ({values})"
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
        self.events, self.attempts, self.stop_message = [], 0, None
        self._epoch = 0
        self._reset_metrics = self._cancel_stop = False
        self._snapshot("the start of training")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._reset_metrics:  # drop the diverged step from the running means
            self.model.reset_metrics()
            self._reset_metrics = False

    def on_train_batch_end(self, batch, logs=None):
        if self.stop_message is not None:
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
        if self.attempts >= self.max_attempts:
            self.stop_message = (
                f"DivergenceGuard: {reason} at {where}, after {self.attempts} "
                f"recoveries (max_attempts={self.max_attempts}); restored the state "
                f"of {label} and stopped training. Sampler step_size "
                f"{float(sampler.step_size.numpy()):.4g}, learning rate "
                f"{_get_lr(optimizer):.4g}."
            )
            stop(self.model, self.stop_message)
            warnings.warn(self.stop_message, RuntimeWarning, stacklevel=2)
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
        if self.stop_message is not None:
            # callbacks after the guard (the model's own non-finite stop) may have
            # replaced the reason in the same batch: the guard's message is the one
            model.stop_reason = self.stop_message
        elif self._cancel_stop:
            # the built-in non-finite stop ran after our recovery: undo it
            reason = getattr(model, "stop_reason", None) or ""
            if model.stop_training and reason.startswith("EnergyModel: non-finite"):
                model.stop_training = False
                model.stop_reason = None
        self._cancel_stop = False
        logs = logs if logs is not None else {}
        good = self._failure(logs) is None and not self._reset_metrics
        if good and self.stop_message is None:
            self._snapshot(f"the end of epoch {epoch + 1}")
        logs["guard_recoveries"] = self.attempts
        logs["sampler_step_size"] = float(model.sampler.step_size.numpy())
        logs["learning_rate"] = _get_lr(model.optimizer)

    def on_train_end(self, logs=None):
        if self.stop_message is not None:
            self.model.stop_reason = self.stop_message

    def get_config(self):
        return {
            "max_attempts": self.max_attempts,
            "step_size_factor": self.step_size_factor,
            "lr_factor": self.lr_factor,
            "energy_limit": self.energy_limit,
            "every_n_batches": self.every_n_batches,
        }

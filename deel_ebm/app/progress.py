"""What a run shows while it trains, and what stops it.

- :class:`TimeBudget` stops training when a wall-time budget is spent.
- :class:`Progress` records each epoch's step and elapsed time (for
  ``history.csv``) and prints a line with the step, the epoch, the time and the
  budget at most every few seconds; :meth:`Progress.outcome` says why training
  ended.
- :func:`interrupt_stops_training` turns a first Ctrl-C into a clean stop after
  the current step (the run is then saved as usual, and can be resumed); a
  second Ctrl-C aborts.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

from deel_ebm import keras

__all__ = ["TimeBudget", "Progress", "InterruptFlag", "interrupt_stops_training"]

#: the metrics shown in a progress line, when logged
SHOWN = ("loss", "energy_gap", "e_pos", "e_neg", "grad_norm", "ess", "acceptance")


class TimeBudget(keras.callbacks.Callback):
    """Stops training once ``minutes`` of wall time are spent (checked per batch)."""

    def __init__(self, minutes: float):
        super().__init__()
        if not minutes > 0:
            raise ValueError(f"minutes must be positive, got {minutes}")
        self.minutes = float(minutes)
        self.seconds = 60.0 * minutes
        self.start = None
        self.stopped = False

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True
            self.stopped = True


class InterruptFlag(keras.callbacks.Callback):
    """Stops training after the current step once :attr:`raised` is set (by the
    Ctrl-C handler of :func:`interrupt_stops_training`)."""

    def __init__(self):
        super().__init__()
        self.raised = False

    def on_train_batch_end(self, batch, logs=None):
        if self.raised:
            self.model.stop_training = True


@contextlib.contextmanager
def interrupt_stops_training(log=print):
    """Within the block, a first Ctrl-C sets the yielded flag's ``raised`` (pass
    the flag to ``fit`` as a callback); a second one raises KeyboardInterrupt.
    Outside the main thread signals cannot be caught: the flag is then inert."""
    flag = InterruptFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.raised:
            raise KeyboardInterrupt
        flag.raised = True
        log(
            "interrupted: stopping after this step and saving the run (Ctrl-C again "
            "to abort without saving)"
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class Progress(keras.callbacks.Callback):
    """Per-epoch step and elapsed time, and a progress line at most every
    ``every`` seconds (``None``: never); ``total_steps`` and ``budget`` (a
    :class:`TimeBudget`) are shown when known.

    Attributes:
        rows: one ``{"epoch", "step", "elapsed_seconds"}`` per finished epoch.
    """

    def __init__(
        self,
        total_steps=None,
        budget: TimeBudget | None = None,
        log=print,
        every: float | None = 10.0,
        elapsed_offset: float = 0.0,
    ):
        super().__init__()
        self.total_steps, self.budget, self.log, self.every = (
            total_steps,
            budget,
            log,
            every,
        )
        self.elapsed_offset = float(elapsed_offset)
        self.rows = []
        self.t0 = None
        self.first_step = 0
        self.last_print = -float("inf")

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        self.t0 = time.perf_counter()
        self.first_step = self._step()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def on_epoch_end(self, epoch, logs=None):
        elapsed = self.elapsed()
        step = self._step()
        self.rows.append(
            {
                "epoch": epoch + 1,
                "step": step,
                "elapsed_seconds": self.elapsed_offset + elapsed,
            }
        )
        if self.every is None or elapsed - self.last_print < self.every:
            return
        self.last_print = elapsed
        self.log(self.line(step, elapsed, logs or {}))

    def line(self, step, elapsed, logs) -> str:
        of = f"/{self.total_steps}" if self.total_steps else ""
        clock = f"{elapsed:.0f} s"
        if self.budget is not None:
            clock += f" of {self.budget.seconds:.0f} s budget"
        shown = " ".join(f"{k}={logs[k]:.3g}" for k in SHOWN if k in logs)
        return f"step {step}{of} [{clock}] {shown}".rstrip()

    def outcome(self, interrupted=False, stop_reason=None) -> str:
        """Why training ended, in one line."""
        step = self._step()
        at = f"at step {step}"
        if self.total_steps:
            at += f" of {self.total_steps} planned"
        if stop_reason:
            return f"stopped {at}: {stop_reason}"
        if interrupted:
            return f"stopped {at}: interrupted (Ctrl-C)"
        if self.budget is not None and self.budget.stopped:
            spent = f"the time budget of {self.budget.minutes:g} min was spent"
            return f"stopped {at}: {spent}"
        return f"finished: {step - self.first_step} steps in {self.elapsed():.0f} s"

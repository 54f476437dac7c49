r"""LipschitzCertificate: certified upper and empirical lower bounds of Lip(E)."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from deel_ebm import certificates
from deel_ebm._backend import keras
from deel_ebm._checks import check_count, check_positive
from deel_ebm.callbacks._base import ConfigMixin

__all__ = ["LipschitzCertificate", "LipschitzViolationError", "lipschitz_report"]

DEFAULT_LIP_TOL = 1e-3
DEFAULT_POWER_TOL = certificates.DEFAULT_TOL
DEFAULT_ASCENT_STEPS = 10
DEFAULT_NUM_POINTS = 256
VIOLATION_MODES = ("flag", "raise")


class LipschitzViolationError(RuntimeError):
    """The energy's Lipschitz bound exceeds ``k_coef_lip`` beyond the tolerance."""


def _as_probe_points(points) -> np.ndarray:
    """``points`` as a finite float32 array ``(m, ...)``, m >= 1."""
    try:
        array = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"probe_points must be an array of numbers, got {points!r}"
        ) from err
    if array.ndim < 2 or array.shape[0] < 1:
        raise ValueError(
            f"probe_points must have shape (m >= 1, *sample_shape), got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise ValueError(f"probe_points contain {bad} NaN or Inf values")
    return array


def _check_probe_points(points, sample_shape) -> np.ndarray:
    points = _as_probe_points(points)
    if tuple(points.shape[1:]) != tuple(sample_shape):
        raise ValueError(
            f"probe_points have shape {points.shape}; expected (n, "
            f"{', '.join(map(str, sample_shape))})"
        )
    return points


def _weights_finite(network) -> bool:
    return all(np.all(np.isfinite(w)) for w in network.get_weights())


def lipschitz_report(
    model,
    probe_points=None,
    num_points: int = DEFAULT_NUM_POINTS,
    ascent_steps: int = DEFAULT_ASCENT_STEPS,
    seed: int = 0,
    power_tol: float = DEFAULT_POWER_TOL,
) -> dict:
    r"""Upper and lower bounds of the Lipschitz constant of ``E = k f``.

    Refreshes the constraints (``model.refresh_constraints()``) so that ``wbar``,
    the weights used at inference, match the current kernels, then computes

    - ``lip_upper`` :math:`= k \prod_l \mathrm{Lip}(f_l)`
      (:func:`~deel_ebm.certificates.lipschitz_upper_bound`), per layer on the
      inference weights: exact SVD of the cached ``wbar`` of dense layers (the
      plain ``kernel`` of unconstrained ones), and for convolutions the operator
      norm of the convolution with ``wbar`` (which holds deel-lip's padding
      correction ``_get_coef()``) at the layer's input shape, by power iteration
      stopped at relative tolerance ``power_tol`` and inflated by
      :math:`1 + \mathrm{power\_tol}`;
    - ``lip_lower`` :math:`= \max \|\nabla_x E\|` and difference quotients at up to
      ``num_points`` replay-buffer states (where training chains live), the
      ``probe_points`` (e.g. data), and along ``ascent_steps`` steps of gradient
      ascent on :math:`\|\nabla_x E\|`
      (:func:`~deel_ebm.certificates.empirical_lipschitz_lower_bound`).

    Honest numbers, not targets: an unconstrained network reports its real bound,
    and a single deel-lip ``SpectralConv2D`` can have an operator norm slightly
    above 1 on small images (its zero-padding correction is a heuristic; about
    1.08 on 8×8 inputs was measured), which the bound shows. Non-finite weights
    give ``nan`` for both bounds.

    Args:
        model: an :class:`~deel_ebm.EnergyModel`.
        probe_points: optional array ``(m, *sample_shape)`` added to the points.
        num_points: number of buffer states used (>= 1; with the probe points at
            least 2 points in all).
        ascent_steps: gradient-ascent steps of the lower bound (>= 0).
        seed: seed of the choice of buffer states and of the power iterations.
        power_tol: relative tolerance of the power iterations (> 0).

    Returns:
        ``{"lip_upper": float, "lip_lower": float, "k_coef_lip": float}``.

    Raises:
        TypeError / ValueError: on a bad argument, or fewer than 2 points.
    """
    num_points = check_positive("num_points", num_points, integer=True)
    ascent_steps = check_count("ascent_steps", ascent_steps)
    seed = check_count("seed", seed)
    power_tol = check_positive("power_tol", power_tol)
    probe = None
    if probe_points is not None:
        probe = _check_probe_points(probe_points, model.sample_shape)
    model.refresh_constraints()
    k = float(model.k_coef_lip)
    if not _weights_finite(model.network):
        nan = float("nan")
        return {"lip_upper": nan, "lip_lower": nan, "k_coef_lip": k}
    upper = k * certificates.lipschitz_upper_bound(
        model.network, tol=power_tol, seed=seed
    )
    storage = model.buffer.storage.numpy()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(storage), min(num_points, len(storage)), replace=False)
    points = storage[np.sort(rows)]
    if probe is not None:
        points = np.concatenate([points, probe])
    if len(points) < 2:
        raise ValueError(
            f"the lower bound needs at least 2 points, got {len(points)} (buffer "
            f"capacity {len(storage)}, num_points {num_points}): add probe_points"
        )
    # the model's own energy (E = k f; the marginal energy of a joint model),
    # on the cached constrained weights
    lower = certificates.empirical_lipschitz_lower_bound(
        lambda x: model(x, training=False),
        points,
        ascent_steps=ascent_steps,
        seed=seed,
    )
    return {"lip_upper": float(upper), "lip_lower": float(lower), "k_coef_lip": k}


@keras.utils.register_keras_serializable(package="deel_ebm")
class LipschitzCertificate(ConfigMixin, keras.callbacks.Callback):
    r"""Checks during training that the energy is ``k_coef_lip``-Lipschitz.

    At each epoch end (and every ``every_n_batches`` batches if set) runs
    :func:`lipschitz_report` and logs ``lip_upper`` (certified upper bound of
    :math:`\mathrm{Lip}(E)` on the inference weights), ``lip_lower`` (empirical lower
    bound), ``k_coef_lip`` and ``lip_violation``: 1 when
    :math:`\max(\mathrm{lip\_upper}, \mathrm{lip\_lower}) > k(1 + \mathrm{tol})`
    (or a bound is not finite), else 0. On a violation, ``on_violation="flag"``
    warns once per ``fit`` and keeps training; ``"raise"`` raises
    :class:`LipschitzViolationError`, which ends ``fit``. Every report is kept in
    :attr:`history`.

    Works on unconstrained networks too (an ablation): both bounds are reported
    and the upper one then usually exceeds ``k``. Refreshing the constraints runs
    one extra power iteration in each deel-lip layer, a negligible change of the
    training trajectory. The bounds cost a few SVDs and ``ascent_steps`` gradient
    steps on ``num_points`` points (convolutions: a power iteration each, up to
    a few seconds): prefer epochs to ``every_n_batches``.

    Args:
        every_n_batches: also check every N training batches (None: epochs only).
        tol: relative tolerance on ``k`` (>= 0).
        on_violation: ``"flag"`` or ``"raise"``.
        probe_points: optional array ``(m, *sample_shape)`` of extra points for
            the lower bound (e.g. training data).
        ascent_steps: gradient-ascent steps of the lower bound (>= 0).
        num_points: number of replay-buffer states used for the lower bound.
        seed: seed of the choice of buffer states (>= 0).
        power_tol: relative tolerance of the power iterations of the upper bound
            (> 0); the estimate is inflated by ``1 + power_tol``.

    Raises:
        TypeError / ValueError: on a bad argument (named in the message), and at
            the start of training for probe points of the wrong shape.
        LipschitzViolationError: with ``on_violation="raise"``, on a violation.

    Example:
        >>> cert = LipschitzCertificate(tol=1e-3, on_violation="raise")
        >>> history = model.fit(x, epochs=2, callbacks=[cert], verbose=0)
        >>> max(history.history["lip_upper"]) <= model.k_coef_lip * (1 + 1e-3)
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
        power_tol: float = DEFAULT_POWER_TOL,
    ):
        super().__init__()
        self.every_n_batches = check_positive(
            "every_n_batches", every_n_batches, integer=True, allow_none=True
        )
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
            raise TypeError(f"tol must be a number, got {tol!r}")
        if not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
        self.tol = float(tol)
        if on_violation not in VIOLATION_MODES:
            raise ValueError(
                f"on_violation must be one of {VIOLATION_MODES}, got {on_violation!r}"
            )
        self.on_violation = on_violation
        self.probe_points = None
        if probe_points is not None:
            self.probe_points = _as_probe_points(probe_points)
        self.ascent_steps = check_count("ascent_steps", ascent_steps)
        self.num_points = check_positive("num_points", num_points, integer=True)
        self.seed = check_count("seed", seed)
        self.power_tol = check_positive("power_tol", power_tol)
        self.history = []
        self._warned = False
        self._epoch = 0

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
            self.power_tol,
        )
        limit = report["k_coef_lip"] * (1.0 + self.tol)
        # written so that a nan bound counts as a violation
        certified = max(report["lip_upper"], report["lip_lower"]) <= limit
        certified = certified and all(map(math.isfinite, report.values()))
        report["lip_violation"] = int(not certified)
        self.history.append({"where": where, **report})
        if logs is not None:
            logs.update(report)
        if certified:
            return
        message = (
            f"LipschitzCertificate at {where}: the energy is not certified "
            f"{report['k_coef_lip']:g}-Lipschitz: upper bound {report['lip_upper']:.6g}"
            f", empirical lower bound {report['lip_lower']:.6g}, limit k(1 + tol) = "
            f"{limit:.6g}"
        )
        unconstrained = getattr(self.model, "unconstrained_layers", None)
        if unconstrained:
            message += f" (unconstrained layers: {unconstrained})"
        if not math.isfinite(report["lip_upper"]):
            message += " (the network has non-finite weights)"
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
            "power_tol": self.power_tol,
        }

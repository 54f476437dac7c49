r"""Certified robust classification by a Lipschitz classifier's logit margins.

If the logits ``z = k f(x)`` come from ``f`` 1-Lipschitz as a map to ``R^C``,
each margin ``z_i − z_j`` is ``√2 k``-Lipschitz (``‖e_i − e_j‖ = √2``); if only
each logit is 1-Lipschitz (deel-lip's ``FrobeniusDense`` with disjoint
neurons), ``2k``-Lipschitz. So with ``m`` the gap between the top two logits,
the predicted class cannot change under any ``‖δ‖₂ < m / (c k)``, ``c = √2`` or
2 (:func:`deel_ebm.nets.logit_margin_factor`); the rule of deel-lip's
``CategoricalProvableRobustAccuracy``. A point counts as certified at radius ε
when it is classified correctly and its radius exceeds ε.
"""

from __future__ import annotations

import math

import numpy as np

from deel_ebm._checks import check_positive

__all__ = [
    "certified_margin_radius",
    "certified_robust_accuracy",
    "DEFAULT_ROBUST_RADII",
]

#: the ℓ2 radii at which certified robust accuracy is reported by default
DEFAULT_ROBUST_RADII = (0.1, 0.25, 0.5)


def _logits(logits) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"logits must have shape (n, C) with C >= 2, got {logits.shape}"
        )
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits must be finite")
    return logits


def certified_margin_radius(
    logits, k_coef_lip: float, margin_factor: float = math.sqrt(2.0)
) -> np.ndarray:
    """``(top1 − top2) / (margin_factor · k)`` per row of ``logits = k f(x)``.

    Args:
        logits: ``(n, C)`` logits of a ``k``-scaled 1-Lipschitz classifier.
        k_coef_lip: ``k > 0``.
        margin_factor: Lipschitz constant of a margin of ``f`` (√2 or 2).

    Returns:
        Radii ``(n,)`` (float64, ≥ 0).
    """
    logits = _logits(logits)
    k = check_positive("k_coef_lip", k_coef_lip)
    c = check_positive("margin_factor", margin_factor)
    top = np.sort(logits, axis=1)
    return (top[:, -1] - top[:, -2]) / (c * k)


def certified_robust_accuracy(
    logits,
    labels,
    k_coef_lip: float,
    radii=DEFAULT_ROBUST_RADII,
    margin_factor: float = math.sqrt(2.0),
) -> dict:
    """Share of points classified correctly with a certified radius above each ε.

    Returns:
        ``{ε: accuracy}`` (floats), with ``0.0`` the plain accuracy.
    """
    logits = _logits(logits)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {logits.shape[0]} logits")
    radii = [float(r) for r in radii]
    if any(not (math.isfinite(r) and r >= 0) for r in radii):
        raise ValueError(f"radii must be finite and >= 0, got {radii}")
    radius = certified_margin_radius(logits, k_coef_lip, margin_factor)
    correct = np.argmax(logits, axis=1) == labels
    out = {0.0: float(np.mean(correct))}
    for r in radii:
        out[r] = float(np.mean(correct & (radius > r)))
    return out

r"""Certified scores of a k-Lipschitz energy: radii, certified AUROC, thresholds.

With :math:`E = k f` and :math:`f` 1-Lipschitz, an input perturbation of norm
:math:`\varepsilon` moves the energy by at most :math:`k\varepsilon`.
:func:`certified_radius`, :func:`certified_auroc` and :func:`calibrate_threshold`
turn that into numbers. Norms are Euclidean over all non-batch axes.
"""

from __future__ import annotations

import math

import numpy as np

from deel_ebm._checks import check_positive, check_scores

__all__ = [
    "certified_radius",
    "certified_auroc",
    "calibrate_threshold",
    "DEFAULT_FALSE_POSITIVE_RATE",
]

DEFAULT_FALSE_POSITIVE_RATE = 0.05


def certified_radius(energies, threshold: float, k_coef_lip: float) -> np.ndarray:
    r"""Radius within which the in-distribution decision :math:`E(x) < t` is certain.

    Since :math:`|E(x + \delta) - E(x)| \le k \|\delta\|`, the radius is

    .. math:: r(x) = \frac{t - E(x)}{k}.

    Where :math:`r > 0` the point is accepted and every :math:`x + \delta` with
    :math:`\|\delta\| < r` is accepted too. Where :math:`r \le 0` the point is rejected
    (:math:`E(x) \ge t`) and :math:`|r|` certifies the rejection the same way.

    Args:
        energies: energies :math:`E(x)`, shape ``(n,)`` (or ``(n, 1)``).
        threshold: the decision threshold :math:`t`.
        k_coef_lip: Lipschitz constant :math:`k` of the energy (> 0).

    Returns:
        Signed radii, shape ``(n,)``, float64.

    Raises:
        ValueError: for a non-positive ``k_coef_lip``, a non-finite threshold or
            energies that are not a finite 1-D array.
    """
    energies = check_scores(energies, "energies")
    k = check_positive("k_coef_lip", k_coef_lip)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    return (float(threshold) - energies) / k


def _auroc(scores_neg: np.ndarray, scores_pos: np.ndarray) -> float:
    """P(pos > neg) + P(pos == neg) / 2 (Mann-Whitney U / (n_neg n_pos)), O(n log n)."""
    neg = np.sort(scores_neg)
    below = np.searchsorted(neg, scores_pos, side="left")
    below_or_equal = np.searchsorted(neg, scores_pos, side="right")
    wins = below.sum(dtype=np.float64) + 0.5 * (below_or_equal - below).sum()
    return float(wins / (neg.size * scores_pos.size))


def certified_auroc(
    energies_in, energies_out, k_coef_lip: float, epsilon: float = 0.0
) -> float:
    r"""AUROC of energy as an out-of-distribution score, certified at radius epsilon.

    Convention: out-of-distribution is the positive class and the score is the energy
    (in-distribution = low energy), so the AUROC is
    :math:`P(E_{out} > E_{in}) + \tfrac12 P(E_{out} = E_{in})` over all pairs, ties
    counted half. The certified AUROC at radius :math:`\varepsilon` is the AUROC in the
    worst case where an adversary moves every input by at most :math:`\varepsilon`:
    every in-distribution energy pushed up and every out-of-distribution energy pushed
    down by :math:`k\varepsilon`, i.e. a pair counts only when
    :math:`E_{out} - E_{in} > 2k\varepsilon`. At :math:`\varepsilon = 0` it is the
    plain AUROC; it does not increase with :math:`\varepsilon`.

    Args:
        energies_in: energies of in-distribution points, shape ``(n_in,)``.
        energies_out: energies of out-of-distribution points, shape ``(n_out,)``.
        k_coef_lip: Lipschitz constant :math:`k` of the energy (> 0).
        epsilon: perturbation radius in input space (L2), >= 0.

    Returns:
        The certified AUROC in [0, 1].

    Raises:
        ValueError: for empty or non-finite energies, ``k_coef_lip <= 0`` or a
            negative ``epsilon``.
    """
    energies_in = check_scores(energies_in, "energies_in")
    energies_out = check_scores(energies_out, "energies_out")
    k = check_positive("k_coef_lip", k_coef_lip)
    if not np.isscalar(epsilon) or not np.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    shift = k * float(epsilon)
    return _auroc(energies_in + shift, energies_out - shift)


def calibrate_threshold(
    energies_val_in,
    false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE,
    conformal: bool = False,
) -> float:
    r"""Threshold :math:`t` rejecting a given share of held-out in-distribution points.

    The decision is "in-distribution iff :math:`E(x) < t`". Out-of-distribution is the
    positive class, so a *false positive* is an in-distribution point rejected
    (:math:`E(x) \ge t`). With :math:`e_{(1)} \le \dots \le e_{(n)}` the sorted
    validation energies, :math:`m = \lfloor \alpha n \rfloor` (:math:`\alpha` the
    false positive rate) and :math:`j = n - m`, the threshold is :math:`e_{(j)}` nudged
    up by one float64 ulp: points with :math:`E \le e_{(j)}` are accepted. This is the
    empirical (type 1, "inverted CDF") :math:`1 - m/n` quantile, so the validation false
    positive rate is at most :math:`\alpha`, and equal to :math:`m / n` without ties.

    With ``conformal=True``, :math:`j = \lceil (1 - \alpha)(n + 1) \rceil` instead
    (split conformal): for a new point exchangeable with the validation set, the
    probability of rejecting it is at most :math:`\alpha`. If :math:`j > n`, nothing
    is rejected (:math:`t = +\infty`).

    Args:
        energies_val_in: held-out in-distribution energies, shape ``(n,)``.
        false_positive_rate: :math:`\alpha \in [0, 1)`.
        conformal: use the finite-sample conformal rank instead of the empirical one.

    Returns:
        The threshold :math:`t` (a float, possibly ``inf``).

    Raises:
        ValueError: for an empty or non-finite energy array or a rate outside [0, 1).
    """
    energies = np.sort(check_scores(energies_val_in, "energies_val_in"))
    rate = false_positive_rate
    if not np.isscalar(rate) or not 0.0 <= rate < 1.0:
        raise ValueError(f"false_positive_rate must be in [0, 1), got {rate!r}")
    n = energies.size
    if conformal:
        rank = math.ceil((1.0 - rate) * (n + 1) - 1e-9)
        if rank > n:
            return math.inf
    else:
        rank = n - math.floor(rate * n + 1e-9)
    return float(np.nextafter(energies[rank - 1], np.inf))

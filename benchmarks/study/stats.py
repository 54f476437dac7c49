"""Confidence intervals over seeds and runs."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95


def mean_ci(values):
    """``(mean, half_width, n)`` of the finite values: Student t at :data:`LEVEL`
    (half width None for fewer than 2 values; mean None for none)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return None, None, 0
    if v.size == 1:
        return float(v[0]), None, 1
    half = stats.t.ppf(0.5 + LEVEL / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(half), int(v.size)


def share_ci(successes, n):
    """``(share, low, high)``: the Wilson score interval at :data:`LEVEL`."""
    if n == 0:
        return None, None, None
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def fmt_mean(values, digits=3):
    """``"m ± h (n)"`` text of :func:`mean_ci`."""
    m, h, n = mean_ci(values)
    if m is None:
        return "–"
    if h is None:
        return f"{m:.{digits}g} (n=1)"
    return f"{m:.{digits}g} ± {h:.2g} (n={n})"


def fmt_share(successes, n):
    p, lo, hi = share_ci(successes, n)
    if p is None:
        return "–"
    return f"{successes}/{n} [{lo:.2f}, {hi:.2f}]"

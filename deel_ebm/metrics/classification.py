r"""Calibration of class probabilities: reliability bins and the expected
calibration error (pure NumPy).

A classifier is *calibrated* when, among the points it gives top probability
``c``, a share ``c`` is classified correctly. With the top probabilities split
into ``B`` equal-width bins :math:`I_b = ((b-1)/B, b/B]` (the first also holds
0), the expected calibration error (Guo et al., ICML 2017) is

.. math::

    \mathrm{ECE} = \sum_{b=1}^{B} \frac{n_b}{n}\,
    \bigl|\mathrm{acc}_b - \mathrm{conf}_b\bigr|,

``n_b`` the points whose top probability falls in :math:`I_b`, ``acc_b`` their
accuracy and ``conf_b`` their mean top probability; 0 for a calibrated
classifier, at most 1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from deel_ebm._checks import check_count

__all__ = [
    "CalibrationBins",
    "calibration_bins",
    "expected_calibration_error",
    "DEFAULT_ECE_BINS",
]

#: equal-width confidence bins of the expected calibration error by default
DEFAULT_ECE_BINS = 15


class CalibrationBins(NamedTuple):
    """Per-bin statistics of :func:`calibration_bins` (arrays of ``bins``
    entries; ``accuracy`` and ``confidence`` are NaN in empty bins)."""

    edges: np.ndarray  #: ``(bins + 1,)`` bin edges, 0 to 1
    count: np.ndarray  #: points per bin
    accuracy: np.ndarray  #: share classified correctly per bin
    confidence: np.ndarray  #: mean top probability per bin


def _checked(probs, labels):
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2 or probs.shape[0] < 1:
        raise ValueError(
            f"probs must have shape (n, C) with n >= 1 and C >= 2, got {probs.shape}"
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise ValueError("probs must be finite probabilities in [0, 1]")
    labels = np.asarray(labels)
    if labels.shape != (probs.shape[0],):
        raise ValueError(
            f"labels must have shape ({probs.shape[0]},) (one per row of probs), "
            f"got {labels.shape}"
        )
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.number):
        raise ValueError(f"labels must be integer classes, got dtype {labels.dtype}")
    if not np.all(labels == np.round(labels)):
        raise ValueError("labels must be integer classes")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(
            f"labels must lie in [0, {probs.shape[1] - 1}], got "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    return probs, labels.astype(np.int64)


def calibration_bins(probs, labels, bins: int = DEFAULT_ECE_BINS) -> CalibrationBins:
    """Reliability statistics of class probabilities, per confidence bin.

    Args:
        probs: ``(n, C)`` class probabilities (rows of a softmax).
        labels: ``(n,)`` true classes in ``[0, C)``.
        bins: number of equal-width bins of the top probability on [0, 1]; a
            bin is open on the left and closed on the right, ``(lo, hi]`` (the
            first also holds 0).

    Returns:
        :class:`CalibrationBins` (edges, count, accuracy, confidence).

    Raises:
        ValueError: for probabilities outside [0, 1] or not of shape ``(n, C)``,
            labels of another length or outside ``[0, C)``, ``bins < 1``.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
        >>> deel_ebm.metrics.calibration_bins(probs, [0, 0, 0], bins=2).count
        array([0, 3])
    """
    probs, labels = _checked(probs, labels)
    bins = check_count("bins", bins, minimum=1)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds edges[b] < c <= edges[b + 1] (0 goes to the first)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / count
    return CalibrationBins(edges, count, accuracy, mean_conf)


def expected_calibration_error(probs, labels, bins: int = DEFAULT_ECE_BINS) -> float:
    """Expected calibration error of class probabilities (0: calibrated).

    The count-weighted mean over :func:`calibration_bins` of
    ``|accuracy − confidence|``; 15 equal-width bins by default.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
        >>> ece = deel_ebm.metrics.expected_calibration_error(probs, [0, 0, 0], bins=2)
        >>> round(ece, 4)  # one bin: accuracy 2/3, mean confidence 0.7333
        0.0667
    """
    stats = calibration_bins(probs, labels, bins)
    filled = stats.count > 0
    gaps = np.abs(stats.accuracy[filled] - stats.confidence[filled])
    return float(np.sum(stats.count[filled] * gaps) / np.sum(stats.count))

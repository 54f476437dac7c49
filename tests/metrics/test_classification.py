"""deel_ebm.metrics.classification: reliability bins and the expected
calibration error, against hand computations."""

import numpy as np
import pytest

from deel_ebm import metrics

#: six points, three classes; with 5 bins: two points in each of the bins
#: (0.4, 0.6], (0.6, 0.8] and (0.8, 1], each bin with one correct of two
PROBS = np.array(
    [
        [0.95, 0.03, 0.02],  # conf 0.95, predicts 0, label 0: right
        [0.85, 0.10, 0.05],  # conf 0.85, predicts 0, label 1: wrong
        [0.10, 0.70, 0.20],  # conf 0.70, predicts 1, label 1: right
        [0.20, 0.75, 0.05],  # conf 0.75, predicts 1, label 2: wrong
        [0.30, 0.50, 0.20],  # conf 0.50, predicts 1, label 0: wrong
        [0.45, 0.35, 0.20],  # conf 0.45, predicts 0, label 0: right
    ]
)
LABELS = np.array([0, 1, 1, 2, 0, 0])


def test_ece_by_hand():
    # bin (0.8, 1]: acc 1/2, conf 0.9 -> 0.4; (0.6, 0.8]: 1/2 vs 0.725 -> 0.225;
    # (0.4, 0.6]: 1/2 vs 0.475 -> 0.025; each bin holds 2 of the 6 points
    expected = (2 * 0.4 + 2 * 0.225 + 2 * 0.025) / 6
    assert metrics.expected_calibration_error(PROBS, LABELS, bins=5) == pytest.approx(
        expected, abs=1e-12
    )
    stats = metrics.calibration_bins(PROBS, LABELS, bins=5)
    np.testing.assert_allclose(stats.edges, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert stats.count.tolist() == [0, 0, 2, 2, 2]
    np.testing.assert_allclose(stats.accuracy[2:], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(stats.confidence[2:], [0.475, 0.725, 0.9])
    assert np.all(np.isnan(stats.accuracy[:2]))  # empty bins


def test_one_bin_is_the_gap_of_accuracy_and_mean_confidence():
    # accuracy 3/6, mean top probability (0.95+0.85+0.7+0.75+0.5+0.45)/6 = 0.7
    ece = metrics.expected_calibration_error(PROBS, LABELS, bins=1)
    assert ece == pytest.approx(0.2, abs=1e-12)


def test_default_is_15_bins_and_a_calibrated_classifier_scores_zero():
    assert metrics.DEFAULT_ECE_BINS == 15
    # four points at confidence 0.75 (bin (0.733, 0.8] of 15), three right
    probs = np.array([[0.75, 0.25]] * 4)
    assert metrics.expected_calibration_error(probs, [0, 0, 0, 1]) == 0.0
    # all right at confidence 0.75: off by 0.25
    assert metrics.expected_calibration_error(probs, [0, 0, 0, 0]) == pytest.approx(
        0.25
    )


def test_matches_a_loop_over_the_bins():
    rng = np.random.default_rng(0)
    logits = 3 * rng.normal(size=(500, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 4, 500)
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            gap = abs(np.mean(pred[inside] == labels[inside]) - conf[inside].mean())
            total += inside.sum() * gap
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(
        total / 500, abs=1e-12
    )


def test_a_confidence_of_one_falls_in_the_last_bin():
    stats = metrics.calibration_bins(np.array([[1.0, 0.0]]), [0], bins=15)
    assert stats.count[-1] == 1 and stats.count.sum() == 1


@pytest.mark.parametrize(
    "probs, labels, match",
    [
        (np.array([0.5, 0.5]), [0], "shape"),
        (np.array([[1.5, -0.5]]), [0], r"in \[0, 1\]"),
        (np.array([[np.nan, 0.5]]), [0], "finite"),
        (np.array([[0.5, 0.5]]), [0, 1], r"must have shape \(1,\)"),
        (np.array([[0.5, 0.5]]), [2], r"must lie in \[0, 1\]"),
        (np.array([[0.5, 0.5]]), [0.5], "integer classes"),
    ],
)
def test_bad_inputs_get_one_clear_line(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        metrics.expected_calibration_error(probs, labels)


def test_bins_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="bins must be an integer >= 1"):
        metrics.expected_calibration_error(PROBS, LABELS, bins=0)

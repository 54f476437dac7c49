r"""Metrics that treat every model the same way: through its energy or its samples.

- :mod:`~deel_ebm.metrics.exact2d`: exact 2D log-normaliser, KL both ways, test
  NLL, mode masses, on a grid;
- :mod:`~deel_ebm.metrics.samples`: MMD, sliced Wasserstein, mode coverage, AUROC,
  Fréchet distance, in any dimension;
- :mod:`~deel_ebm.metrics.digits`: the reference digits classifier and its grades;
- :mod:`~deel_ebm.metrics.classification`: calibration of class probabilities
  (reliability bins, expected calibration error).

Classical baselines with the same energy interface are in :mod:`deel_ebm.baselines`.
"""

from deel_ebm.metrics.classification import (
    DEFAULT_ECE_BINS,
    CalibrationBins,
    calibration_bins,
    expected_calibration_error,
)
from deel_ebm.metrics.digits import (
    DigitsClassifier,
    class_histogram,
    classifier_features,
    digits_classifier,
    mean_confidence,
)
from deel_ebm.metrics.exact2d import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_RESOLUTION,
    MODE_RADIUS_STDS,
    evaluate_energy,
    exact_metrics_2d,
    grid_log_normaliser,
    grid_log_prob,
    grid_points,
)
from deel_ebm.metrics.samples import (
    auroc,
    frechet_distance,
    mmd,
    mode_coverage,
    sliced_wasserstein,
)

__all__ = [
    "DEFAULT_RESOLUTION",
    "DEFAULT_BATCH_SIZE",
    "MODE_RADIUS_STDS",
    "evaluate_energy",
    "grid_points",
    "grid_log_normaliser",
    "grid_log_prob",
    "exact_metrics_2d",
    "mmd",
    "sliced_wasserstein",
    "mode_coverage",
    "auroc",
    "DigitsClassifier",
    "digits_classifier",
    "classifier_features",
    "class_histogram",
    "mean_confidence",
    "frechet_distance",
    "expected_calibration_error",
    "calibration_bins",
    "CalibrationBins",
    "DEFAULT_ECE_BINS",
]

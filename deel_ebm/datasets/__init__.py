"""Data: toy 2D densities with an exact log-density, sklearn's bundled digits.

- :mod:`~deel_ebm.datasets.densities`: the six 2D densities (sampler and exact
  log-density of the same distribution);
- :mod:`~deel_ebm.datasets.loaders`: train/test splits, digits, ``tf.data``;
- :mod:`~deel_ebm.datasets.ood`: out-of-distribution images built from digits.
"""

from deel_ebm.datasets.densities import (
    DEFAULT_DOMAIN,
    DENSITIES,
    BlurredCircles2D,
    BlurredCurves2D,
    BlurredSquares2D,
    Density2D,
    GaussianMixture2D,
    as_points,
    get_density,
    isotropic_mixture_log_prob,
)
from deel_ebm.datasets.loaders import (
    DEFAULT_N_TEST,
    DEFAULT_N_TRAIN,
    DIGITS_DOMAIN,
    DIGITS_TEST_SIZE,
    DigitsData,
    as_dataset,
    load_2d,
    load_digits,
)
from deel_ebm.datasets.ood import OOD_KINDS, gaussian_blur, ood_set, ood_sets

__all__ = [
    "DENSITIES",
    "DEFAULT_DOMAIN",
    "DEFAULT_N_TRAIN",
    "DEFAULT_N_TEST",
    "DIGITS_DOMAIN",
    "DIGITS_TEST_SIZE",
    "Density2D",
    "isotropic_mixture_log_prob",
    "GaussianMixture2D",
    "BlurredCircles2D",
    "BlurredSquares2D",
    "BlurredCurves2D",
    "get_density",
    "as_points",
    "load_2d",
    "as_dataset",
    "DigitsData",
    "load_digits",
    "OOD_KINDS",
    "ood_set",
    "ood_sets",
    "gaussian_blur",
]

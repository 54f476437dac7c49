"""Certificates: Lipschitz bounds of networks, certified scores, radii and AUROC.

- :mod:`~deel_ebm.certificates.ood`: certified radius, certified AUROC, threshold
  calibration (pure NumPy on energies);
- :mod:`~deel_ebm.certificates.robust`: certified radius and robust accuracy of
  a Lipschitz classifier's predictions (logit margins);
- :mod:`~deel_ebm.certificates.lipschitz`: certified upper bound and empirical
  lower bound of a network's Lipschitz constant.
"""

from deel_ebm.certificates.lipschitz import (
    ACTIVATION_LIPSCHITZ,
    DEFAULT_MAX_ITER,
    DEFAULT_TOL,
    conv_operator_norm,
    empirical_lipschitz_lower_bound,
    layer_lipschitz_bounds,
    lipschitz_upper_bound,
    spectral_norm,
)
from deel_ebm.certificates.ood import (
    calibrate_threshold,
    certified_auroc,
    certified_radius,
)
from deel_ebm.certificates.robust import (
    DEFAULT_ROBUST_RADII,
    certified_margin_radius,
    certified_robust_accuracy,
)

__all__ = [
    "certified_radius",
    "certified_auroc",
    "calibrate_threshold",
    "certified_margin_radius",
    "certified_robust_accuracy",
    "DEFAULT_ROBUST_RADII",
    "spectral_norm",
    "conv_operator_norm",
    "layer_lipschitz_bounds",
    "lipschitz_upper_bound",
    "empirical_lipschitz_lower_bound",
    "ACTIVATION_LIPSCHITZ",
    "DEFAULT_TOL",
    "DEFAULT_MAX_ITER",
]

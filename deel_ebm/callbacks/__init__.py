r"""Keras callbacks that watch and protect the training of an energy-based model.

Each callback writes what it measures into ``logs``, so ``History``, ``CSVLogger``
and ``TensorBoard`` record it; list them *before* those loggers in ``callbacks=``
(Keras calls callbacks in list order and the loggers read the same ``logs``).

- :class:`EnergyGapMonitor`: the gap :math:`E(x^-) - E(x^+)` and the energies;
  flags collapse and blow-up (``gap_status``).
- :class:`LipschitzCertificate`: a certified upper bound and an empirical lower
  bound of :math:`\mathrm{Lip}(E)` against ``k`` (``lip_upper``, ``lip_lower``,
  ``k_coef_lip``, ``lip_violation``).
- :class:`SampleSnapshot`: samples as PNG files and TensorBoard images.
- :class:`DivergenceGuard`: rolls back to the last good state and retries with a
  smaller step size and learning rate when training diverges.
- :class:`CertifiedAccuracy`: accuracy and certified robust accuracy of a
  :class:`~deel_ebm.JointEnergyModel` on held-out data
  (``val_certified_accuracy_{ε}``).
- :class:`NetworkCallback`: runs a callback on the energy network, so deel-lip's
  ``CondenseCallback`` and ``MonitorCallback`` see its deel-lip layers.
- :func:`tensorboard_callbacks`: the monitor, the certificate, sample images and
  Keras' ``TensorBoard``, in that order, for one ``log_dir``.

Every callback but :class:`CertifiedAccuracy` (which holds its data) is
registered under the package ``deel_ebm``; ``get_config`` holds its constructor
arguments and ``from_config`` rebuilds it.
"""

from deel_ebm.callbacks._energy_gap import (
    GAP_BLOWUP,
    GAP_COLLAPSE,
    GAP_OK,
    EnergyGapMonitor,
)
from deel_ebm.callbacks._guard import DivergenceGuard
from deel_ebm.callbacks._lipschitz import (
    LipschitzCertificate,
    LipschitzViolationError,
    lipschitz_report,
)
from deel_ebm.callbacks._network import NetworkCallback
from deel_ebm.callbacks._robust import CertifiedAccuracy
from deel_ebm.callbacks._snapshot import SampleSnapshot
from deel_ebm.callbacks._tensorboard import tensorboard_callbacks

__all__ = [
    "EnergyGapMonitor",
    "LipschitzCertificate",
    "LipschitzViolationError",
    "SampleSnapshot",
    "DivergenceGuard",
    "NetworkCallback",
    "CertifiedAccuracy",
    "lipschitz_report",
    "tensorboard_callbacks",
    "GAP_OK",
    "GAP_COLLAPSE",
    "GAP_BLOWUP",
]

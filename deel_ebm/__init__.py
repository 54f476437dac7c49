"""deel-ebm: energy-based models with a certified 1-Lipschitz energy, on deel-lip.

Import ``deel_ebm`` before TensorFlow: it makes ``tf.keras`` the Keras 2 API
(tf-keras) that deel-lip needs, and raises a clear ImportError otherwise.
"""

from deel_ebm import (
    _backend,  # noqa: F401  (must run before TensorFlow loads)
    _deel_lip_compat,  # noqa: F401  (deel-lip calls cheap under XLA)
    buffers,
    export,
    losses,
    nets,
    persistence,
    samplers,
)
from deel_ebm.buffers import ReplayBuffer
from deel_ebm.losses import ContrastiveDivergenceLoss, HingeKRLoss
from deel_ebm.model import EnergyModel
from deel_ebm.samplers import LangevinSampler, MALASampler

__version__ = "0.1.0"

__all__ = [
    "EnergyModel",
    "LangevinSampler",
    "MALASampler",
    "ReplayBuffer",
    "ContrastiveDivergenceLoss",
    "HingeKRLoss",
    "buffers",
    "certificates",
    "datasets",
    "export",
    "losses",
    "metrics",
    "nets",
    "persistence",
    "plotting",
    "runs",
    "samplers",
    "__version__",
]

"""deel-ebm: energy-based models with a certified 1-Lipschitz energy, on deel-lip.

Import ``deel_ebm`` before TensorFlow: it makes ``tf.keras`` the Keras 2 API
(tf-keras) that deel-lip needs, and raises a clear ImportError otherwise.

The package is layered, imports going downwards only::

    app/            run folders, evaluation, the deel-ebm command
    export/         plain Keras, SavedModel serving, checked loading
    callbacks/      energy gap, certificate, snapshots, guard
    certificates/ metrics/ baselines plotting       measurement (no core/)
    core/           EnergyModel, samplers, buffer, losses, inputs, checkpoints
    nets datasets   deel-lip energies; data
    _checks _backend                                  validators; Keras-2 setup

Every name in ``__all__`` is an attribute of the package; the sub-packages that
pull in matplotlib or scikit-learn (``plotting``, ``callbacks``, ``metrics``,
``baselines``, ``app``) are imported on first access, so ``import deel_ebm``
stays light and training never imports matplotlib.
"""

import importlib

from deel_ebm import (
    _backend,  # must run before TensorFlow loads
    _deel_lip_compat,  # noqa: F401  (deel-lip calls cheap under XLA)
    certificates,
    core,
    datasets,
    export,
    nets,
)
from deel_ebm.core import (
    ContrastiveDivergenceLoss,
    EnergyModel,
    HingeKRLoss,
    JointEnergyModel,
    LangevinSampler,
    MALASampler,
    MetropolisHastings,
    ReplayBuffer,
)
from deel_ebm.core.samplers import sample_chain

#: The Keras 2 API that deel-lip speaks (``tf_keras`` on TensorFlow >= 2.16).
keras = _backend.keras

__version__ = "0.1.0"

_LAZY = ("app", "baselines", "callbacks", "metrics", "plotting")

__all__ = [
    "EnergyModel",
    "JointEnergyModel",
    "LangevinSampler",
    "MALASampler",
    "MetropolisHastings",
    "ReplayBuffer",
    "ContrastiveDivergenceLoss",
    "HingeKRLoss",
    "sample_chain",
    "core",
    "nets",
    "datasets",
    "certificates",
    "export",
    "keras",
    *_LAZY,
    "__version__",
]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"deel_ebm.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'deel_ebm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

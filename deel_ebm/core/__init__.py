"""The engine: the energy model, samplers, replay buffer, losses, inputs, checkpoints.

Nothing here imports a measurement, export, callback or application module.
"""

from deel_ebm.core import (
    buffers,
    checkpoints,
    classifier_losses,
    inputs,
    joint,
    losses,
    samplers,
    walkers,
)
from deel_ebm.core.buffers import ReplayBuffer
from deel_ebm.core.checkpoints import ModelLoadError, restore_checkpoint
from deel_ebm.core.joint import JointEnergyModel
from deel_ebm.core.losses import ContrastiveDivergenceLoss, HingeKRLoss
from deel_ebm.core.model import EnergyModel
from deel_ebm.core.samplers import LangevinSampler, MALASampler, MetropolisHastings
from deel_ebm.core.walkers import JarzynskiWalkers

__all__ = [
    "EnergyModel",
    "JointEnergyModel",
    "LangevinSampler",
    "MALASampler",
    "MetropolisHastings",
    "ReplayBuffer",
    "ContrastiveDivergenceLoss",
    "HingeKRLoss",
    "JarzynskiWalkers",
    "ModelLoadError",
    "restore_checkpoint",
    "buffers",
    "checkpoints",
    "classifier_losses",
    "inputs",
    "joint",
    "losses",
    "samplers",
    "walkers",
]

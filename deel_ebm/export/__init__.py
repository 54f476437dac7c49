"""Exports of a trained EnergyModel and a checked loader.

- :func:`export_vanilla` (:mod:`~deel_ebm.export.plain`): a stock-Keras model of
  the energy, no deel-lip needed at inference;
- :func:`export_saved_model` (:mod:`~deel_ebm.export.served`): a SavedModel with
  ``energy`` / ``sample`` / ``sample_from`` signatures;
- :func:`load_model` (:mod:`~deel_ebm.export.load`): checked, safe-mode loading,
  :class:`ModelLoadError` on a damaged file.
"""

from deel_ebm.core.checkpoints import ModelLoadError, restore_checkpoint
from deel_ebm.export.load import load_model
from deel_ebm.export.plain import EXPORT_RTOL, SQRT_FLOOR, export_vanilla
from deel_ebm.export.served import export_saved_model

__all__ = [
    "export_vanilla",
    "export_saved_model",
    "load_model",
    "restore_checkpoint",
    "ModelLoadError",
    "SQRT_FLOOR",
    "EXPORT_RTOL",
]

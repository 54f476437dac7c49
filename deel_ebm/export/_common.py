"""Checks shared by the export modules."""

from __future__ import annotations

import os
from pathlib import Path

from deel_ebm.core import EnergyModel

__all__ = ["check_model", "check_path"]


def check_model(model):
    """``model`` if it is an EnergyModel; TypeError else."""
    if not isinstance(model, EnergyModel):
        raise TypeError(f"model must be a deel_ebm EnergyModel, got {model!r}")
    return model


def check_path(path, name="path") -> Path:
    """``path`` (str or path-like) as a ``Path``; TypeError else."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {path!r}")
    return Path(path)

"""Helpers shared by the callbacks: argument checks, stopping, configs."""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

__all__ = [
    "check_positive",
    "check_count",
    "check_factor",
    "check_path",
    "all_finite",
    "stop",
    "ConfigMixin",
]


def check_positive(name, value, integer=False, allow_none=False):
    """``value`` as a positive finite float (or int); TypeError / ValueError else."""
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return int(value) if integer else float(value)


def check_count(name, value, minimum=0, allow_none=False):
    """``value`` as an int >= ``minimum``; TypeError / ValueError else."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_factor(name, value):
    """``value`` as a float in (0, 1]."""
    value = check_positive(name, value)
    if value > 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    return value


def check_path(name, value):
    """``value`` (str or path-like, or None) as a string path, or None."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path-like, got {value!r}")
    return os.fspath(value)


def all_finite(logs, keys) -> bool:
    """True when every one of ``keys`` present in ``logs`` is a finite number."""
    return all(np.isfinite(logs[key]) for key in keys if key in logs)


def stop(model, message) -> None:
    """Ask Keras to stop ``fit`` and say why in ``model.stop_reason``."""
    model.stop_reason = message
    model.stop_training = True


class ConfigMixin:
    """``from_config``: the constructor called on ``get_config()``'s arguments.

    Keras 2 callbacks have neither ``get_config`` nor ``from_config``; ours keep
    their constructor arguments in ``get_config`` and are rebuilt from them, so
    ``keras.utils.deserialize_keras_object`` restores a registered callback.
    """

    @classmethod
    def from_config(cls, config):
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {config!r}")
        return cls(**config)

"""Helpers shared by the callbacks: stopping, finite logs, configs."""

from __future__ import annotations

import numpy as np

__all__ = ["all_finite", "stop", "ConfigMixin"]


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

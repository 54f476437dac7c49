"""Hyper-parameters held in variables: a callback changes them without a retrace."""

from __future__ import annotations

from deel_ebm._backend import keras

__all__ = ["hyper_parameter"]


def hyper_parameter(layer, name: str, value: float):
    """A non-trainable scalar weight of ``layer``, initialised to ``value``."""
    return layer.add_weight(
        name=name,
        shape=(),
        initializer=keras.initializers.Constant(value),
        trainable=False,
    )

r"""A plain Keras model of a trained energy, from stock layers only.

:func:`export_vanilla` builds a Keras model of the energy :math:`E = k f` of an
:class:`~deel_ebm.EnergyModel` from stock Keras layers (deel-lip's
``vanilla_export`` for the constrained layers, stock layers and TensorFlow ops for
its activations and poolings); it saves and loads with no custom objects.
"""

from __future__ import annotations

import numpy as np
from deel.lip import layers as dl
from deel.lip.layers import Condensable

from deel_ebm._backend import keras, tf
from deel_ebm.core import JointEnergyModel
from deel_ebm.export._common import check_model
from deel_ebm.nets import flat_layers

__all__ = ["export_vanilla", "SQRT_FLOOR", "EXPORT_RTOL"]

#: The exported L2-norm poolings compute sqrt(max(z, SQRT_FLOOR)): the same values
#: as deel-lip above the floor, and a finite gradient at 0 (deel-lip uses a custom
#: gradient there) so that Langevin chains on the exported energy stay finite.
SQRT_FLOOR = 1e-12
#: Relative agreement between the exported and the original energy checked at export.
EXPORT_RTOL = 1e-5
_CHECK_POINTS = 64
#: what :func:`export_vanilla` can compute for a JointEnergyModel
_JOINT_OUTPUTS = ("energy", "logits", "probabilities")


def _sub_model(layer, build):
    """A functional model of stock layers replacing ``layer`` (same name)."""
    try:
        shape = tuple(layer.input_shape[1:])
    except (AttributeError, RuntimeError) as err:
        raise ValueError(
            f"layer {layer.name!r} has no single input shape (shared layer?): it "
            "cannot be exported"
        ) from err
    inputs = keras.Input(shape)
    outputs = build(inputs, shape)
    coef = float(layer._get_coef())  # deel-lip's k_coef_lip times its own factor
    if coef != 1.0:
        outputs = keras.layers.Rescaling(coef)(outputs)
    return keras.Model(inputs, outputs, name=layer.name)


def _group_sort(layer):
    def build(x, shape):
        n = layer.n
        grouped = keras.layers.Reshape(shape[:-1] + (shape[-1] // n, n))(x)
        return keras.layers.Reshape(shape)(tf.sort(grouped, axis=-1))

    return _sub_model(layer, build)


def _l2_pool(layer):
    def build(x, shape):
        squares = tf.math.square(x)
        if isinstance(layer, dl.ScaledGlobalL2NormPooling2D):
            pooled = tf.math.reduce_sum(squares, axis=layer.axes)
        else:
            pooled = keras.layers.AveragePooling2D(
                layer.pool_size, layer.strides, layer.padding, layer.data_format
            )(squares)
        return tf.math.sqrt(tf.math.maximum(pooled, SQRT_FLOOR))

    return _sub_model(layer, build)


def _average_pool(layer):
    def build(x, shape):
        if isinstance(layer, dl.ScaledGlobalAveragePooling2D):
            return keras.layers.GlobalAveragePooling2D(layer.data_format)(x)
        return keras.layers.AveragePooling2D(
            layer.pool_size, layer.strides, layer.padding, layer.data_format
        )(x)

    return _sub_model(layer, build)


def _is_deel_lip(layer) -> bool:
    return type(layer).__module__.startswith("deel.lip")


def _plain_layer(layer):
    """Stock-Keras replacement of one layer (clone function of ``clone_model``)."""
    if isinstance(layer, keras.Model):
        return _plain_network(layer)
    if isinstance(layer, Condensable):
        return layer.vanilla_export()  # deel-lip: kernel <- wbar
    if isinstance(layer, dl.GroupSort):
        return _group_sort(layer)
    if isinstance(layer, (dl.ScaledL2NormPooling2D, dl.ScaledGlobalL2NormPooling2D)):
        return _l2_pool(layer)
    if isinstance(layer, (dl.ScaledAveragePooling2D, dl.ScaledGlobalAveragePooling2D)):
        return _average_pool(layer)
    if _is_deel_lip(layer):
        raise ValueError(
            f"layer {layer.name!r} ({type(layer).__name__}) has no stock-Keras export;"
            " supported deel-lip layers: condensable layers (Spectral/Frobenius "
            "Dense and Conv2D ...), GroupSort/GroupSort2/FullSort, Scaled L2-norm "
            "and average poolings"
        )
    clone = type(layer).from_config(layer.get_config())  # as deel-lip's vanillaModel
    clone.build(layer.input_shape)
    clone.set_weights(layer.get_weights())
    return clone


def _plain_network(network):
    return keras.models.clone_model(network, clone_function=_plain_layer)


def export_vanilla(model, check: bool = True, output: str = "energy") -> keras.Model:
    r"""A stock-Keras model computing the energies ``E = k f`` of ``model``.

    Refreshes the constraints, then clones the network with every deel-lip layer
    replaced: constrained layers by their ``vanilla_export()`` (a ``Dense`` or
    ``Conv2D`` holding the cached constrained kernel ``wbar``), ``GroupSort`` by a
    ``Reshape`` / ``tf.sort`` / ``Reshape`` block, scaled poolings by stock
    poolings and TensorFlow ops (``TFOpLambda`` layers, loadable in safe mode);
    L2-norm poolings use ``sqrt(max(z, SQRT_FLOOR))``. A ``Rescaling(k)`` and a
    ``Reshape(())`` follow, so the output has shape ``(n,)`` like
    :meth:`~deel_ebm.EnergyModel.energy`. The result has no deel-lip layer: save it
    with ``.save("energy.keras")`` and load it with ``keras.models.load_model``
    without custom objects.

    For a :class:`~deel_ebm.JointEnergyModel`, ``output`` chooses what the
    export computes: ``"energy"`` (the marginal energy ``−logsumexp(k f)``,
    ``(n,)``), ``"logits"`` (``k f``, ``(n, C)``) or ``"probabilities"``
    (``p(y|x)``, a ``Softmax`` layer).

    Args:
        model: a :class:`~deel_ebm.EnergyModel`.
        output: ``"energy"`` (default); for a joint model also ``"logits"`` or
            ``"probabilities"``.
        check: compare both energies on 64 draws of the buffer's prior and raise if
            they differ by more than :data:`EXPORT_RTOL` relatively.

    Returns:
        A functional ``keras.Model`` mapping ``(n, *sample_shape)`` to ``(n,)``.

    Raises:
        TypeError: if ``model`` is not an EnergyModel.
        ValueError: for a deel-lip layer with no stock equivalent (named).
        RuntimeError: if the check fails.

    Example:
        >>> plain = export_vanilla(model)
        >>> plain.save("energy.keras")
        >>> energy = tf.keras.models.load_model("energy.keras")  # no custom objects
        >>> energy(x[:5]).shape
        TensorShape([5])
    """
    check_model(model)
    if not isinstance(check, bool):
        raise TypeError(f"check must be a bool, got {check!r}")
    joint = isinstance(model, JointEnergyModel)
    outputs = _JOINT_OUTPUTS if joint else ("energy",)
    if output not in outputs:
        raise ValueError(
            f"output must be one of {outputs} for this model, got {output!r}"
        )
    model.refresh_constraints()
    inputs = keras.Input(model.sample_shape, name="x")
    f = _plain_network(model.network)(inputs)
    scaled = keras.layers.Rescaling(model.k_coef_lip, name="k_coef_lip")(f)
    if not joint:
        result = keras.layers.Reshape((), name="energy")(scaled)
    elif output == "energy":  # −logsumexp: TensorFlow ops, loadable in safe mode
        result = tf.math.negative(tf.math.reduce_logsumexp(scaled, axis=1))
    elif output == "probabilities":
        result = keras.layers.Softmax(name="probabilities")(scaled)
    else:
        result = scaled
    plain = keras.Model(inputs, result, name=f"{model.network.name}_{output}")
    leftover = [layer.name for layer in flat_layers(plain) if _is_deel_lip(layer)]
    if leftover:  # pragma: no cover  (every branch of _plain_layer replaces them)
        raise RuntimeError(f"deel-lip layers left in the export: {leftover}")
    if check:
        x = model.buffer.prior_sample(_CHECK_POINTS, [model.seed, 7])
        if output == "energy":
            expected = model.energy(x).numpy()
        elif output == "logits":
            expected = model.logits(x).numpy()
        else:
            expected = model.predict_proba(x)
        got = plain(x, training=False).numpy()
        scale = max(1.0, float(np.abs(expected).max()))
        error = float(np.abs(got - expected).max())
        if not error <= EXPORT_RTOL * scale:
            raise RuntimeError(
                f"the exported energy differs from the model's by {error:.3g} "
                f"(tolerance {EXPORT_RTOL * scale:.3g}): please report this bug"
            )
    return plain

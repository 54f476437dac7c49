r"""Exports of a trained :class:`~deel_ebm.EnergyModel` and a checked loader.

- :func:`export_vanilla`: a plain Keras model of the energy :math:`E = k f`, built
  from stock Keras layers only (deel-lip's ``vanilla_export`` for the constrained
  layers, stock layers and TensorFlow ops for its activations and poolings), that
  saves and loads with no custom objects.
- :func:`export_saved_model`: a TensorFlow SavedModel with the signatures
  ``energy``, ``sample`` and ``sample_from``, loadable by ``tf.saved_model.load``
  alone (no deel-ebm, deel-lip or Keras import needed to serve it).
- :func:`load_model`: ``keras.models.load_model`` for EnergyModels, in safe mode,
  with a clear :class:`ModelLoadError` for a missing, truncated or corrupted file
  instead of a half-loaded model; :func:`restore_checkpoint` (from
  :mod:`deel_ebm.persistence`) does the same for ``tf.train.Checkpoint`` files.

The same exports are methods of the model: ``model.export_vanilla()`` and
``model.export_saved_model(path)``.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
from deel.lip import layers as dl
from deel.lip.layers import Condensable

from deel_ebm._backend import keras, tf
from deel_ebm.model import EnergyModel
from deel_ebm.persistence import ModelLoadError, restore_checkpoint

__all__ = [
    "export_vanilla",
    "export_saved_model",
    "load_model",
    "restore_checkpoint",
    "ModelLoadError",
    "SQRT_FLOOR",
    "EXPORT_RTOL",
]

#: The exported L2-norm poolings compute sqrt(max(z, SQRT_FLOOR)): the same values
#: as deel-lip above the floor, and a finite gradient at 0 (deel-lip uses a custom
#: gradient there) so that Langevin chains on the exported energy stay finite.
SQRT_FLOOR = 1e-12
#: Relative agreement between the exported and the original energy checked at export.
EXPORT_RTOL = 1e-5
_CHECK_POINTS = 64
_KERAS_FILES = ("config.json", "metadata.json", "model.weights.h5")


def _check_model(model):
    if not isinstance(model, EnergyModel):
        raise TypeError(f"model must be a deel_ebm EnergyModel, got {model!r}")


def _check_path(path, name="path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {path!r}")
    return Path(path)


# ------------------------------------------------------------ plain network
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


def _flat(network):
    if not isinstance(network, keras.Model):
        return [network]
    return [leaf for layer in network.layers for leaf in _flat(layer)]


def export_vanilla(model, check: bool = True) -> keras.Model:
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

    Args:
        model: a :class:`~deel_ebm.EnergyModel`.
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
        >>> energy(x).shape                                      # (n,)
    """
    _check_model(model)
    if not isinstance(check, bool):
        raise TypeError(f"check must be a bool, got {check!r}")
    model.refresh_constraints()
    inputs = keras.Input(model.sample_shape, name="x")
    f = _plain_network(model.network)(inputs)
    energy = keras.layers.Rescaling(model.k_coef_lip, name="k_coef_lip")(f)
    energy = keras.layers.Reshape((), name="energy")(energy)
    plain = keras.Model(inputs, energy, name=f"{model.network.name}_energy")
    leftover = [layer.name for layer in _flat(plain) if _is_deel_lip(layer)]
    if leftover:  # pragma: no cover  (every branch of _plain_layer replaces them)
        raise RuntimeError(f"deel-lip layers left in the export: {leftover}")
    if check:
        x = model.buffer.prior_sample(_CHECK_POINTS, [model.seed, 7])
        expected = model.energy(x).numpy()
        got = plain(x, training=False).numpy()
        scale = max(1.0, float(np.abs(expected).max()))
        error = float(np.abs(got - expected).max())
        if not error <= EXPORT_RTOL * scale:
            raise RuntimeError(
                f"the exported energy differs from the model's by {error:.3g} "
                f"(tolerance {EXPORT_RTOL * scale:.3g}): please report this bug"
            )
    return plain


# ------------------------------------------------------------ SavedModel
class _ServedEnergy(tf.Module):
    """Energy and Langevin sampling on plain weights, for ``tf.saved_model``."""

    def __init__(self, model, plain, num_steps):
        super().__init__(name="deel_ebm_energy_model")
        sampler = model.sampler
        self.network = plain
        self.sampler = type(sampler).from_config(sampler.get_config())
        self.sampler.build((None, *model.sample_shape))  # weights exist already
        self.k_coef_lip = tf.Variable(model.k_coef_lip, trainable=False)
        self.num_steps = tf.Variable(
            sampler.num_steps if num_steps is None else num_steps, trainable=False
        )
        self._steps = int(self.num_steps.numpy())
        self._shape = tuple(model.sample_shape)
        buffer = model.buffer
        self._prior = (buffer.prior, *buffer.domain, buffer.prior_std)
        state_spec = tf.TensorSpec((None, *self._shape), tf.float32)
        seed_spec = tf.TensorSpec((2,), tf.int64, name="seed")
        self.energy = tf.function(self._energy, input_signature=[state_spec])
        self.sample = tf.function(
            self._sample, input_signature=[tf.TensorSpec((), tf.int32), seed_spec]
        )
        self.sample_from = tf.function(
            self._sample_from, input_signature=[state_spec, seed_spec]
        )

    def _energy(self, x):
        return self.network(x, training=False)

    def _prior_sample(self, n, seed):
        prior, low, high, std = self._prior
        shape = tf.concat([[n], tf.constant(self._shape, tf.int32)], axis=0)
        if prior == "uniform":
            return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)
        std = std if std is not None else (high - low) / 4.0
        return (low + high) / 2.0 + std * tf.random.stateless_normal(shape, seed)

    def _sample_from(self, init, seed):
        return self.sampler.run(self._energy, init, seed, self._steps)[0]

    def _sample(self, n, seed):
        prior_seed, chain_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, num=2)
        )
        return self._sample_from(self._prior_sample(n, prior_seed), chain_seed)


def export_saved_model(model, path, num_steps: int | None = None) -> Path:
    r"""Save a TensorFlow SavedModel that serves energies and samples.

    The SavedModel holds the plain network of :func:`export_vanilla` (constrained
    weights frozen at export), a copy of the sampler (its kind, current step size,
    noise scale, annealing and domain clip) and the buffer's prior. Load it with
    ``tf.saved_model.load(path)`` only; no deel-ebm, deel-lip or Keras import is
    needed. Functions of the loaded object (and serving signatures of the same
    names, returning dicts):

    - ``energy(x)``: ``x`` float32 ``(n, *sample_shape)`` → energies ``(n,)``
      (signature output ``"energy"``; also ``serving_default``);
    - ``sample(n, seed)``: ``n`` int32 scalar, ``seed`` int64 ``(2,)`` → samples
      ``(n, *sample_shape)``: ``num_steps`` Langevin steps from prior draws
      (output ``"samples"``);
    - ``sample_from(init, seed)``: the same chain from the states ``init``.

    The same ``seed`` gives the same samples. The loaded object's variables
    ``k_coef_lip`` and ``num_steps`` record the export's settings (both are
    compiled into the functions: assigning them changes nothing).

    Args:
        model: a :class:`~deel_ebm.EnergyModel`.
        path: directory to write (created; must not hold another SavedModel).
        num_steps: chain length of ``sample`` (default: the model sampler's).

    Returns:
        The path written.

    Raises:
        TypeError: if ``model`` is not an EnergyModel, ``path`` not a path or
            ``num_steps`` not an int.
        ValueError: for a negative ``num_steps``, a ``path`` that is a file or
            already holds a SavedModel, or a layer :func:`export_vanilla` cannot
            export.

    Example:
        >>> export_saved_model(model, "served")
        >>> served = tf.saved_model.load("served")        # in any TF program
        >>> served.energy(tf.zeros([4, 2]))                 # (4,)
        >>> served.sample(tf.constant(100), tf.constant([0, 1], tf.int64))
    """
    _check_model(model)
    path = _check_path(path)
    if num_steps is not None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int):
            raise TypeError(f"num_steps must be an int, got {num_steps!r}")
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file, not a directory")
    if (path / "saved_model.pb").exists():
        raise ValueError(f"{str(path)!r} already holds a SavedModel")
    module = _ServedEnergy(model, export_vanilla(model), num_steps)
    signatures = {
        "serving_default": tf.function(
            lambda x: {"energy": module.energy(x)},
            input_signature=module.energy.input_signature,
        ),
        "sample": tf.function(
            lambda n, seed: {"samples": module.sample(n, seed)},
            input_signature=module.sample.input_signature,
        ),
        "sample_from": tf.function(
            lambda init, seed: {"samples": module.sample_from(init, seed)},
            input_signature=module.sample_from.input_signature,
        ),
    }
    signatures["energy"] = signatures["serving_default"]
    tf.saved_model.save(module, os.fspath(path), signatures=signatures)
    return path


# ------------------------------------------------------------ loading
def _check_keras_archive(path):
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"{str(path)!r} is not a valid .keras archive (not a zip file: truncated "
            "or corrupted?)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [name for name in _KERAS_FILES if name not in names]
            broken = None if missing else archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
        raise ModelLoadError(
            f"{str(path)!r} is a damaged .keras archive: {err}"
        ) from err
    if missing:
        raise ModelLoadError(
            f"{str(path)!r} is an incomplete .keras archive: {missing} missing"
        )
    if broken is not None:
        raise ModelLoadError(
            f"{str(path)!r} is a corrupted .keras archive: {broken!r} fails its CRC "
            "check"
        )


def _check_optimizer_restored(path, model):
    """Raise if Keras skipped the saved optimizer state (it only logs a warning).

    Keras restores the optimizer only when the file holds as many variables as
    the rebuilt optimizer. A fresh optimizer (its step counter alone, at 0) has
    nothing to restore; anything else that does not match was dropped.
    """
    import h5py  # a tf-keras dependency

    if model.optimizer is None:
        return
    with zipfile.ZipFile(path) as archive:
        weights = archive.read("model.weights.h5")
    with h5py.File(io.BytesIO(weights), "r") as h5:
        group = h5.get("optimizer/vars")
        saved = [] if group is None else [group[k][()] for k in sorted(group, key=int)]
    loaded = len(model.optimizer.variables)
    fresh = len(saved) == 1 and int(saved[0]) == 0
    if len(saved) != loaded and not fresh:
        raise ModelLoadError(
            f"{str(path)!r}: the optimizer state was not restored ({len(saved)} "
            f"variables saved, {loaded} in the rebuilt optimizer); load with "
            "compile=False to get the model without it"
        )


def _check_saved_model_dir(path):
    missing = [
        name
        for name, exists in (
            ("saved_model.pb", (path / "saved_model.pb").is_file()),
            ("variables/", (path / "variables").is_dir()),
        )
        if not exists
    ]
    if missing:
        raise ModelLoadError(
            f"{str(path)!r} is not a complete SavedModel directory: {missing} missing"
        )


def load_model(path, compile: bool = True) -> EnergyModel:
    """Load an EnergyModel saved with ``model.save``, or raise a clear error.

    Accepts a ``.keras`` file (checked first: a zip archive whose members are all
    present and pass their CRC check) or a SavedModel directory. Loading runs in
    Keras' safe mode (no deserialisation of Python code). Any failure raises
    :class:`ModelLoadError` naming the file and the cause, so a damaged file never
    yields a half-loaded model; this includes an optimizer state that Keras would
    skip with a mere log line (``compile=True``). ``tf.keras.models.load_model``
    loads the same files without custom objects, but without these checks.

    Args:
        path: a ``.keras`` file or a SavedModel directory.
        compile: also restore the optimizer and compile the model.

    Returns:
        The :class:`~deel_ebm.EnergyModel`.

    Raises:
        TypeError: when ``path`` is not a str or path-like.
        FileNotFoundError: when ``path`` does not exist.
        ModelLoadError: for a truncated, corrupted or incomplete file, or a file
            that does not hold an EnergyModel.

    Example:
        >>> model.save("ebm.keras")
        >>> model = deel_ebm.export.load_model("ebm.keras")
    """
    path = _check_path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved model at {str(path)!r}")
    if path.is_dir():
        _check_saved_model_dir(path)
    elif path.suffix == ".keras":
        _check_keras_archive(path)
    else:
        raise ModelLoadError(
            f"{str(path)!r}: expected a .keras file or a SavedModel directory"
        )
    try:
        model = keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as err:  # Keras raises many kinds; keep the cause chained
        raise ModelLoadError(
            f"could not load the model saved at {str(path)!r}: "
            f"{type(err).__name__}: {err}"
        ) from err
    if not isinstance(model, EnergyModel):
        raise ModelLoadError(
            f"{str(path)!r} was loaded as {type(model).__name__}, not a deel_ebm "
            "EnergyModel (was it saved from another model, or in Keras' SavedModel "
            "directory format, which cannot rebuild one? Save to a .keras file)"
        )
    if compile and path.suffix == ".keras":
        _check_optimizer_restored(path, model)
    return model

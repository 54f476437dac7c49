r"""Checked loading of saved EnergyModels.

:func:`load_model` is ``keras.models.load_model`` for EnergyModels, in safe mode,
with a clear :class:`~deel_ebm.core.checkpoints.ModelLoadError` for a missing,
truncated or corrupted file instead of a half-loaded model;
:func:`~deel_ebm.core.checkpoints.restore_checkpoint` does the same for
``tf.train.Checkpoint`` files.
"""

from __future__ import annotations

import io
import zipfile
import zlib

from deel_ebm._backend import keras
from deel_ebm.core import EnergyModel
from deel_ebm.core.checkpoints import ModelLoadError
from deel_ebm.export._common import check_path

__all__ = ["load_model"]

_KERAS_FILES = ("config.json", "metadata.json", "model.weights.h5")


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
        >>> loaded = deel_ebm.export.load_model("ebm.keras")
        >>> type(loaded).__name__
        'EnergyModel'
    """
    path = check_path(path)
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

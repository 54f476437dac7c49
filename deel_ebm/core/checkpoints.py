r"""Checkpoints: all-or-nothing restores and verified ``BackupAndRestore`` backups.

An :class:`~deel_ebm.EnergyModel` keeps its whole training state in variables:
weights and cached constrained kernels, optimizer slots and step counter, replay
buffer, sampler step size and noise scale, loss weights.
:func:`restore_checkpoint` is a ``tf.train.Checkpoint`` restore that reads and
checksums the whole checkpoint first, checks that every variable of the model was
found in it, and puts every variable back as it was if anything fails: a
truncated, corrupted or foreign checkpoint raises :class:`ModelLoadError` and never
leaves a half-restored model. :func:`check_backups` applies it to the backup of
each ``BackupAndRestore`` callback before ``fit`` starts.
"""

from __future__ import annotations

import os

from deel_ebm._backend import keras, tf

__all__ = ["ModelLoadError", "restore_checkpoint", "check_backups"]


class ModelLoadError(ValueError):
    """A saved model or checkpoint is missing pieces, corrupted, or does not match."""


def _checkpoint_prefix(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
    path = os.fspath(path)
    if tf.io.gfile.isdir(path):
        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            raise FileNotFoundError(
                f"no checkpoint in the directory {path!r} (no valid 'checkpoint' "
                "state file pointing to an existing .index file)"
            )
        return prefix
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"no checkpoint at {path!r} ({path}.index missing)")
    return path


def _cause(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:300]}"


def _read_all(prefix: str) -> None:
    """Read and checksum every tensor of a checkpoint, touching no variable."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except Exception as err:  # DataLoss, OutOfRange, IndexError ... keep the cause
        raise ModelLoadError(
            f"the checkpoint {prefix!r} is truncated or corrupted "
            f"({_cause(err)}); nothing was restored"
        ) from err


def _variables(root):
    found, seen = [], set()
    for obj in tf.train.TrackableView(root).descendants():
        if isinstance(obj, tf.Variable) and id(obj) not in seen:
            seen.add(id(obj))
            found.append(obj)
    return found


def restore_checkpoint(target, path) -> str:
    """Restore a model or a ``tf.train.Checkpoint`` completely, or not at all.

    Steps: resolve ``path`` (a checkpoint prefix, or a directory whose latest
    checkpoint is used); read and checksum every tensor of the checkpoint; build
    the optimizer of a Keras model so that its slots are matched; snapshot the
    variables; restore; check that every object of ``target`` was found in the
    checkpoint (``assert_existing_objects_matched``). On any failure the
    snapshot is put back and :class:`ModelLoadError` is raised. Values in the
    checkpoint that ``target`` does not hold (e.g. the epoch counters of
    ``BackupAndRestore``) are allowed.

    Args:
        target: a ``keras.Model`` (restored as ``tf.train.Checkpoint(model=...)``,
            the layout ``BackupAndRestore`` writes) or a ``tf.train.Checkpoint``.
        path: a checkpoint prefix (what ``Checkpoint.write`` / ``save`` return) or
            a directory managed by a ``tf.train.CheckpointManager``.

    Returns:
        The checkpoint prefix restored.

    Raises:
        TypeError: for a ``target`` or ``path`` of the wrong type.
        FileNotFoundError: when there is no checkpoint at ``path``.
        ModelLoadError: for a truncated or corrupted checkpoint, or one that does
            not hold every variable of ``target``.

    Example:
        >>> prefix = tf.train.Checkpoint(model=model).write("ckpt/ebm")
        >>> restore_checkpoint(new_model, prefix)  # new_model: same recipe, compiled
        'ckpt/ebm'
    """
    if isinstance(target, keras.Model):
        model, checkpoint = target, tf.train.Checkpoint(model=target)
    elif isinstance(target, tf.train.Checkpoint):
        model, checkpoint = None, target
    else:
        raise TypeError(
            f"target must be a keras.Model or a tf.train.Checkpoint, got {target!r}"
        )
    prefix = _checkpoint_prefix(path)
    _read_all(prefix)
    optimizer = getattr(model, "optimizer", None)
    if hasattr(optimizer, "build") and not getattr(optimizer, "_built", False):
        optimizer.build(model.trainable_variables)  # create slots to be matched
    variables = _variables(checkpoint)
    snapshot = [v.read_value() for v in variables]
    try:
        status = checkpoint.read(prefix)  # restore() would add a save_counter
        status.assert_existing_objects_matched()
        status.expect_partial()  # extra values (e.g. epoch counters) are fine
    except Exception as err:
        for variable, value in zip(variables, snapshot):
            variable.assign(value)
        raise ModelLoadError(
            f"the checkpoint {prefix!r} does not match the model "
            f"({_cause(err)}); every variable was put back as it was"
        ) from err
    return prefix


def check_backups(model, callbacks) -> None:
    """Verify the backup of every ``BackupAndRestore`` in ``callbacks``.

    Called by ``EnergyModel.fit`` before training: Keras restores a backup
    without checking it, and silently starts from scratch when the files of the
    recorded backup are gone. Here the recorded backup is restored with
    :func:`restore_checkpoint` (all or nothing), and a recorded backup whose
    files are missing raises :class:`ModelLoadError`. A directory with no
    completed backup (a crash during the first one) is left to Keras, which
    starts from scratch.
    """
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.BackupAndRestore):
            continue
        # where Keras reads backups from, on every worker (gfile: remote paths)
        directory = os.path.join(os.fspath(callback.backup_dir), "chief")
        if not tf.io.gfile.exists(os.path.join(directory, "checkpoint")):
            continue  # no backup was completed: Keras starts from scratch
        prefix = tf.train.latest_checkpoint(directory)
        if prefix is None:
            raise ModelLoadError(
                f"the BackupAndRestore directory {directory!r} records a backup "
                "whose files are gone (truncated or corrupted backup): training "
                "would silently restart from scratch. Remove the directory to "
                "start over."
            )
        restore_checkpoint(model, prefix)

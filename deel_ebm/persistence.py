r"""Checkpoints, exact resume and all-or-nothing restores.

An :class:`~deel_ebm.EnergyModel` keeps its whole training state in variables:
weights and cached constrained kernels, optimizer slots and step counter, replay
buffer, sampler step size and noise scale, loss weights. Its training step draws
every random number statelessly from ``(seed, optimizer.iterations)``. So a
restored model continues exactly where it stopped, provided it is fed the same
batches. This module supplies the two missing pieces:

- :func:`resumable_dataset`: the input pipeline that ``EnergyModel.fit`` builds for
  in-memory arrays. The batch fed at step ``s`` of epoch ``e`` is a pure function
  of ``(seed, e, s)``: epoch ``e`` visits the samples in the order of a permutation
  drawn from ``(seed, e)``. Each epoch's first batch reads where training stands
  from Keras' step counter (which ``keras.callbacks.BackupAndRestore`` restores),
  so a resumed run, even one resumed in the middle of an epoch, is fed the batches
  the uninterrupted run was fed (Keras' own shuffling restarts its random sequence
  at each ``fit`` call, and skips no data after a mid-epoch restore).
- :func:`restore_checkpoint`: ``tf.train.Checkpoint`` restore that reads and
  checksums the whole checkpoint first, checks that every variable of the model
  was found in it, and puts every variable back as it was if anything fails: a
  truncated, corrupted or foreign checkpoint raises :class:`ModelLoadError` and
  never leaves a half-restored model. :func:`check_backups` applies it to the
  backup of each ``BackupAndRestore`` callback before ``fit`` starts.
"""

from __future__ import annotations

import math
import os

import numpy as np

from deel_ebm import _pipeline
from deel_ebm._backend import keras, tf

__all__ = [
    "ModelLoadError",
    "resumable_dataset",
    "arrays_as_dataset",
    "shuffled_dataset",
    "validation_dataset",
    "restore_checkpoint",
    "check_backups",
]


class ModelLoadError(ValueError):
    """A saved model or checkpoint is missing pieces, corrupted, or does not match."""


# ------------------------------------------------------------ input pipeline
def resumable_dataset(
    data, batch_size: int, shuffle: bool, seed: int, step_counter, initial_epoch=0
) -> tf.data.Dataset:
    """Batches of in-memory ``data`` whose order depends only on seed and position.

    The position of a batch is ``initial_epoch * steps + step_counter`` with
    ``steps = ceil(n / batch_size)``: batch ``b`` of epoch ``e`` holds the samples
    ``perm_e[b * batch_size : (b + 1) * batch_size]`` where ``perm_e`` is a
    permutation drawn statelessly from ``(seed, e)`` (the identity when
    ``shuffle`` is false). The last batch of an epoch may be smaller. The counter
    is read when an iterator yields its first element, so the dataset suits
    ``fit``, which opens one iterator per epoch after ``BackupAndRestore`` has
    restored the counter.

    Only the indices live in the dataset: each batch is gathered from ``data``
    in host memory, which is neither copied nor embedded in the graph
    (``deel_ebm._pipeline``), so arrays of any size are fine.

    Args:
        data: an array or a tuple of arrays (NumPy or CPU tensors, kept by
            reference) with the same first dimension ``n``.
        batch_size: samples per batch.
        shuffle: permute the samples at each epoch.
        seed: an int: the orders of every epoch.
        step_counter: an int64 ``tf.Variable`` counting the steps done in this
            ``fit`` call (Keras' ``model._train_counter``).
        initial_epoch: the ``initial_epoch`` given to ``fit``.

    Returns:
        A ``tf.data.Dataset`` of ``steps`` batches (cardinality known).
    """
    n = int(tf.nest.flatten(data)[0].shape[0])
    steps = math.ceil(n / batch_size)
    offset = tf.constant(int(initial_epoch) * steps, tf.int64)
    seed = tf.constant(int(seed), tf.int64)

    def epoch_order(epoch):
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                order, tf.stack([seed, epoch])
            )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    def from_position(_):
        position = offset + tf.cast(step_counter.read_value(), tf.int64)
        epoch = position // steps
        batches = tf.data.Dataset.range(epoch, epoch + 2).flat_map(epoch_order)
        return batches.skip(position % steps).take(steps)

    indices = tf.data.Dataset.from_tensors(0).flat_map(from_position)
    batches = _pipeline.gather_rows(indices, _pipeline.host_arrays(data))
    batches = batches.apply(tf.data.experimental.assert_cardinality(steps))
    # no autotuning: with it, dropping an epoch's iterator (this pipeline, not a
    # plain one) sat idle for up to its growing optimisation period: 4-38 s at
    # epoch ends of the 8gaussians recipe (TF 2.20), none without
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


def arrays_as_dataset(x, y, batch_size, seed, step_counter, fit_kwargs):
    """``fit``'s in-memory arrays as a :func:`resumable_dataset`.

    Used by ``EnergyModel.fit``. Pops ``shuffle`` and ``validation_split`` from
    ``fit_kwargs`` (the split takes the last samples, as Keras does, unless
    ``validation_data`` is given). In-memory validation data becomes a
    :func:`validation_dataset` of ``validation_batch_size`` batches (by default
    ``batch_size``, as in Keras). No array is copied: batches are gathered from
    the caller's arrays. With ``sample_weight``, ``class_weight``,
    ``steps_per_epoch``, or under a multi-worker strategy (whose workers must
    shard the data), the arrays are returned unchanged for Keras to batch, and
    Keras' pipeline holds a copy of them. Under a one-worker strategy
    (``MirroredStrategy``) the batches come from :func:`shuffled_dataset` (not
    resumable bit for bit).

    Returns:
        ``(x, y, batch_size)`` to pass on to ``keras.Model.fit``.
    """
    if _multi_worker() or any(
        fit_kwargs.get(k) is not None
        for k in ("sample_weight", "class_weight", "steps_per_epoch")
    ):
        return x, y, batch_size
    data = x if y is None else (x, _pipeline.host_arrays(y))
    split = fit_kwargs.pop("validation_split", 0.0) or 0.0
    if split and fit_kwargs.get("validation_data") is None:
        cut = int(math.floor(len(x) * (1.0 - split)))
        if not 0 < cut < len(x):
            raise ValueError(
                f"validation_split={split} leaves no training or no validation "
                f"sample out of {len(x)}"
            )
        val = tf.nest.map_structure(lambda a: a[cut:], data)
        fit_kwargs["validation_data"] = val if y is not None else (val,)
        data = tf.nest.map_structure(lambda a: a[:cut], data)
    val = fit_kwargs.get("validation_data")
    size = fit_kwargs.pop("validation_batch_size", None) or batch_size  # Keras'
    if _in_memory(val):
        fit_kwargs["validation_data"] = validation_dataset(val, size)
    else:
        fit_kwargs["validation_batch_size"] = size
    shuffle = bool(fit_kwargs.pop("shuffle", True))
    if tf.distribute.has_strategy():
        return shuffled_dataset(data, batch_size, shuffle, seed), None, None
    initial_epoch = fit_kwargs.get("initial_epoch", 0)
    dataset = resumable_dataset(
        data, batch_size, shuffle, seed, step_counter, initial_epoch
    )
    return dataset, None, None


def _multi_worker() -> bool:
    """Whether ``fit`` runs under a strategy with several workers."""
    extended = tf.distribute.get_strategy().extended
    return bool(getattr(extended, "_in_multi_worker_mode", lambda: False)())


def shuffled_dataset(data, batch_size: int, shuffle: bool, seed: int):
    """Batches of in-memory ``data`` for ``fit`` under a distribution strategy.

    Like Keras' own pipeline for arrays, but gathered from host memory (no copy,
    nothing in the graph): each epoch visits the samples in a new order drawn
    from ``seed`` (in their order with ``shuffle`` false). The order restarts with each
    ``fit`` call, so a resumed distributed run sees other batches than an
    uninterrupted one would.
    """
    data = _pipeline.host_arrays(data)
    indices = tf.data.Dataset.range(int(tf.nest.flatten(data)[0].shape[0]))
    if shuffle:
        indices = indices.shuffle(
            int(indices.cardinality()), seed=int(seed), reshuffle_each_iteration=True
        )
    batches = _pipeline.gather_rows(indices.batch(int(batch_size)), data)
    return batches.prefetch(tf.data.AUTOTUNE)


def _in_memory(data) -> bool:
    """An array, or a tuple of arrays with the same length (Keras' ``(x, y)``)."""
    parts = data if isinstance(data, (tuple, list)) else (data,)
    if not parts or not all(
        isinstance(a, np.ndarray) or tf.is_tensor(a) for a in parts
    ):
        return False
    return len({int(a.shape[0]) for a in parts}) == 1


def validation_dataset(data, batch_size: int) -> tf.data.Dataset:
    """In-memory ``validation_data`` as batches in order, gathered in host memory.

    Args:
        data: an array or a tuple ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``
            of arrays with the same first dimension.
        batch_size: samples per batch (the last one may be smaller).

    Returns:
        A ``tf.data.Dataset`` of tuples, as Keras unpacks them.
    """
    data = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    arrays = _pipeline.host_arrays(data)
    indices = tf.data.Dataset.range(len(arrays[0])).batch(int(batch_size))
    return _pipeline.gather_rows(indices, arrays).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------ checkpoints
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
        >>> restore_checkpoint(new_model, prefix)  # new_model built and compiled
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

r"""Input pipelines of ``EnergyModel.fit``: exact resume, no copy of the arrays.

The training step draws every random number statelessly from ``(seed,
optimizer.iterations)``, so a restored model continues exactly where it stopped,
provided it is fed the same batches. :func:`resumable_dataset` is the input
pipeline that ``EnergyModel.fit`` builds for in-memory arrays: the batch fed at
step ``s`` of epoch ``e`` is a pure function of ``(seed, e, s)``: epoch ``e``
visits the samples in the order of a permutation drawn from ``(seed, e)``. Each
epoch's first batch reads where training stands from Keras' step counter (which
``keras.callbacks.BackupAndRestore`` restores), so a resumed run, even one resumed
in the middle of an epoch, is fed the batches the uninterrupted run was fed
(Keras' own shuffling restarts its random sequence at each ``fit`` call, and skips
no data after a mid-epoch restore).

Every pipeline carries row indices only; batches are gathered from the caller's
arrays in host memory (``deel_ebm._host_arrays``), so arrays of any size are
neither copied nor embedded in a graph.
"""

from __future__ import annotations

import math

import numpy as np

from deel_ebm import _host_arrays
from deel_ebm._backend import tf

__all__ = [
    "scale_warning",
    "SCALE_WARNING",
    "resumable_dataset",
    "arrays_as_dataset",
    "shuffled_dataset",
    "validation_dataset",
]


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
    (``deel_ebm._host_arrays``), so arrays of any size are fine.

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
    batches = _host_arrays.gather_rows(indices, _host_arrays.host_arrays(data))
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
    data = x if y is None else (x, _host_arrays.host_arrays(y))
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
    data = _host_arrays.host_arrays(data)
    indices = tf.data.Dataset.range(int(tf.nest.flatten(data)[0].shape[0]))
    if shuffle:
        indices = indices.shuffle(
            int(indices.cardinality()), seed=int(seed), reshuffle_each_iteration=True
        )
    batches = _host_arrays.gather_rows(indices.batch(int(batch_size)), data)
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
    arrays = _host_arrays.host_arrays(data)
    indices = tf.data.Dataset.range(len(arrays[0])).batch(int(batch_size))
    return _host_arrays.gather_rows(indices, arrays).prefetch(tf.data.AUTOTUNE)


#: the start of :func:`scale_warning`'s message (to filter it)
SCALE_WARNING = "the data are far from unit scale"


def scale_warning(x) -> str | None:
    """A one-line warning when data are far from unit scale, else ``None``.

    The defaults (k, the step size, the proposal's box) assume coordinates of
    order 1, as for the built-in data; data of scale 1e6 train to losses of
    1e12, data of scale 1e-4 to a flat energy.
    """
    flat = np.asarray(x, np.float64).reshape(len(x), -1)
    scale = float(np.median(flat.std(axis=0)))
    offset = float(np.max(np.abs(flat.mean(axis=0))))
    if 1e-2 <= scale <= 1e2 and offset <= 1e2 * max(scale, 1e-2):
        return None
    return SCALE_WARNING + (
        f" (median std {scale:.3g}, largest "
        f"|mean| {offset:.3g}); the defaults (k, step size, proposal box) assume "
        "coordinates of order 1: standardise them first, (x - mean) / std"
    )

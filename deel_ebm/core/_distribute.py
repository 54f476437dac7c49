"""The pieces of ``EnergyModel.train_step`` that change under ``tf.distribute``.

With a strategy (``MirroredStrategy``, ``MultiWorkerMirroredStrategy``) Keras runs
``train_step`` once per replica on ``global_batch / num_replicas`` samples. Every
variable is mirrored: each replica holds a copy, and the copies must stay equal.

- Replay buffer: the storage is split into ``num_replicas`` equal shards; replica
  ``r`` draws its chain starts only from shard ``r``, with its own seeds (the
  step's seed with the replica id folded in), so the replicas' chains are
  independent and never share a slot. The end points of every replica are
  gathered (``all_gather``) and each replica writes all of them into its own copy
  of the storage: the copies stay identical, and a save or a checkpoint holds the
  whole buffer. Cost: one all-gather of ``global_batch`` states per step.
- Gradients: each replica differentiates its loss divided by ``num_replicas``, and
  the gradients are summed across replicas (the Keras convention): the update is
  the gradient of the mean of the replicas' losses.
- Non-finite guard: the replicas must all apply the step or all skip it. The
  finite check is reduced across replicas, and, as Keras' ``LossScaleOptimizer``
  does, the ``tf.cond`` that applies the optimizer step and the buffer write runs
  in cross-replica context (``merge_call``): a branch of a ``tf.cond`` taken in
  replica context must not hold a synchronisation point.
- Variables that every replica recomputes identically (deel-lip's cached
  constrained kernels, the "stale" flag) are updated in replica context: with
  ``VariableAggregation.NONE`` each replica writes its own copy.

Without a strategy none of this runs: :func:`is_distributed` is False and the
single-device training step is the one of :mod:`deel_ebm.model`, unchanged.
"""

from __future__ import annotations

import contextlib

import numpy as np

from deel_ebm._backend import keras, tf

__all__ = [
    "is_distributed",
    "strategy_of",
    "scope_of",
    "num_replicas",
    "replica_shard",
    "replica_seed",
    "scale_loss",
    "check_batch_size",
    "apply_if_finite",
    "Mean",
]


class Mean(keras.metrics.Mean):
    """``keras.metrics.Mean`` whose saved state also loads under a strategy.

    A metric's variables are ``ON_READ`` under a strategy; ``load_model`` hands
    them the ``.keras`` file's h5py datasets, which their cross-replica
    ``assign`` cannot divide among replicas. Loading numpy arrays works.
    """

    def load_own_variables(self, store):
        super().load_own_variables({k: np.asarray(store[k]) for k in store.keys()})


def is_distributed() -> bool:
    """True inside a replica (or the scope) of a non-default strategy."""
    return tf.distribute.has_strategy()


def strategy_of(model):
    """The strategy ``model`` was built under, or ``None`` for a one-device model."""
    strategy = model.distribute_strategy
    with strategy.scope():  # the default strategy's scope does not count
        return strategy if tf.distribute.has_strategy() else None


def scope_of(model):
    """``strategy.scope()`` of the model's strategy, or a null context."""
    strategy = strategy_of(model)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def num_replicas() -> int:
    """Replicas in sync of the current strategy (1 without a strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_shard():
    """``(replica_id, num_replicas)`` in a replica of a strategy, else ``None``."""
    if not is_distributed():
        return None
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: no replica owns a shard
        return None
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def replica_seed(seed):
    """``seed`` with the replica id folded in (unchanged without a strategy)."""
    shard = replica_shard()
    if shard is None:
        return seed
    replica_id = tf.cast(shard[0], tf.int64)
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), replica_id)


def scale_loss(loss):
    """``loss / num_replicas`` under a strategy (summed gradients = mean loss)."""
    if not is_distributed():
        return loss
    return loss / tf.cast(num_replicas(), loss.dtype)


def check_batch_size(batch_size, capacity: int, replicas: int, n=None) -> None:
    """Refuse a configuration that the replicas' buffer shards cannot serve.

    The global batch (at most ``capacity``, checked by ``fit``) is split into
    replica batches of at most ``ceil(batch_size / replicas)`` chains, which then
    fit in a shard of ``capacity / replicas`` slots.

    Args:
        batch_size: the global batch size (``None``: unknown, not checked).
        capacity: the buffer's capacity (``None``: no buffer is drawn from).
        replicas: number of replicas in sync.
        n: number of training samples, when known (checks the last batch).

    Raises:
        ValueError: when ``capacity`` is not a multiple of ``replicas``, or when
            the last batch would leave a replica without samples.
    """
    if replicas <= 1:
        return
    if capacity is not None and capacity % replicas:
        raise ValueError(
            f"the replay buffer capacity {capacity} cannot be split into "
            f"{replicas} equal shards (one per replica): choose a capacity that "
            f"is a multiple of {replicas}"
        )
    last = None if n is None or not batch_size else n % batch_size
    if last and last < replicas:
        raise ValueError(
            f"the last batch of {last} samples ({n} samples, batch size "
            f"{batch_size}) leaves a replica without samples with {replicas} "
            "replicas: drop a few samples or change the batch size"
        )


def _all_finite(tensors):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def apply_if_finite(
    optimizer, grads, variables, local_finite, buffer, slots, states, on_applied=None
):
    """Apply a replica's step on every replica, or on none (replica context).

    Sums the gradients across replicas, gathers every replica's ``(slots,
    states)``, and, if every replica's step is finite (``local_finite`` reduced
    across replicas) and so are the summed gradients, applies the summed
    gradients and writes the gathered states into every copy of the buffer.

    ``on_applied`` (no argument) runs in every replica after the update. With
    ``buffer=None`` nothing is gathered or written (proposal negatives).

    Returns:
        A boolean tensor, True when the step was applied.
    """
    context = tf.distribute.get_replica_context()
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    variables = [v for _, v in pairs]
    not_finite = tf.cast(tf.logical_not(local_finite), tf.float32)
    reduced = context.all_reduce(
        tf.distribute.ReduceOp.SUM, [g for g, _ in pairs] + [not_finite]
    )
    summed = reduced[:-1]
    finite = tf.logical_and(tf.equal(reduced[-1], 0.0), _all_finite(summed))
    all_slots = all_states = None  # buffer None: no chain states to write
    if buffer is not None:
        all_slots = context.all_gather(slots, axis=0)
        all_states = context.all_gather(tf.cast(states, buffer.storage.dtype), axis=0)

    def apply_in_replica(summed):
        optimizer.apply_gradients(
            zip(summed, variables), skip_gradients_aggregation=True
        )
        if on_applied is not None:
            on_applied()

    if tf.__internal__.distribute.strategy_supports_no_merge_call():

        def apply():
            apply_in_replica(summed)
            if buffer is not None:
                buffer.write(all_slots, all_states)
            return tf.constant(True)

        return tf.cond(finite, apply, lambda: tf.constant(False))

    def cross_replica(strategy, finite, summed, all_slots, all_states):
        finite = strategy.experimental_local_results(finite)[0]

        def apply():
            strategy.extended.call_for_each_replica(apply_in_replica, args=(summed,))
            if buffer is not None:
                strategy.extended.update(
                    buffer.storage,
                    lambda var, s, x: var.scatter_nd_update(tf.expand_dims(s, -1), x),
                    args=(all_slots, all_states),
                )
            return tf.constant(True)

        return tf.cond(finite, apply, lambda: tf.constant(False))

    return context.merge_call(
        cross_replica, args=(finite, summed, all_slots, all_states)
    )

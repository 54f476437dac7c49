"""Replay buffer of persistent Markov chains, held in ``tf.Variable`` storage.

Persistent contrastive divergence (IGEBM, JEM) starts each training step's chains
from negatives of earlier steps. :class:`ReplayBuffer` keeps ``capacity`` such
states in one non-trainable variable, so the buffer lives in graph mode, inside
``tf.function`` and XLA, and is saved by checkpoints and ``model.save`` with the
model that owns it.
"""

from __future__ import annotations

import math

from deel_ebm._backend import keras, tf
from deel_ebm._checks import (
    check_count,
    check_domain,
    check_positive,
    check_probability,
)

__all__ = [
    "ReplayBuffer",
    "PRIORS",
    "standard_draws",
    "prior_from_standard",
    "prior_sample",
    "DEFAULT_CAPACITY",
    "DEFAULT_REINIT_PROB",
    "DEFAULT_DOMAIN",
]

PRIORS = ("uniform", "gaussian")
DEFAULT_CAPACITY = 10_000
DEFAULT_REINIT_PROB = 0.05
DEFAULT_DOMAIN = (-1.0, 1.0)
# the initial fill is mapped from standard draws to the prior this many floats
# (1 MB) at a time, in place: the buffer never holds more than its array and a slice
_FILL_SLICE_ELEMENTS = 1 << 18


def standard_draws(shape, seed, prior: str) -> tf.Tensor:
    """U[0, 1) (``prior="uniform"``) or N(0, 1) draws: the raw op of
    ``tf.random.stateless_uniform`` / ``stateless_normal``."""
    key, counter = tf.raw_ops.StatelessRandomGetKeyCounter(seed=seed)
    op = (
        tf.raw_ops.StatelessRandomUniformV2
        if prior == "uniform"
        else tf.raw_ops.StatelessRandomNormalV2
    )
    return op(
        shape=shape,
        key=key,
        counter=counter,
        alg=tf.random.Algorithm.AUTO_SELECT.value,
        dtype=tf.float32,
    )


def prior_from_standard(draws, prior: str, domain, prior_std=None) -> tf.Tensor:
    """The prior from :func:`standard_draws`, with the float32 operations of
    ``tf.random.stateless_uniform(shape, seed, low, high)`` and of
    ``center + std * tf.random.stateless_normal(shape, seed)`` (whose
    ``draws * 1 + 0`` is kept), so the values are theirs bit for bit.

    The uniform prior lives on the box ``domain``; the Gaussian one has mean the
    box's centre and standard deviation ``prior_std`` (default: a quarter of the
    box's width).
    """
    low, high = domain
    if prior == "uniform":
        low_t, high_t = tf.constant(low, tf.float32), tf.constant(high, tf.float32)
        return draws * (high_t - low_t) + low_t
    std = prior_std if prior_std is not None else (high - low) / 4.0
    return (low + high) / 2.0 + std * (draws * 1.0 + 0.0)


def prior_sample(shape, seed, prior: str, domain, prior_std=None) -> tf.Tensor:
    """Independent draws of a buffer's prior (a pure function of its arguments)."""
    return prior_from_standard(
        standard_draws(shape, seed, prior), prior, domain, prior_std
    )


@keras.utils.register_keras_serializable(package="deel_ebm")
class ReplayBuffer(keras.layers.Layer):
    """A fixed-size store of chain states with re-initialisation from a prior.

    At each training step, :meth:`draw` picks ``batch_size`` distinct slots at
    random; each start is the stored state, or, with probability ``reinit_prob``, a
    fresh draw of the prior. :meth:`write` puts the chains' end points back into
    the same slots. The storage is filled with prior draws when the buffer is built,
    so the first steps start from the prior as in IGEBM.

    Under a ``tf.distribute`` strategy the storage is split into one shard per
    replica (:meth:`shard_capacity`): ``EnergyModel`` has replica ``r`` draw only
    from shard ``r`` (``draw(..., shard=(r, num_replicas))``) with its own seeds,
    and writes every replica's end points into every copy of the storage, so the
    copies stay equal and a save holds the whole buffer.

    Args:
        capacity: number of states kept (IGEBM and JEM keep 10 000).
        reinit_prob: probability in [0, 1] that a chain restarts from the prior.
        prior: ``"uniform"`` on the box ``domain`` or ``"gaussian"`` with mean the
            centre of ``domain`` and standard deviation ``prior_std``.
        domain: ``(low, high)`` of the data, the same bound on every coordinate.
        prior_std: standard deviation of the Gaussian prior (defaults to a quarter
            of the domain's width).
        seed: seed of the initial fill.

    Raises:
        ValueError: on a capacity below 1, a ``reinit_prob`` outside [0, 1], an
            unknown prior or an empty domain.

    Example:
        >>> buffer = ReplayBuffer(capacity=1000, reinit_prob=0.05, domain=(-4, 4))
        >>> buffer.build((None, 2))
        >>> starts, slots = buffer.draw(256, seed=[0, 1])
        >>> buffer.write(slots, starts)
        >>> starts.shape
        TensorShape([256, 2])
    """

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        reinit_prob: float = DEFAULT_REINIT_PROB,
        prior: str = "uniform",
        domain=DEFAULT_DOMAIN,
        prior_std: float | None = None,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.capacity = check_count("capacity", capacity, minimum=1)
        self.reinit_prob = check_probability("reinit_prob", reinit_prob)
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        self.prior = prior
        self.domain = check_domain(domain)
        self.prior_std = check_positive("prior_std", prior_std, allow_none=True)
        self.seed = check_count("seed", seed)
        self.storage = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one stored state (the model's input shape without batch)."""
        if self.storage is None:
            raise ValueError("the buffer is not built yet: call build(input_shape)")
        return tuple(self.storage.shape[1:])

    def build(self, input_shape):
        shape = tuple(tf.TensorShape(input_shape).as_list()[1:])
        if not shape or any(d is None for d in shape):
            raise ValueError(
                f"the buffer needs a fully known sample shape, got {input_shape}"
            )
        full, drawn = (self.capacity, *shape), []

        def standard_draws(*args, **kwargs):  # the variable adopts them, no copy
            drawn.append(True)
            return self._standard_sample(full, [self.seed, 0])

        self.storage = self.add_weight(
            name="storage",
            shape=full,
            dtype=tf.float32,
            initializer=standard_draws,
            trainable=False,
        )
        if drawn:  # not when Keras filled it from a pending checkpoint restore
            self._standard_to_prior_in_place()
        super().build(input_shape)

    def _standard_to_prior_in_place(self):
        """Map the storage's standard draws to the prior, a slice at a time.

        The result is bit for bit ``_prior_sample((capacity, ...), [seed, 0])``,
        which, computed whole, holds three arrays of the storage's size at once
        (draws, scaled draws, shifted draws). Sparse reads and writes update the
        variable in place; a dense slice would alias it and make the next write
        copy the whole storage. Under a ``tf.distribute`` strategy each replica's
        copy of the storage is mapped alike.
        """
        rows = max(1, _FILL_SLICE_ELEMENTS // math.prod(self.sample_shape))
        strategy = tf.distribute.get_strategy()
        for storage in strategy.experimental_local_results(self.storage):
            with tf.device(storage.device):
                for start in range(0, self.capacity, rows):
                    slots = tf.range(start, min(start + rows, self.capacity))
                    values = self._from_standard(storage.sparse_read(slots))
                    storage.scatter_update(tf.IndexedSlices(values, slots))

    def _standard_sample(self, shape, seed) -> tf.Tensor:
        return standard_draws(shape, seed, self.prior)

    def _from_standard(self, draws) -> tf.Tensor:
        return prior_from_standard(draws, self.prior, self.domain, self.prior_std)

    def _prior_sample(self, shape, seed) -> tf.Tensor:
        return self._from_standard(self._standard_sample(shape, seed))

    def prior_sample(self, n: int, seed) -> tf.Tensor:
        """``n`` independent draws of the prior, shape ``(n, *sample_shape)``."""
        return self._prior_sample((n, *self.sample_shape), seed)

    def shard_capacity(self, num_shards: int) -> int:
        """Slots per shard when the storage is split into ``num_shards`` slices.

        Raises:
            ValueError: when ``capacity`` is not a multiple of ``num_shards``.
        """
        num_shards = check_count("num_shards", num_shards, minimum=1)
        if self.capacity % num_shards:
            raise ValueError(
                f"the replay buffer capacity {self.capacity} cannot be split into "
                f"{num_shards} equal shards (one per replica): choose a capacity "
                f"that is a multiple of {num_shards}"
            )
        return self.capacity // num_shards

    def draw(self, batch_size: int, seed, shard=None):
        """Chain starts for one step.

        Args:
            batch_size: number of chains (at most ``capacity``, or the shard's
                capacity).
            seed: a shape-[2] integer seed (stateless random ops).
            shard: ``None`` (draw from the whole storage) or ``(index,
                num_shards)``: draw only from slots ``index * S`` to
                ``(index + 1) * S - 1``, ``S = capacity // num_shards`` (see
                :meth:`shard_capacity`). ``index`` may be a tensor (a replica id).

        Returns:
            ``(starts, slots)``: starts of shape ``(batch_size, *sample_shape)`` and
            the int32 slots they came from, distinct, to pass to :meth:`write`.
        """
        size = self.capacity if shard is None else self.shard_capacity(shard[1])
        if isinstance(batch_size, int) and batch_size > size:
            raise ValueError(
                f"batch size {batch_size} exceeds the buffer capacity {size}"
                + ("" if shard is None else f" per shard ({shard[1]} shards)")
            )
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
        # top_k of i.i.d. uniforms: batch_size distinct slots, in O(capacity).
        keys = tf.random.stateless_uniform([size], seeds[0])
        slots = tf.math.top_k(keys, k=batch_size, sorted=False).indices
        if shard is not None:
            slots += tf.cast(shard[0], tf.int32) * size
        starts = tf.gather(self.storage, slots)
        if self.reinit_prob > 0.0:
            fresh = self._prior_sample(tf.shape(starts), seeds[1])
            restart = tf.random.stateless_uniform([batch_size], seeds[2])
            restart = restart < self.reinit_prob
            mask = tf.reshape(restart, [-1] + [1] * len(self.sample_shape))
            starts = tf.where(mask, fresh, starts)
        return starts, slots

    def write(self, slots, states) -> None:
        """Store ``states`` (chain end points) into ``slots`` (from :meth:`draw`)."""
        self.storage.scatter_nd_update(
            tf.expand_dims(slots, -1), tf.cast(states, self.storage.dtype)
        )

    def call(self, inputs):  # a buffer has no forward pass; keep Keras happy
        return inputs

    def get_config(self):
        config = super().get_config()
        config.update(
            capacity=self.capacity,
            reinit_prob=self.reinit_prob,
            prior=self.prior,
            domain=list(self.domain),
            prior_std=self.prior_std,
            seed=self.seed,
        )
        return config

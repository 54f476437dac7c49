"""Seeded categorical draws that XLA compiles.

``tf.random.stateless_categorical`` has no XLA kernel for the int64 seeds the
library splits (``StatelessMultinomial``), so a train step compiled with
``jit_compile=True`` could not draw mixture components or resample walkers.
:func:`categorical` draws by the inverse of the cumulative distribution: one
uniform per draw and a sorted search, both compiled by XLA, in float64 so that
weights far below the largest keep their share. XLA's sorted search compares
every draw with every category: ``n × K`` work, fine for the library's sizes
(4096 draws of 51 components, 1024 walkers). float64 does not compile for TPUs.
"""

from __future__ import annotations

from deel_ebm._backend import tf


def _inverse_cdf(log_weights, u) -> tf.Tensor:
    """The index of each ``u`` in [0, 1) under the cdf of ``softmax(log_weights)``
    (float64 tensors; non-finite log-weights count as zero weight; if none is
    finite, every category has the same weight)."""
    finite = tf.math.is_finite(log_weights)
    safe = tf.where(finite, log_weights, tf.constant(-1e300, log_weights.dtype))
    w = tf.where(finite, tf.exp(safe - tf.reduce_max(safe)), tf.zeros_like(safe))
    w = tf.where(tf.reduce_any(finite), w, tf.ones_like(w))  # none finite: uniform
    cdf = tf.math.cumsum(w)
    cdf = cdf / cdf[-1]  # the last entry is exactly 1: every u < 1 falls inside
    # side="right": a category of zero weight (a flat step of the cdf) is never
    # drawn, also at u = 0, and u < 1 = cdf[-1] keeps every index below K
    return tf.searchsorted(cdf[None], u[None], side="right")[0]


def categorical(log_weights, n, seed) -> tf.Tensor:
    """``n`` indices into ``log_weights``, each drawn with probability
    ``softmax(log_weights)``; int64, a pure function of ``seed``.

    Args:
        log_weights: 1-D, unnormalised; as in ``tf.random.stateless_categorical``,
            non-finite entries (``-inf``, ``nan``, ``+inf``) count as zero weight;
            if no entry is finite, the draw is uniform over the entries.
        n: number of draws (int or scalar tensor).
        seed: shape-[2] integer tensor.

    Raises:
        ValueError: if ``log_weights`` is not 1-D or is empty.
    """
    log_w = tf.cast(log_weights, tf.float64)
    if log_w.shape.rank is not None and log_w.shape.rank != 1:
        raise ValueError(f"log_weights must be 1-D, got shape {log_w.shape}")
    if log_w.shape.rank == 1 and log_w.shape[0] == 0:
        raise ValueError("log_weights must have at least one entry, got none")
    u = tf.random.stateless_uniform([n], tf.cast(seed, tf.int64), dtype=tf.float64)
    return tf.cast(_inverse_cdf(log_w, u), tf.int64)

"""Seeded categorical draws that XLA compiles.

``tf.random.stateless_categorical`` has no XLA kernel for the int64 seeds the
library splits (``StatelessMultinomial``), so a train step compiled with
``jit_compile=True`` could not draw mixture components or resample walkers.
:func:`categorical` draws by the inverse of the cumulative distribution: one
uniform per draw and a sorted search, both compiled by XLA, in float64 so that
weights far below the largest keep their share.
"""

from __future__ import annotations

from deel_ebm._backend import tf


def categorical(log_weights, n, seed) -> tf.Tensor:
    """``n`` indices into ``log_weights`` (1-D, unnormalised, ``-inf`` allowed),
    each drawn with probability ``softmax(log_weights)``; int64, a pure function
    of ``seed`` (a shape-[2] integer tensor)."""
    log_w = tf.cast(log_weights, tf.float64)
    w = tf.exp(log_w - tf.reduce_max(log_w))
    cdf = tf.math.cumsum(w)
    cdf = cdf / cdf[-1]  # the last entry is exactly 1: every uniform falls inside
    u = tf.random.stateless_uniform([n], tf.cast(seed, tf.int64), dtype=tf.float64)
    # side="right": a component of zero weight (a flat step of the cdf) is never
    # drawn, and u < 1 = cdf[-1] keeps every index below len(log_weights)
    picks = tf.searchsorted(cdf[None], u[None], side="right")[0]
    return tf.cast(picks, tf.int64)

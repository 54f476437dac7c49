"""Sorting the last axis with compare-exchange operations: fast under XLA on CPU.

deel-lip's ``GroupSort`` (``FullSort``, ``GroupSort(n)`` with n > 2) calls
``tf.sort``. XLA's CPU sort is a slow generic kernel: a GroupSort8 layer on
5120 × 128 values takes 35.7 ms forward and backward under XLA against 22.0 ms in
TensorFlow's graph mode, while a bitonic sorting network, nothing but element-wise
comparisons and selects that XLA fuses, takes 3.9 ms
(``benchmarks/bench_sorting.py``, 2026-12-07). In graph mode the network is slower than
``tf.sort`` (each comparison stage is a separate kernel), so
:func:`sort_last_axis` uses it only while an XLA function is traced.

The network returns exactly ``tf.sort``'s values (it only moves them; inputs
without NaN). Each
compare-exchange is a pair of selects, so its gradient routes every upstream
value to exactly one input: the Jacobian of the sort is a permutation matrix,
ties included, as for ``tf.sort`` (``tf.minimum``/``tf.maximum`` would send both
gradients of a tie to one input, a matrix of norm √2).
"""

from __future__ import annotations

import contextlib

from ._backend import tf

__all__ = ["sort_last_axis", "bitonic_sort", "in_xla_context", "sorting_network"]

#: Whether :func:`sort_last_axis` uses the network under XLA (read when a function
#: is traced; :func:`sorting_network` sets it).
_NETWORK_UNDER_XLA = [True]


def in_xla_context() -> bool:
    """Whether the function being traced is compiled by XLA (``jit_compile=True``)."""
    try:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util

        in_xla = control_flow_util.GraphOrParentsInXlaContext
    except (ImportError, AttributeError):  # pragma: no cover - another TensorFlow
        return False
    return bool(in_xla(ops.get_default_graph()))


def _compare_exchange(a, b):
    """``(min(a, b), max(a, b))`` whose gradient is a permutation, ties included."""
    swap = a > b
    return tf.where(swap, b, a), tf.where(swap, a, b)


#: From this size of the sorted axis on, the network runs on the transposed
#: tensor, the sorted axis first: each stage then compares contiguous rows
#: (``bench_sorting.py``, FullSort on 5120 × 64 values, forward and backward
#: under XLA: 4.5 ms, against 10.0 ms in place). The threshold itself (groups of
#: 8 or 16 in place) comes from a prototype's timings that no script of the
#: repository repeats.
TRANSPOSE_FROM = 32


def bitonic_sort(x):
    """``tf.sort(x, axis=-1)`` (ascending) by a bitonic sorting network.

    Works for any static size of the last axis: a size that is not a power of two
    is padded with ``+inf``, which sorts last and is cut off. The values are
    ``tf.sort``'s for inputs without NaN (a NaN stays where it is, as every
    comparison with it is false).
    """
    x = tf.convert_to_tensor(x)
    n = x.shape[-1]
    if n is None:
        raise ValueError("bitonic_sort needs a static size of the last axis")
    if n <= 1:
        return x
    size = 1 << (n - 1).bit_length()  # the next power of two
    if size != n:
        lead = tf.shape(x)[:-1]
        inf = tf.constant(float("inf"), x.dtype)
        pad = tf.fill(tf.concat([lead, [size - n]], 0), inf)
        x = tf.concat([x, pad], axis=-1)
    if size >= TRANSPOSE_FROM:
        rank = x.shape.rank
        x = tf.transpose(x, [rank - 1, *range(rank - 1)])
        x = _network(x, size, first=True)
        x = tf.transpose(x, [*range(1, rank), 0])
    else:
        x = _network(x, size, first=False)
    if size != n:
        x = x[..., :n]
    return x


def _network(x, size, first):
    """Sort the first (``first``) or last axis of ``x``, of size ``size`` = 2^m."""
    rest = tf.shape(x)[1:] if first else tf.shape(x)[:-1]
    axis = 1 if first else -2  # of the (blocks, 2, half) split
    half_axis = 1 if first else -1  # of a half, once split

    def split(x, blocks, half):
        if first:
            return tf.reshape(x, tf.concat([[blocks, 2, half], rest], 0))
        return tf.reshape(x, tf.concat([rest, [blocks, 2, half]], 0))

    def merge(y):
        shape = tf.concat([[size], rest], 0) if first else tf.concat([rest, [size]], 0)
        return tf.reshape(y, shape)

    def stage(x, blocks, half, flip):
        a, b = tf.unstack(split(x, blocks, half), axis=axis)
        if flip:  # merge two sorted runs: compare i with its mirror image
            b = tf.reverse(b, axis=[half_axis])
        lo, hi = _compare_exchange(a, b)
        if flip:
            hi = tf.reverse(hi, axis=[half_axis])
        return merge(tf.stack([lo, hi], axis=axis))

    p = 2
    while p <= size:  # sorted runs of p/2 merged into sorted runs of p
        x = stage(x, size // p, p // 2, flip=True)
        h = p // 4
        while h >= 1:
            x = stage(x, size // (2 * h), h, flip=False)
            h //= 2
        p *= 2
    return x


@contextlib.contextmanager
def sorting_network(enabled: bool):
    """Within the block, functions traced for XLA sort by the network
    (``enabled``, the default) or by ``tf.sort``; for comparisons. It acts when a
    function is traced: an XLA function already compiled keeps its sort.

    Example:
        >>> xla_sort = tf.function(sort_last_axis, jit_compile=True)
        >>> with sorting_network(False):  # traced here: tf.sort under XLA
        ...     y = xla_sort(tf.constant([[2.0, 1.0]]))
        >>> y.numpy().tolist()
        [[1.0, 2.0]]
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    previous = _NETWORK_UNDER_XLA[0]
    _NETWORK_UNDER_XLA[0] = enabled
    try:
        yield
    finally:
        _NETWORK_UNDER_XLA[0] = previous


def sort_last_axis(x):
    """``tf.sort(x, axis=-1)``: a sorting network under XLA, ``tf.sort`` elsewhere."""
    if _NETWORK_UNDER_XLA[0] and in_xla_context():
        return bitonic_sort(x)
    return tf.sort(x, axis=-1)

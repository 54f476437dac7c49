"""Make deel-lip 1.5 layers cheap inside XLA-compiled Langevin chains.

deel-lip 1.5 decorates the ``call`` of some layers with ``@tf.function``
(``GroupSort`` and so ``GroupSort2``, ``SpectralDense``). Called inside an
XLA-compiled function, such a nested ``tf.function`` makes TensorFlow treat the
chain's seed as a compile-time constant: every training step, whose seed is new,
recompiles the whole chain. Measured here (TF 2.20, 3x256 dense energy, batch 256,
60 steps, ``benchmarks/bench_train_step.py``): 8.4 ms per chain step and 500 ms per
train step with the decorator, 1.3 ms and 90 ms without it.

:func:`undecorate_deel_lip_calls` replaces each such ``call`` by the Python
function it wraps. The computation is the same (Keras traces ``call`` inside
``fit``, ``predict`` and our compiled chains anyway); only the nested function
boundary goes. It runs once, when :mod:`deel_ebm` is imported.

:func:`sort_groups_by_network_under_xla` makes ``GroupSort`` (hence ``FullSort``
and ``GroupSort(n)``; ``GroupSort2`` keeps its min/max) sort by a sorting network
when it is traced inside an XLA function, where ``tf.sort`` is slow on CPU
(:mod:`deel_ebm._sorting`). The values are exactly ``tf.sort``'s; outside XLA
nothing changes. It also runs once, at import.
"""

from __future__ import annotations

import inspect

from deel.lip import activations as _activations
from deel.lip import layers as _layers

from ._backend import tf
from ._sorting import sort_last_axis

__all__ = [
    "undecorate_deel_lip_calls",
    "UNDECORATED",
    "sort_groups_by_network_under_xla",
]

#: Names of the deel-lip classes whose ``call`` was undecorated.
UNDECORATED: list[str] = []


def _classes():
    for module in (_layers, _activations):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__.startswith("deel.lip"):
                yield cls


def undecorate_deel_lip_calls() -> list[str]:
    """Replace ``@tf.function``-decorated ``call`` methods of deel-lip layers.

    Returns:
        The names of the classes changed (empty on a second call).
    """
    changed = []
    for cls in _classes():
        call = cls.__dict__.get("call")
        python_function = getattr(call, "python_function", None)
        if python_function is not None:
            cls.call = python_function
            changed.append(cls.__name__)
    UNDECORATED.extend(changed)
    return changed


def _group_sort_call(self, x):
    """deel-lip's ``GroupSort.call``, its ``tf.sort`` replaced by
    :func:`~deel_ebm._sorting.sort_last_axis` (a sorting network under XLA)."""
    fv = tf.reshape(x, self.flat_shape)
    if self.n == 2:  # deel-lip's own pairwise form, unchanged
        b, c = tf.split(fv, 2, -1)
        newv = tf.concat([tf.minimum(b, c), tf.maximum(b, c)], axis=-1)
    else:
        newv = sort_last_axis(fv)
    return tf.reshape(newv, self.out_shape) * self._get_coef()


def sort_groups_by_network_under_xla() -> bool:
    """Give ``deel.lip.layers.GroupSort`` :func:`_group_sort_call` as ``call``.

    Returns:
        Whether the class was changed (False on a second call).
    """
    cls = _layers.GroupSort
    if cls.__dict__.get("call") is _group_sort_call:
        return False
    cls.call = _group_sort_call
    return True


undecorate_deel_lip_calls()
sort_groups_by_network_under_xla()

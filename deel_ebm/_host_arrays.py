"""Batches of in-memory arrays that stay in host memory, outside the graph.

``tf.data.Dataset.from_tensor_slices`` or ``from_tensors`` on a NumPy array
first copies it into a TensorFlow tensor, and the tensor becomes a constant of
the dataset's graph: every serialisation of the pipeline (a distribution
strategy's rewrite, ``tf.data`` service, a saved iterator) holds another whole
copy, and a graph over 2 GiB cannot be serialised at all. Here the dataset only
carries row indices; each batch is gathered from the caller's arrays by
``tf.numpy_function``, so the arrays are neither copied nor embedded, whatever
their size.
"""

from __future__ import annotations

import numpy as np

from deel_ebm._backend import tf


def host_arrays(data):
    """``data`` (an array, a tensor, or a nest of them) as NumPy arrays.

    NumPy arrays are returned as they are and CPU tensors as views of their
    buffer: no copy.
    """
    return tf.nest.map_structure(
        lambda a: a.numpy() if tf.is_tensor(a) else np.asarray(a), data
    )


def gather_rows(indices: tf.data.Dataset, data) -> tf.data.Dataset:
    """Map each vector of row indices to those rows of ``data``.

    Args:
        indices: a dataset of int64 vectors.
        data: NumPy arrays (see :func:`host_arrays`), a single array or a nest of
            arrays with the same first dimension.

    Returns:
        A dataset whose elements have the structure of ``data``, each array
        replaced by its rows at the indices (static shape ``(None, ...)``).
    """
    arrays = tf.nest.flatten(data)
    dtypes = [tf.as_dtype(a.dtype) for a in arrays]

    def rows(idx):
        return [a[idx] for a in arrays]

    def gather(idx):
        parts = tf.numpy_function(rows, [idx], dtypes, stateful=False)
        for part, a in zip(parts, arrays):
            part.set_shape((None,) + a.shape[1:])
        return tf.nest.pack_sequence_as(data, parts)

    return indices.map(gather)

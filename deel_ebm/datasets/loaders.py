r"""Data loaders: train/test samples of the 2D densities, sklearn's digits, tf.data.

Nothing is downloaded: the 2D densities are sampled
(:mod:`~deel_ebm.datasets.densities`) and the 1 797 digits images ship with
scikit-learn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from deel_ebm import _host_arrays
from deel_ebm._backend import tf
from deel_ebm._checks import check_count, check_domain, check_number
from deel_ebm.datasets.densities import Density2D, get_density

__all__ = [
    "DEFAULT_N_TRAIN",
    "DEFAULT_N_TEST",
    "DIGITS_DOMAIN",
    "DIGITS_TEST_SIZE",
    "load_2d",
    "as_dataset",
    "DigitsData",
    "load_digits",
]

DEFAULT_N_TRAIN = 10_000
DEFAULT_N_TEST = 10_000
DIGITS_DOMAIN = (-1.0, 1.0)
DIGITS_TEST_SIZE = 0.3
MAX_INLINE_BYTES = 1 << 28  # as_dataset embeds arrays up to 256 MiB


def load_2d(name, n_train=DEFAULT_N_TRAIN, n_test=DEFAULT_N_TEST, seed=0):
    """Independent train and test samples of a toy density, float32 ``(n, 2)``.

    The two sets come from independent streams spawned from ``seed``, so
    ``x_train`` does not change with ``n_test`` and vice versa.

    Args:
        name: a name in ``DENSITIES`` (or a :class:`Density2D`).
        n_train: number of training points.
        n_test: number of test points.
        seed: int seed.

    Returns:
        ``(x_train, x_test)``.
    """
    density = name if isinstance(name, Density2D) else get_density(name)
    n_train, n_test = check_count("n_train", n_train), check_count("n_test", n_test)
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    return density.sample(n_train, train_seq), density.sample(n_test, test_seq)


def as_dataset(x, batch_size, shuffle=True, seed=0, repeat=False, y=None):
    """Wrap arrays in a batched, prefetched ``tf.data.Dataset``.

    Arrays up to ``MAX_INLINE_BYTES`` (256 MiB) go through ``from_tensor_slices``
    (one copy into a TensorFlow tensor, the fastest pipeline). Larger arrays stay
    in NumPy: the dataset shuffles and batches indices and gathers each batch
    with ``tf.numpy_function``, so the array is never copied into the graph (such
    a dataset cannot be serialised, which ``fit`` does not need).

    Args:
        x: array ``(n, ...)``.
        batch_size: positive batch size; the last partial batch is kept.
        shuffle: reshuffle at every pass (seeded by ``seed``).
        seed: shuffle seed.
        repeat: repeat forever.
        y: optional labels ``(n, ...)``; elements are then ``(x, y)`` pairs.

    Returns:
        A ``tf.data.Dataset`` of batches.
    """
    x = np.asarray(x)
    batch_size = check_count("batch_size", batch_size, minimum=1)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"x must be a non-empty array, got shape {x.shape}")
    arrays = (x,) if y is None else (x, np.asarray(y))
    if len(arrays[-1]) != len(x):
        raise ValueError(
            f"y must have as many rows as x ({len(x)}), got {len(arrays[-1])}"
        )
    if sum(a.nbytes for a in arrays) <= MAX_INLINE_BYTES:
        ds = tf.data.Dataset.from_tensor_slices(arrays if y is not None else x)
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(int(batch_size))
    else:
        ds = tf.data.Dataset.range(len(x))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(int(batch_size))
        ds = _host_arrays.gather_rows(ds, arrays if y is not None else x)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


class DigitsData(NamedTuple):
    """The sklearn digits split: images ``(n, 8, 8, 1)`` float32, labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(domain=DIGITS_DOMAIN, test_size=DIGITS_TEST_SIZE, seed=0) -> DigitsData:
    """The 1 797 sklearn 8x8 digits (bundled, no download), split and scaled.

    Pixels in [0, 16] are mapped linearly to ``domain``:
    :math:`x' = lo + (hi - lo)\\, x / 16`. The split is stratified by class and
    fixed by ``seed`` (sklearn's ``train_test_split``).

    Args:
        domain: ``(lo, hi)`` pixel range, ``lo < hi``.
        test_size: fraction of the images in the test set, in (0, 1).
        seed: split seed.

    Returns:
        :class:`DigitsData` ``(x_train, y_train, x_test, y_test)``; with the
        defaults 1 257 train and 540 test images (the 70/30 split of the
        one-class protocol).
    """
    from sklearn import datasets as sk_datasets
    from sklearn.model_selection import train_test_split

    lo, hi = check_domain(domain)
    test_size = check_number("test_size", test_size)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size!r}")
    bunch = sk_datasets.load_digits()
    x = (lo + (hi - lo) * bunch.data / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=float(test_size), random_state=seed, stratify=y
    )
    return DigitsData(x_tr, y_tr, x_te, y_te)

"""Argument and array validators shared by every layer of the package.

One message style: ``"<name> must <rule>, got <value>"``. A value of the wrong
kind raises ``TypeError``, a value of the right kind outside its range raises
``ValueError``. Nothing here imports TensorFlow: the measurement packages use the
same checks on NumPy arrays.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

__all__ = [
    "check_number",
    "check_positive",
    "check_non_negative",
    "check_count",
    "check_factor",
    "check_probability",
    "check_path",
    "check_domain",
    "check_box",
    "check_samples",
    "check_scores",
    "count_non_finite",
]


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name, value) -> float:
    """``value`` as a finite float."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def check_positive(name, value, integer=False, allow_none=False):
    """``value`` as a positive finite float (an int with ``integer=True``)."""
    if value is None and allow_none:
        return None
    if integer:
        return check_count(name, value, minimum=1)
    if not _is_real(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return float(value)


def check_non_negative(name, value) -> float:
    """``value`` as a finite float >= 0."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_count(name, value, minimum=0, allow_none=False):
    """``value`` as an int >= ``minimum``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_factor(name, value) -> float:
    """``value`` as a float in (0, 1]."""
    value = check_positive(name, value)
    if value > 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    return value


def check_probability(name, value) -> float:
    """``value`` as a float in [0, 1]."""
    value = check_non_negative(name, value)
    if value > 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return value


def check_path(name, value, allow_none=True):
    """``value`` (str or path-like) as a string path; ``None`` passes through."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path-like, got {value!r}")
    return os.fspath(value)


def check_domain(domain, name="domain", allow_none=False):
    """``domain`` as a pair of finite floats ``(low, high)`` with ``low < high``."""
    if domain is None and allow_none:
        return None
    try:
        low, high = domain
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a pair (low, high), got {domain!r}") from err
    if not (_is_real(low) or isinstance(low, np.number)) or not (
        _is_real(high) or isinstance(high, np.number)
    ):
        raise TypeError(f"{name} must hold two numbers, got {domain!r}")
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"{name} must satisfy low < high (finite), got {domain!r}")
    return low, high


def check_box(domain, name="domain") -> tuple[tuple[float, float], ...]:
    """A 2D box: ``(lo, hi)`` for both axes or ``((x_lo, x_hi), (y_lo, y_hi))``."""
    box = np.asarray(domain, dtype=np.float64)
    if box.shape == (2,):
        box = np.stack([box, box])
    if box.shape != (2, 2) or not np.all(np.isfinite(box)):
        raise ValueError(
            f"{name} must be (lo, hi) or ((x_lo, x_hi), (y_lo, y_hi)), got {domain!r}"
        )
    if np.any(box[:, 1] <= box[:, 0]):
        raise ValueError(f"{name} must satisfy lo < hi on each axis, got {domain!r}")
    return tuple((float(lo), float(hi)) for lo, hi in box)


def count_non_finite(x: np.ndarray, chunk_bytes: int = 1 << 24) -> int:
    """NaN and Inf values of ``x``, counted in slices of ``chunk_bytes``."""
    flat = x.reshape(-1)  # a view for contiguous arrays
    step = max(1, chunk_bytes // max(1, x.itemsize))
    return sum(
        int(np.count_nonzero(~np.isfinite(flat[i : i + step])))
        for i in range(0, flat.size, step)
    )


def _shape_text(sample_shape) -> str:
    return f"(n, {', '.join(map(str, sample_shape))})"


def check_samples(
    x,
    name="x",
    sample_shape=None,
    dtype=np.float64,
    allow_empty=False,
    flatten=False,
    require_float=False,
) -> np.ndarray:
    """A batch of samples as a NumPy array of ``dtype``, checked.

    Args:
        x: array-like ``(n, *sample_shape)``.
        name: the argument's name, for the message.
        sample_shape: the expected shape of one sample (``None``: any, rank >= 1).
        dtype: the returned dtype; a float32 array asked as float32 is not copied.
        allow_empty: accept ``n = 0``.
        flatten: return ``(n, prod(sample_shape))``.
        require_float: refuse integer input (images must be scaled first).

    Raises:
        TypeError: non-numeric (or, with ``require_float``, non-float) values.
        ValueError: a wrong shape, an empty batch, NaN or Inf values.
    """
    if require_float:
        raw = np.asarray(x)
        if not np.issubdtype(raw.dtype, np.floating):
            raise TypeError(
                f"{name} must hold floating-point values, got dtype {raw.dtype} "
                "(scale integer images to the buffer's domain first)"
            )
    try:
        array = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of numbers, got {x!r}") from err
    if sample_shape is not None:
        if array.ndim < 1 or tuple(array.shape[1:]) != tuple(sample_shape):
            raise ValueError(
                f"{name} must have shape {_shape_text(sample_shape)}, got {array.shape}"
            )
    elif array.ndim < 1:
        raise ValueError(f"{name} must be a batch (n, ...), got shape {array.shape}")
    if not allow_empty and array.shape[0] == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    bad = count_non_finite(array)
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} NaN or Inf values")
    if flatten:
        array = array.reshape(len(array), -1)
    return array


def check_scores(values, name="scores") -> np.ndarray:
    """A non-empty finite 1-D float64 array (an ``(n, 1)`` column is accepted)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D array, got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got non-finite values")
    return array

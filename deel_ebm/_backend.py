"""Keras-2 guard: make TensorFlow use the Keras 2 API that deel-lip 1.5 needs.

deel-lip 1.5 speaks ``tf.keras`` as Keras 2. On TensorFlow >= 2.16 that API lives
in the ``tf-keras`` package and TensorFlow uses it only when ``TF_USE_LEGACY_KERAS=1``
is set *before* TensorFlow is first imported. Importing :mod:`deel_ebm` first sets
it; importing it after TensorFlow was loaded with Keras 3 raises an
:class:`ImportError` that says how to fix the session.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

__all__ = ["tf", "keras", "KERAS_FIX"]

KERAS_FIX = (
    "deel-ebm (through deel-lip 1.5) needs the Keras 2 API. Fix: `pip install "
    "'tf-keras~=X.Y'` matching your TensorFlow X.Y, then either import deel_ebm "
    "before tensorflow, or set the environment variable TF_USE_LEGACY_KERAS=1 "
    "before Python starts (in a notebook: os.environ['TF_USE_LEGACY_KERAS'] = '1' "
    "in the first cell, then restart the runtime)."
)


def _version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def _prepare_environment() -> None:
    """Set TF_USE_LEGACY_KERAS before TensorFlow loads, if it has not loaded yet."""
    if "tensorflow" in sys.modules:
        return
    try:
        tf_version = _version_tuple(metadata.version("tensorflow"))
    except metadata.PackageNotFoundError:  # e.g. tensorflow-cpu only
        try:
            tf_version = _version_tuple(metadata.version("tensorflow-cpu"))
        except metadata.PackageNotFoundError as err:
            raise ImportError(
                "deel-ebm needs TensorFlow: pip install deel-ebm"
            ) from err
    if tf_version < (2, 16):
        return
    try:
        metadata.version("tf-keras")
    except metadata.PackageNotFoundError as err:
        raise ImportError(
            f"TensorFlow {tf_version[0]}.{tf_version[1]} is installed without "
            f"tf-keras. {KERAS_FIX}"
        ) from err
    if os.environ.get("TF_USE_LEGACY_KERAS", "1") not in ("1", "true", "True"):
        raise ImportError(
            "TF_USE_LEGACY_KERAS is set to "
            f"{os.environ['TF_USE_LEGACY_KERAS']!r}, which makes tf.keras Keras 3. "
            + KERAS_FIX
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"


def _is_command_line() -> bool:
    """Whether this process is the ``deel-ebm`` command (or ``python -m deel_ebm``)."""
    argv = sys.argv or [""]
    name = os.path.basename(argv[0])
    return name in ("deel-ebm", "deel-ebm.exe", "deel-ebm-script.py") or (
        name == "-m" and "deel_ebm" in sys.modules  # -m while the module is located
    )


def _quiet_native_log() -> None:
    """The ``deel-ebm`` command silences TensorFlow's C++ start-up log
    (``TF_CPP_MIN_LOG_LEVEL=3``) unless ``--tf-log`` is given or the variable is
    already set; the library itself never changes it."""
    if "tensorflow" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    if _is_command_line() and "--tf-log" not in sys.argv:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


def _check_keras2(tf_module) -> None:
    module = tf_module.keras.Model.__module__
    if module.startswith("tf_keras"):
        return
    import keras as _keras  # the package behind tf.keras on TF <= 2.15

    if int(_keras.__version__.split(".")[0]) >= 3:
        raise ImportError(
            f"TensorFlow {tf_module.__version__} was already imported with Keras "
            f"{_keras.__version__} (Keras 3) as tf.keras. " + KERAS_FIX
        )


_prepare_environment()
_quiet_native_log()
import tensorflow as tf  # noqa: E402

_check_keras2(tf)
keras = tf.keras

# tensorflow-probability releases and the TF minors they support (tfp does not
# declare them, so pip cannot refuse a bad pair; an import of tfp would then fail)
_TFP_SUPPORT = {
    (0, 23): ((2, 15), (2, 15)),
    (0, 24): ((2, 16), (2, 17)),
    (0, 25): ((2, 18), (2, 20)),
}


def _check_tfp_pair() -> None:
    try:
        tfp_version = _version_tuple(metadata.version("tensorflow-probability"))
    except metadata.PackageNotFoundError:
        return
    tf_version = _version_tuple(tf.__version__)
    low, high = _TFP_SUPPORT.get(tfp_version, (tf_version, tf_version))
    if not low <= tf_version <= high:
        raise ImportError(
            f"tensorflow-probability {tfp_version[0]}.{tfp_version[1]} does not "
            f"support TensorFlow {tf.__version__}. Fix: pip install "
            "'tensorflow-probability==X' with X = 0.23 for TF 2.15, 0.24 for TF "
            "2.16-2.17, 0.25 for TF 2.18-2.20."
        )


_check_tfp_pair()

import os
import subprocess
import sys

import pytest

from deel_ebm._backend import tf

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _run(code, **env):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**ENV, **env},
        timeout=300,
    )


def test_importing_deel_ebm_first_gives_keras2():
    out = _run(
        "import deel_ebm, tensorflow as tf; m = tf.keras.Model.__module__; print(m)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(
        ("tf_keras", "keras.src.engine", "keras.engine")
    )


@pytest.mark.skipif(
    tuple(int(v) for v in tf.__version__.split(".")[:2]) < (2, 16),
    reason="TF <= 2.15 always ships Keras 2",
)
def test_keras3_already_imported_raises_clear_error():
    env = {k: v for k, v in ENV.items() if k != "TF_USE_LEGACY_KERAS"}
    code = "import tensorflow as tf; tf.keras.Model; import deel_ebm"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert out.returncode != 0
    assert "ImportError" in out.stderr
    assert "TF_USE_LEGACY_KERAS=1" in out.stderr
    assert "import deel_ebm" in out.stderr


def test_explicit_keras3_request_is_refused():
    if tuple(int(v) for v in tf.__version__.split(".")[:2]) < (2, 16):
        pytest.skip("TF <= 2.15 ignores TF_USE_LEGACY_KERAS")
    out = _run("import deel_ebm", TF_USE_LEGACY_KERAS="0")
    assert out.returncode != 0
    assert "TF_USE_LEGACY_KERAS" in out.stderr

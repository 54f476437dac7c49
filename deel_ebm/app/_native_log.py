"""Quiet command-line output: TensorFlow's native start-up log filtered away.

TensorFlow's C++ layers log to the process's file descriptor 2 at start-up and
on the first XLA compilation (CUDA probing, oneDNN, CPU features, "Compiled
cluster using XLA"); ``TF_CPP_MIN_LOG_LEVEL=3`` (set by :mod:`deel_ebm._backend`
for the ``deel-ebm`` command) silences most of it, but not the lines written
through absl before absl is initialised. :func:`filtered_stderr` routes file
descriptor 2 through a pipe and drops exactly those lines, so the command's own
messages and real errors still reach the terminal.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

__all__ = ["NOISE", "filtered_stderr", "is_noise"]

#: native log lines the command drops (``--tf-log`` shows them)
NOISE = re.compile(
    r"(All log messages before absl::InitializeLog\(\) is called"
    r"|Compiled cluster using XLA"
    r"|failed call to cuInit"  # CUDA probing on a machine without a GPU
    r"|^[IW]\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+\.(cc|h):\d+\] "
    r"|^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] \S+\.(cc|h):\d+\] "
    r"|^To enable the following instructions: .* rebuild TensorFlow)"
)


def is_noise(line: str) -> bool:
    """Whether a stderr line is TensorFlow's native chatter (info or warning)."""
    return bool(NOISE.search(line))


@contextlib.contextmanager
def filtered_stderr(enabled: bool = True):
    """Within the block, file descriptor 2 loses TensorFlow's native log lines."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:  # no real descriptor 2 (embedded interpreters): do nothing
        yield
        return
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    if not is_noise(raw.decode("utf-8", "replace")):
                        os.write(saved, raw + b"\n")
            if pending and not is_noise(pending.decode("utf-8", "replace")):
                os.write(saved, pending)

    thread = threading.Thread(target=pump, name="deel-ebm-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
        thread.join(timeout=5)
        os.close(saved)

"""Run folders that never lose work.

A run is written into a hidden staging folder beside its destination and moved
into place only when complete (:func:`staged`), so a failed, rejected or
interrupted command leaves the destination as it was: absent, or the previous
run intact. An existing run is replaced only when asked (``overwrite``), and
the previous one is removed only after the new one is in place.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import uuid
from pathlib import Path

__all__ = [
    "RUN_FILES",
    "run_state",
    "refuse_existing",
    "staged",
    "write_json",
    "write_text",
    "write_history",
    "read_history",
]

#: the files every finished run folder holds
RUN_FILES = ("model.keras", "config.json", "metrics.json")


def run_state(path) -> str:
    """``"absent"``, ``"empty"`` (an empty folder), ``"run"`` (a finished run
    folder), ``"file"`` or ``"other"`` (a folder with other contents)."""
    path = Path(path)
    if not path.exists():
        return "absent"
    if not path.is_dir():
        return "file"
    names = {p.name for p in path.iterdir()}
    if not names:
        return "empty"
    return "run" if set(RUN_FILES) <= names else "other"


def refuse_existing(path, overwrite: bool) -> str:
    """The state of ``path``; a ValueError when writing a run there would
    replace something and ``overwrite`` is false (or ``path`` is a file)."""
    state = run_state(path)
    if state == "file":
        raise ValueError(f"--out {path} is a file, not a run folder")
    if state in ("run", "other") and not overwrite:
        what = "a finished run" if state == "run" else "files"
        hint = " or --resume to train it further" if state == "run" else ""
        raise ValueError(
            f"{path} already holds {what}: pass --overwrite to replace it{hint}"
        )
    return state


@contextlib.contextmanager
def staged(destination):
    """Yields a fresh staging folder; when the block succeeds, the staging
    folder becomes ``destination`` (replacing what was there); when it fails or
    is interrupted, the staging folder is removed and ``destination`` is left
    as it was."""
    destination = Path(destination)
    parent = destination.parent
    parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = parent / f".{destination.name}.partial-{tag}"
    staging.mkdir()
    try:
        yield staging
        old = None
        if destination.is_dir() and any(destination.iterdir()):
            old = parent / f".{destination.name}.replaced-{tag}"
            os.replace(destination, old)
        elif destination.is_dir():
            destination.rmdir()
        os.replace(staging, destination)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_text(path, text: str) -> None:
    """``text`` written atomically (a temporary file beside it, renamed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path, data) -> None:
    """``data`` as indented JSON, written atomically."""
    write_text(path, json.dumps(data, indent=2))


def write_history(path, rows) -> None:
    """``history.csv``: one row per epoch, columns ``epoch``, ``step``,
    ``elapsed_seconds`` first, then the logged metrics."""
    keys = ["epoch", "step", "elapsed_seconds"]
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, restval="")
        writer.writeheader()
        writer.writerows(rows)


def read_history(path) -> list[dict]:
    """The rows of a ``history.csv`` (numbers as floats, ``epoch``/``step`` as
    ints; missing values dropped)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for key, value in row.items():
                if value in ("", None):
                    continue
                number = float(value)
                parsed[key] = int(number) if key in ("epoch", "step") else number
            rows.append(parsed)
    return rows

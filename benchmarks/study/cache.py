"""Cell results on disk: one JSON file per cell, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def path(cells_dir, cid) -> Path:
    return Path(cells_dir) / f"{cid}.json"


def load(cells_dir, cid):
    """The cached record of a cell, or None (missing or unreadable file)."""
    p = path(cells_dir, cid)
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def save(cells_dir, cid, record) -> None:
    """Write ``record`` to a temp file in the same folder, then ``os.replace``."""
    cells_dir = Path(cells_dir)
    cells_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cells_dir, prefix=f".{cid}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, allow_nan=False, separators=(",", ":"))
        os.replace(tmp, path(cells_dir, cid))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

"""Atomic writers: a file is either absent or complete, never half-written.

Every writer writes to a temporary file in the destination folder and renames
it into place (``os.replace`` is atomic on POSIX within one file system).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN/Inf become null)."""
    return atomic_write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=True) + "\n")


def write_tsv(path: str | Path, array: np.ndarray, columns: list[str]) -> Path:
    """Write a 2-D array with a header row as a tab-separated file atomically."""
    array = np.asarray(array)  # (T, C)
    if array.ndim != 2 or array.shape[1] != len(columns):
        raise ValueError(f"array of shape {array.shape} does not match {len(columns)} columns")
    buf = io.StringIO()
    buf.write("\t".join(columns) + "\n")
    np.savetxt(buf, array, delimiter="\t", fmt="%.8g")
    return atomic_write_text(path, buf.getvalue())


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save a NumPy array (.npy) atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return atomic_write_bytes(path, buf.getvalue())


def _finite(obj):
    """Replace non-finite floats by None so the JSON is standard."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    return obj

"""Atomic writers: a file is either absent or complete, never half-written.

Every writer writes to a temporary file in the destination folder and renames
it into place (``os.replace`` is atomic on POSIX within one file system).
"""
from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from dsr.errors import OutputError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating parent folders.

    Raises
    ------
    OutputError
        The folder cannot be made or written (full disk, read-only, no permission), naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise output_error(exc, path) from None
        raise
    return path


_ADVICE = {errno.ENOSPC: "the disk is full: free space or choose another output folder",
           errno.EDQUOT: "the disk quota is exceeded: free space or choose another output folder",
           errno.EROFS: "the file system is read-only: choose another output folder",
           errno.EACCES: "no permission to write here: choose another output folder or fix its permissions",
           errno.EPERM: "no permission to write here: choose another output folder or fix its permissions"}


def output_error(exc: OSError, path: str | Path) -> OutputError:
    """An OSError met while writing ``path`` as one line naming the output and what to do."""
    advice = _ADVICE.get(exc.errno, "check that the output folder exists and can be written")
    return OutputError(f"cannot write ({exc.strerror or type(exc).__name__}): {advice}", path)


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


def check_writable(folder: str | Path) -> Path:
    """Make ``folder`` and prove it can be written (a probe file, removed again) before any work starts.

    Raises
    ------
    OutputError
        Naming the folder: it is a file, read-only, on a full disk or not permitted.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError("the output path exists and is not a folder", folder)
    try:
        atomic_write_bytes(folder / ".dsr-write-test", b"").unlink()
    except OutputError as exc:
        raise OutputError(exc.message, folder) from None
    except OSError as exc:
        raise output_error(exc, folder) from None
    return folder


def set_aside(path: str | Path) -> Path:
    """Rename a corrupt file or folder to ``<name>.corrupt`` (an older one stays as ``.corrupt.1``, ...), so
    that a rerun starts afresh and the bad copy stays for a person to look at."""
    path = Path(path)
    aside = path.with_name(path.name + ".corrupt")
    i = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt.{i}")
        i += 1
    path.rename(aside)
    return aside


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

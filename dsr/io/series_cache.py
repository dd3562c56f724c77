"""Extracted region series saved as BIDS-derivatives TSV + JSON and reused while nothing changed.

Each table is ``{base}_desc-{name}_timeseries.tsv`` with a JSON sidecar. The sidecar of the first table
(the cleaned region series) is written last and holds the cache key: a hash of the extraction
settings and of the inputs' fingerprints (size and modification time, or a SHA-256 of the content).
A cache entry is used only when that key matches and every table is present.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dsr.io.atomic import set_aside, write_json, write_tsv

log = logging.getLogger("dsr")


def fingerprint(paths, mode: str = "stat") -> dict[str, list]:
    """``{path: [size, mtime_ns]}`` (``mode="stat"``) or ``{path: [size, sha256]}`` (``"sha256"``)."""
    out = {}
    for p in sorted({str(Path(p).resolve()) for p in paths if p is not None}):
        st = Path(p).stat()
        if mode == "sha256":
            digest = hashlib.sha256()
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            out[p] = [st.st_size, digest.hexdigest()]
        else:
            out[p] = [st.st_size, st.st_mtime_ns]
    return out


def cache_key(settings: dict, prints: dict) -> str:
    """Short stable hash of the settings and input fingerprints."""
    blob = json.dumps({"settings": settings, "inputs": prints}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def settings_hash(settings: dict) -> str:
    """Short stable hash of the settings alone (reported in sidecars)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def table_path(folder: str | Path, base: str, name: str, ext: str = ".tsv") -> Path:
    """Path of table ``name`` for ``base`` (``{base}_desc-{name}_timeseries.tsv``)."""
    return Path(folder) / f"{base}_desc-{name}_timeseries{ext}"


def save_series(folder: str | Path, base: str, tables: dict, meta: dict, key: str) -> list[Path]:
    """Write the tables (TSV + JSON each), the first table's sidecar last.

    Parameters
    ----------
    folder : path
    base : str
        File-name base, e.g. ``sub-01_task-rest_atlas-Sim``.
    tables : dict
        ``{name: (array (T, C), column names)}``; tables with no column are skipped.
    meta : dict
        Metadata copied into every sidecar (RepetitionTime, Sources, Settings, ...).
    key : str
        The cache key, stored as ``CacheKey``.

    Returns
    -------
    list of Path
        The files written.
    """
    written, sidecars = [], []
    table_path(folder, base, next(iter(tables)), ".json").unlink(missing_ok=True)  # invalidate first
    names = [n for n, (arr, cols) in tables.items() if len(cols) > 0]
    for name in names:
        array, columns = tables[name]
        written.append(write_tsv(table_path(folder, base, name), np.asarray(array), list(columns)))
        side = dict(meta, Columns=list(columns), CacheKey=key, Tables=names)
        sidecars.append((table_path(folder, base, name, ".json"), side))
    for path, side in sidecars[1:] + sidecars[:1]:  # the main sidecar last: it commits the entry
        written.append(write_json(path, side))
    return written


def load_series(folder: str | Path, base: str, key: str, main: str = "cleaned") -> dict | None:
    """Tables saved by :func:`save_series` under ``key``, or None when absent or stale.

    Returns
    -------
    dict or None
        ``{"meta": sidecar dict, name: (array (T, C), columns), ...}``.
    """
    side = table_path(folder, base, main, ".json")
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
        if not isinstance(meta, dict):
            raise ValueError("the sidecar is not a JSON object")
    except (OSError, ValueError, RecursionError) as exc:
        return _corrupt(side, exc)
    if meta.get("CacheKey") != key:
        return None
    out = {"meta": meta}
    tables = meta.get("Tables", [main])
    for name in tables if isinstance(tables, list) else [main]:
        path = table_path(folder, base, str(name))
        if not path.is_file():
            return None
        try:
            df = pd.read_csv(path, sep="\t")
            out[name] = (df.to_numpy(dtype=np.float64), [str(c) for c in df.columns])
            if not np.isfinite(out[name][0]).all() or (name == main and "RepetitionTime" not in meta):
                raise ValueError("non-finite values or no RepetitionTime")
        except (OSError, ValueError, TypeError, pd.errors.ParserError) as exc:
            _corrupt(side, exc)  # the sidecar commits the entry: without it the tables are re-extracted
            return None
    return out


def _corrupt(path: Path, exc: Exception) -> None:
    """Set a cache entry's unreadable file aside (``*.corrupt``) with one line; the run re-extracts."""
    aside = set_aside(path)
    log.warning("%s: corrupt extraction cache (%s: %s); set aside as %s, extracting again", path,
                type(exc).__name__, " ".join(str(exc).split())[:120], aside.name)
    return None

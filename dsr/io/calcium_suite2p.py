"""suite2p output folders → :class:`~dsr.io.calcium.CalciumRecording`.

suite2p writes, per plane, ``F.npy`` and ``Fneu.npy`` (ROIs × frames, float32),
``iscell.npy`` (ROIs × 2: is-cell flag, classifier probability) and ``ops.npy``
(a pickled dict of settings, holding the frame rate ``fs``; read without unpickling, see
:func:`read_ops_fs`).
"""
from __future__ import annotations

import io
import math
import pickletools
from pathlib import Path

import numpy as np

from dsr.errors import InputError
from dsr.io.sizes import check_memory, load_npy, npy_header
from dsr.io.calcium import (CalciumRecording, DffSettings, check_traces, compute_dff, finish,
                            resolve_fs)


def find_plane(folder, plane: int = 0) -> Path:
    """The folder holding F.npy: ``folder``, ``folder/planeK`` or ``folder/suite2p/planeK``."""
    folder = Path(folder)
    for cand in (folder, folder / f"plane{plane}", folder / "suite2p" / f"plane{plane}"):
        if (cand / "F.npy").is_file():
            return cand
    if not folder.is_dir():
        raise InputError("no such suite2p folder", folder)
    for cand in (folder / "suite2p" / f"plane{plane}", folder / f"plane{plane}", folder):
        if cand.is_dir() and any((cand / n).is_file() for n in ("Fneu.npy", "iscell.npy", "ops.npy")):
            raise InputError("missing suite2p file F.npy (the folder has other suite2p outputs)",
                             cand / "F.npy")
    raise InputError(f"not a suite2p folder: no F.npy in it, in plane{plane}/ or suite2p/plane{plane}/",
                     folder)


def _load_npy(path: Path, required: bool = True):
    """Load a numeric .npy without unpickling; None if absent and not required."""
    if not path.is_file():
        if required:
            raise InputError("missing suite2p file", path)
        return None
    return load_npy(path, f"suite2p {path.name}")


def read_ops_fs(path: Path) -> float | None:
    """Frame rate ``fs`` from suite2p's ``ops.npy``, read without unpickling; None if the file is absent.

    suite2p saves ``ops`` with ``np.save`` on a Python dict: a pickle, and unpickling a file runs any code
    it names. So the pickle's opcodes are only *listed* (:func:`pickletools.genops` executes nothing) and
    ``fs`` is taken from the first ``'fs'`` key followed by a plain float or int.

    Raises
    ------
    InputError
        A file that is not a ``.npy``, or one whose ``fs`` is not stored as a plain number (then the
        frame interval must be passed: ``--tr`` or ``fs=``).
    """
    if not path.is_file():
        return None
    _, dtype, offset = npy_header(path)
    if not dtype.hasobject:
        raise InputError("ops.npy holds a numeric array, not suite2p's settings dict; pass the frame "
                         "interval with --tr SECONDS (fs= in Python)", path)
    check_memory(path.stat().st_size, path, "ops.npy")
    fs = _pickled_number(path.read_bytes()[offset:], "fs")
    if fs is None or not math.isfinite(fs) or fs <= 0:
        raise InputError("no plain positive number under 'fs' in this pickled settings file (dsr never "
                         "unpickles files, which could run code); pass the frame interval with --tr SECONDS "
                         "(fs= in Python)", path)
    return fs


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
               "STRING"}
_NUMBER_OPS = {"BINFLOAT", "FLOAT", "BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4"}
_MEMO_OPS = {"MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"}


def _pickled_number(blob: bytes, key: str) -> float | None:
    """The number stored right after the string ``key`` in a pickle, found by listing its opcodes only."""
    last_key = False
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(blob)):
            if op.name in _MEMO_OPS:
                continue
            if last_key and op.name in _NUMBER_OPS and isinstance(arg, (int, float)) and not isinstance(arg, bool):
                return float(arg)
            last_key = op.name in _STRING_OPS and arg == key
    except (ValueError, EOFError, OverflowError, UnicodeDecodeError):
        return None
    return None


def read_suite2p(folder, fs=None, *, plane: int = 0, settings: DffSettings | None = None,
                 indicator=None, tau=None, signal: str = "raw") -> CalciumRecording:
    """Read one suite2p plane: keep cells, subtract neuropil, compute ΔF/F.

    Parameters
    ----------
    folder : str or Path
        ``suite2p/``, ``planeK/`` or a folder holding F.npy.
    fs : float, optional
        Frame rate in Hz; if None it is read from ops.npy without unpickling (see :func:`read_ops_fs`).
    plane : int
        Plane to read when ``folder`` holds plane folders.
    settings : DffSettings, optional
        Neuropil coefficient (default 0.7) and baseline.
    indicator, tau : optional
        Indicator kernel by name or decay time.
    signal : {"raw", "dff"}
        "dff" takes F as ΔF/F already (no neuropil, no baseline).

    Returns
    -------
    CalciumRecording
        ``roi_ids`` are the suite2p ROI indices of the kept cells.
    """
    settings = settings or DffSettings()
    pdir = find_plane(folder, plane)
    f_path, n_path, c_path = pdir / "F.npy", pdir / "Fneu.npy", pdir / "iscell.npy"
    F = _load_npy(f_path)  # (R, T)
    if F.ndim != 2 or F.size == 0:
        raise InputError(f"F must be a 2-D array (ROIs × frames), got shape {F.shape}", f_path)
    use_neu = signal == "raw" and settings.neuropil_coef > 0
    Fneu = _load_npy(n_path, required=use_neu)
    if Fneu is not None and Fneu.shape != F.shape:
        raise InputError(f"Fneu shape {Fneu.shape} does not match F shape {F.shape}", n_path)
    iscell = _load_npy(c_path, required=False)
    if iscell is None:
        keep = np.ones(F.shape[0], dtype=bool)
    else:
        flags = iscell[:, 0] if iscell.ndim == 2 else iscell
        if flags.shape[0] != F.shape[0]:
            raise InputError(f"iscell has {flags.shape[0]} rows but F has {F.shape[0]} ROIs", c_path)
        keep = np.asarray(flags) == 1
    if not keep.any():
        raise InputError(f"no cells: none of the {F.shape[0]} ROIs has iscell == 1", c_path)
    file_fs = read_ops_fs(pdir / "ops.npy") if fs is None else None
    fs, fs_source = resolve_fs(fs, file_fs, pdir / "ops.npy", "ops.npy")
    rois = np.flatnonzero(keep)
    f = check_traces(F[keep].T, f_path, "F")  # (T, N)
    meta = {"format": "suite2p", "plane_dir": str(pdir), "signal": signal, "fs_source": fs_source,
            "n_rois_total": int(F.shape[0]), "iscell_present": iscell is not None}
    if signal == "dff":
        dff = f
    else:
        fneu = check_traces(Fneu[keep].T, n_path, "Fneu", allow_constant=True) if use_neu else None  # (T, N)
        dff, info = compute_dff(f, fs, settings, fneu, path=f_path)
        meta.update(settings.as_meta(), **info)
        meta["neuropil_coef"] = settings.neuropil_coef if use_neu else 0.0
    return finish(dff, fs, rois.tolist(), pdir, meta, indicator, tau)

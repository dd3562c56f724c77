"""suite2p output folders → :class:`~dsr.io.calcium.CalciumRecording`.

suite2p writes, per plane, ``F.npy`` and ``Fneu.npy`` (ROIs × frames, float32),
``iscell.npy`` (ROIs × 2: is-cell flag, classifier probability) and ``ops.npy``
(a pickled dict of settings, holding the frame rate ``fs``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dsr.errors import InputError
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
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # truncated file, bad header, object array
        raise InputError(f"not a readable .npy array: {exc}", path) from None


def read_ops_fs(path: Path) -> float | None:
    """Frame rate from ``ops.npy``, or None if the file or key is absent.

    suite2p saves ``ops`` with ``np.save`` on a Python dict, so it can only be
    read with ``allow_pickle=True``. Unpickling runs code from the file, so it
    is done only when the caller did not give ``fs``: pass ``fs`` to read a
    suite2p folder you do not trust without ever unpickling it.
    """
    if not path.is_file():
        return None
    try:
        ops = np.load(path, allow_pickle=True).item()
    except Exception as exc:
        raise InputError(f"not a readable suite2p ops file: {exc}", path) from None
    if not isinstance(ops, dict):
        raise InputError("ops.npy does not hold a dict", path)
    return ops.get("fs")


def read_suite2p(folder, fs=None, *, plane: int = 0, settings: DffSettings | None = None,
                 indicator=None, tau=None, signal: str = "raw") -> CalciumRecording:
    """Read one suite2p plane: keep cells, subtract neuropil, compute ΔF/F.

    Parameters
    ----------
    folder : str or Path
        ``suite2p/``, ``planeK/`` or a folder holding F.npy.
    fs : float, optional
        Frame rate in Hz; if None it is read from ops.npy (see :func:`read_ops_fs`).
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

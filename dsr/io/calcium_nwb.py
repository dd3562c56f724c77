"""NWB files (via pynwb) → :class:`~dsr.io.calcium.CalciumRecording`.

Optical-physiology traces live in ``RoiResponseSeries`` (data: time × ROI),
usually under ``processing/ophys`` in a ``DfOverF`` container (already ΔF/F)
or a ``Fluorescence`` container (raw, converted here). suite2p's NWB export
puts a "Neuropil" series beside "Fluorescence" and an ``iscell`` column in the
PlaneSegmentation: both are used when present.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dsr.errors import InputError
from dsr.io.calcium import (CalciumRecording, DffSettings, check_traces, compute_dff, finish,
                            fs_from_times, resolve_fs)

_SKIP = ("neuropil", "deconv")  # series that are not the fluorescence of the ROIs


def _pynwb():
    try:
        import pynwb
    except ImportError as exc:  # optional dependency
        raise ImportError("reading NWB files needs pynwb: pip install 'dsr[nwb]'") from exc
    return pynwb


def _rank(s) -> tuple:
    """Sort key: DfOverF before Fluorescence before anything else, then by name."""
    parent = type(s.parent).__name__ if s.parent is not None else ""
    order = {"DfOverF": 0, "Fluorescence": 1}.get(parent, 2)
    return (order, s.name)


def list_series(nwbfile) -> list:
    """All RoiResponseSeries objects in an open NWBFile."""
    from pynwb.ophys import RoiResponseSeries

    return [o for o in nwbfile.objects.values() if isinstance(o, RoiResponseSeries)]


def _choose(all_series, name, path):
    """The requested series, or the best ΔF/F / fluorescence one."""
    if not all_series:
        raise InputError("no RoiResponseSeries (ophys traces) in this NWB file", path)
    names = sorted(f"{s.parent.name}/{s.name}" if s.parent is not None else s.name for s in all_series)
    if name is not None:
        hits = [s for s in all_series if name in (s.name, f"{s.parent.name}/{s.name}")]
        if len(hits) != 1:
            raise InputError(f"RoiResponseSeries {name!r} {'is ambiguous' if hits else 'not found'}; "
                             f"the file has {names}", path)
        return hits[0], names

    def skipped(s):
        label = f"{s.parent.name if s.parent is not None else ''}/{s.name}".lower()
        return any(k in label for k in _SKIP)

    usable = [s for s in all_series if not skipped(s)]
    if not usable:
        raise InputError(f"only neuropil/deconvolved RoiResponseSeries found ({names}); "
                         "pass series=NAME to read one of them", path)
    return sorted(usable, key=_rank)[0], names


def _data(s, path) -> np.ndarray:
    """Series data as float64 (T, N) in its stated units."""
    try:
        x = np.asarray(s.data[:], dtype=np.float64)
    except Exception as exc:
        raise InputError(f"cannot read data of RoiResponseSeries {s.name!r}: {exc}", path) from None
    x = x * float(getattr(s, "conversion", 1.0) or 1.0) + float(getattr(s, "offset", 0.0) or 0.0)
    return x[:, None] if x.ndim == 1 else x


def _roi_info(s, n_cols, path):
    """ROI ids of the series' columns and the iscell mask (None if absent)."""
    try:
        rows = np.asarray(s.rois.data[:], dtype=int)  # (N,) rows of the PlaneSegmentation
        table = s.rois.table
        ids = np.asarray(table.id.data[:])[rows].tolist()
        iscell = None
        if "iscell" in table.colnames:
            col = np.asarray(table["iscell"].data[:])
            col = col[:, 0] if col.ndim == 2 else col
            iscell = col[rows] == 1
    except Exception:  # rois missing or unresolvable: fall back to column numbers
        return list(range(n_cols)), None
    if len(ids) != n_cols:
        raise InputError(f"RoiResponseSeries {s.name!r} has {n_cols} columns but references "
                         f"{len(ids)} ROIs", path)
    return ids, iscell


def _plane_indicator(s) -> str | None:
    """The imaging plane's indicator if it names one with a known τ, else None."""
    from dsr.signal.filters import INDICATOR_TAU

    try:
        name = str(s.rois.table.imaging_plane.indicator).strip()
    except Exception:
        return None
    known = {k.lower(): k for k in INDICATOR_TAU}
    return known.get(name.lower())


def _fs(s, path):
    """(rate or None, where it came from) from ``rate`` or ``timestamps``."""
    if s.rate is not None:
        return float(s.rate), "rate"
    if s.timestamps is not None:
        ts = s.timestamps
        ts = ts.timestamps if hasattr(ts, "timestamps") else ts  # linked TimeSeries
        return fs_from_times(np.asarray(ts[:], dtype=np.float64), path), "timestamps"
    return None, "none"


def read_nwb(path, fs=None, *, series: str | None = None, signal: str | None = None,
             settings: DffSettings | None = None, indicator=None, tau=None) -> CalciumRecording:
    """Read ΔF/F traces from an NWB file.

    Parameters
    ----------
    path : str or Path
        The .nwb file.
    fs : float, optional
        Sampling rate in Hz; default: the series' ``rate`` or its timestamps.
    series : str, optional
        Name ("Fluorescence" or "DfOverF/RoiResponseSeries") of the series to read.
    signal : {"raw", "dff"}, optional
        Default from the container: DfOverF → "dff" (taken as is), else "raw".
    settings : DffSettings, optional
        Neuropil coefficient (used only with a "Neuropil" sibling series) and baseline.
    indicator, tau : optional
        Indicator kernel by name or decay time.
    """
    pynwb = _pynwb()
    path = Path(path)
    settings = settings or DffSettings()
    if not path.is_file():
        raise InputError("no such file", path)
    try:
        io = pynwb.NWBHDF5IO(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"not a readable NWB file: {type(exc).__name__}: {exc}", path) from None
    with io:
        try:
            nwbfile = io.read()
        except Exception as exc:
            raise InputError(f"not a readable NWB file: {type(exc).__name__}: {exc}", path) from None
        s, names = _choose(list_series(nwbfile), series, path)
        parent = type(s.parent).__name__ if s.parent is not None else ""
        signal = signal or ("dff" if parent == "DfOverF" else "raw")
        x = _data(s, path)  # (T, N)
        ids, iscell = _roi_info(s, x.shape[1], path)
        fneu = None
        if signal == "raw" and settings.neuropil_coef > 0 and parent == "Fluorescence":
            sib = [v for k, v in s.parent.roi_response_series.items() if "neuropil" in k.lower()]
            if sib:
                fneu = _data(sib[0], path)
                if fneu.shape != x.shape:
                    raise InputError(f"neuropil series {sib[0].name!r} shape {fneu.shape} does not "
                                     f"match {s.name!r} shape {x.shape}", path)
        file_fs, fs_what = _fs(s, path)
        if indicator is None and tau is None:
            indicator = _plane_indicator(s)
    fs, fs_source = resolve_fs(fs, file_fs, path, f"series {fs_what}")
    if iscell is not None:
        if not iscell.any():
            raise InputError(f"no cells: none of the {len(ids)} ROIs has iscell == 1", path)
        x, ids = x[:, iscell], [i for i, k in zip(ids, iscell) if k]
        fneu = fneu[:, iscell] if fneu is not None else None
    x = check_traces(x, path, f"RoiResponseSeries {s.name!r}")
    meta = {"format": "nwb", "series": f"{s.parent.name}/{s.name}" if s.parent is not None else s.name,
            "series_available": names, "container": parent, "signal": signal, "fs_source": fs_source,
            "iscell_present": iscell is not None}
    if signal == "raw":
        if fneu is not None:
            fneu = check_traces(fneu, path, "neuropil series", allow_constant=True)
        x, info = compute_dff(x, fs, settings, fneu, path=path)
        meta.update(settings.as_meta(), **info)
        meta["neuropil_coef"] = settings.neuropil_coef if fneu is not None else 0.0
    return finish(x, fs, ids, path, meta, indicator, tau)

"""Ca²⁺ imaging readers: suite2p folders, NWB files and plain arrays → ΔF/F.

Every reader returns one :class:`CalciumRecording` holding ΔF/F traces (T, N),
the sampling rate and the indicator kernel the decoder will use. Bad input
raises one :class:`~dsr.errors.InputError` naming the offending file.

Format-specific parts live in ``calcium_suite2p.py`` and ``calcium_nwb.py``;
this module holds the shared ΔF/F code, the plain-array reader and the
dispatcher :func:`load_calcium`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d, minimum_filter1d, percentile_filter

from dsr.errors import InputError
from dsr.io.sizes import load_npy
from dsr.signal.filters import calcium_kernel

BASELINES = ("maximin", "percentile", "constant")
SIGNALS = ("raw", "dff")
ARRAY_SUFFIXES = (".npy", ".csv", ".tsv", ".txt")
TIME_COLUMNS = ("time", "times", "timestamp", "timestamps", "t")
DEFAULT_INDICATOR = "GCaMP6f"  # used when neither indicator nor tau is known (noted in meta)


@dataclass
class CalciumRecording:
    """ΔF/F traces of one recording plus what the model needs to decode them.

    Attributes
    ----------
    traces : ndarray, shape (T, N)
        ΔF/F, one column per ROI (cell), float64.
    fs : float
        Sampling rate in Hz.
    roi_ids : list
        One identifier per column (suite2p ROI index, NWB ROI id or CSV header).
    source : str
        The file or folder the traces came from.
    kernel : ndarray, shape (K,)
        Indicator kernel sampled at 1/fs (from ``dsr.signal.filters.calcium_kernel``).
    meta : dict
        JSON-serialisable provenance: format, neuropil coefficient, baseline, ...
    """

    traces: np.ndarray  # (T, N)
    fs: float
    roi_ids: list
    source: str
    kernel: np.ndarray  # (K,)
    meta: dict = field(default_factory=dict)

    @property
    def dt(self) -> float:
        """Sampling interval in seconds."""
        return 1.0 / self.fs

    @property
    def shape(self) -> tuple[int, int]:
        """(T, N)."""
        return self.traces.shape


@dataclass
class DffSettings:
    """Neuropil correction and ΔF/F baseline.

    Attributes
    ----------
    neuropil_coef : float
        r in F − r·Fneu (suite2p default 0.7); 0 disables the correction.
    baseline : {"maximin", "percentile", "constant"}
        "maximin": Gaussian smoothing, then a running minimum and maximum over
        ``window`` (suite2p's method); "percentile": running ``percentile``
        over ``window``; "constant": one ``percentile`` of the whole trace.
    window : float
        Baseline window in seconds (clamped to the recording length).
    sigma : float
        Gaussian smoothing (seconds) before the maximin filter.
    percentile : float
        Percentile for the "percentile" and "constant" baselines.
    """

    neuropil_coef: float = 0.7
    baseline: str = "maximin"
    window: float = 60.0
    sigma: float = 0.5
    percentile: float = 8.0

    def __post_init__(self):
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if not 0.0 <= self.neuropil_coef <= 1.5:
            raise ValueError(f"neuropil_coef must be in [0, 1.5], got {self.neuropil_coef}")
        if self.window <= 0 or self.sigma < 0 or not 0 <= self.percentile <= 100:
            raise ValueError("window must be > 0, sigma ≥ 0 and percentile in [0, 100]")

    def as_meta(self) -> dict:
        """The settings as a plain dict for provenance."""
        return dict(neuropil_coef=self.neuropil_coef, baseline=self.baseline,
                    baseline_window_s=self.window, baseline_sigma_s=self.sigma,
                    baseline_percentile=self.percentile)


# --------------------------------------------------------------------------- ΔF/F


def baseline(f: np.ndarray, fs: float, settings: DffSettings) -> np.ndarray:
    """Slow baseline F0 of each column of ``f`` (T, N), same shape."""
    T = f.shape[0]
    win = int(min(max(round(settings.window * fs), 1), T))
    if settings.baseline == "constant":
        return np.broadcast_to(np.percentile(f, settings.percentile, axis=0), f.shape).copy()
    if settings.baseline == "percentile":
        return percentile_filter(f, settings.percentile, size=(win, 1), mode="nearest")
    smooth = gaussian_filter1d(f, settings.sigma * fs, axis=0, mode="nearest") if settings.sigma > 0 else f
    low = minimum_filter1d(smooth, win, axis=0, mode="nearest")  # (T, N)
    return maximum_filter1d(low, win, axis=0, mode="nearest")  # (T, N)


def compute_dff(f: np.ndarray, fs: float, settings: DffSettings, fneu: np.ndarray | None = None,
                path=None) -> tuple[np.ndarray, dict]:
    """Neuropil-correct and convert raw fluorescence to ΔF/F.

    Parameters
    ----------
    f, fneu : ndarray, shape (T, N)
        Raw ROI and neuropil fluorescence (``fneu`` optional).
    fs : float
        Sampling rate in Hz.
    settings : DffSettings
    path : str or Path, optional
        File named in errors.

    Returns
    -------
    dff : ndarray, shape (T, N)
        (Fc − F0) / F0 with Fc = F − r·Fneu and F0 = baseline(Fc). For an ROI
        whose corrected baseline is not positive (strong neuropil), the
        denominator falls back to the baseline of the raw F.
    info : dict
        ``{"dff_raw_denominator_rois": [column indices that used the fallback]}``.
    """
    fc = f - settings.neuropil_coef * fneu if fneu is not None and settings.neuropil_coef else f
    f0c = baseline(fc, fs, settings)  # (T, N)
    scale = np.median(np.abs(f), axis=0)  # (N,)
    floor = 1e-3 * np.where(scale > 0, scale, 1.0)  # (N,)
    bad = (f0c <= floor).any(axis=0)  # (N,)
    denom = f0c.copy()
    if bad.any():
        f0raw = baseline(f[:, bad], fs, settings)  # (T, n_bad)
        if (f0raw <= floor[bad]).any():
            cols = np.flatnonzero(bad)[(f0raw <= floor[bad]).any(axis=0)].tolist()
            raise InputError(f"baseline fluorescence is not positive for ROI column(s) {cols[:10]}; "
                             "if the traces are already ΔF/F pass signal='dff'", path)
        denom[:, bad] = f0raw
    dff = (fc - f0c) / denom  # (T, N)
    return dff, {"dff_raw_denominator_rois": np.flatnonzero(bad).tolist()}


# --------------------------------------------------------------------------- checks


def check_fs(fs, path=None, what="sampling rate") -> float:
    """Return ``fs`` as a positive finite float or raise InputError."""
    try:
        fs = float(fs)
    except (TypeError, ValueError):
        raise InputError(f"{what} {fs!r} is not a number", path) from None
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(f"{what} must be a positive number of Hz, got {fs}", path)
    return fs


def resolve_fs(caller_fs, file_fs, path, file_what: str) -> tuple[float, str]:
    """Pick the caller's rate over the file's (warning on a >1 % mismatch).

    Returns the rate and where it came from ("caller" or ``file_what``).
    """
    if caller_fs is not None:
        fs = check_fs(caller_fs, path)
        if file_fs is not None and abs(file_fs - fs) > 0.01 * fs:
            warnings.warn(f"{path}: sampling rate {fs} Hz given, the file says {file_fs} Hz "
                          f"({file_what}); using {fs} Hz", stacklevel=3)
        return fs, "caller"
    if file_fs is None:
        raise InputError("no sampling rate: none in the file and none given (pass fs=...)", path)
    return check_fs(file_fs, path, f"sampling rate from {file_what}"), file_what


def check_traces(x: np.ndarray, path, name: str = "traces", allow_constant: bool = False) -> np.ndarray:
    """(T, N) finite float64 array with no constant column (unless allowed), else InputError."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise InputError(f"{name} must be a non-empty 2-D array (time × ROI), got shape {x.shape}", path)
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise InputError(f"{name} are not real numbers (dtype {x.dtype})", path)
    x = x.astype(np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        cols = np.flatnonzero(~finite.all(axis=0))
        raise InputError(f"{name} contain {int((~finite).sum())} NaN/Inf values "
                         f"(ROI columns {cols[:10].tolist()})", path)
    if x.shape[0] > 1 and not allow_constant:
        const = np.flatnonzero(np.ptp(x, axis=0) == 0)
        if const.size:
            raise InputError(f"{name} are constant in ROI column(s) {const[:10].tolist()}", path)
    return x


def finish(traces, fs, roi_ids, path, meta, indicator=None, tau=None) -> CalciumRecording:
    """Attach the indicator kernel, check the length against it and build the record."""
    if indicator is None and tau is None:
        indicator, meta = DEFAULT_INDICATOR, dict(meta, indicator_default=True)
    kernel = np.asarray(calcium_kernel(1.0 / fs, tau=tau, indicator=indicator), dtype=np.float64)
    T = traces.shape[0]
    if T < kernel.size:
        raise InputError(f"recording has {T} samples, fewer than the {kernel.size}-tap indicator "
                         f"kernel at {fs:g} Hz", path)
    traces = check_traces(traces, path, "ΔF/F traces")
    meta = dict(meta, fs=fs, n_samples=T, n_rois=traces.shape[1], indicator=indicator, tau=tau,
                kernel_taps=int(kernel.size))
    return CalciumRecording(traces=traces, fs=fs, roi_ids=list(roi_ids), source=str(path),
                            kernel=kernel, meta=meta)


# --------------------------------------------------------------------------- plain arrays


def _read_table(path: Path) -> tuple[np.ndarray, list | None, np.ndarray | None]:
    """CSV/TSV → (values (T, N), header or None, time column or None)."""
    import pandas as pd

    sep = "\t" if path.suffix in (".tsv", ".txt") else ","
    try:
        raw = pd.read_csv(path, sep=sep, header=None, dtype=str, comment="#", skip_blank_lines=True)
    except Exception as exc:  # pandas raises many kinds
        raise InputError(f"cannot read table: {exc}", path) from None
    if raw.empty:
        raise InputError("table is empty", path)
    first = pd.to_numeric(raw.iloc[0], errors="coerce")
    header = None
    if first.isna().any():  # a header row
        header = [str(h).strip() for h in raw.iloc[0]]
        raw = raw.iloc[1:]
    values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)  # (T, C)
    bad = raw.notna().to_numpy() & np.isnan(values) & ~raw.isin(["nan", "NaN", "n/a"]).to_numpy()
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"non-numeric value {raw.iat[r, c]!r} at data row {r + 1}, column {c + 1}", path)
    times = None
    if header is not None and header[0].lower() in TIME_COLUMNS:
        times, values, header = values[:, 0], values[:, 1:], header[1:]
    return values, header, times


def fs_from_times(times: np.ndarray, path) -> float:
    """Sampling rate from (nearly) regular timestamps in seconds."""
    times = np.asarray(times, dtype=np.float64)
    if times.size < 2 or not np.isfinite(times).all():
        raise InputError("timestamps are missing, too few or not finite", path)
    d = np.diff(times)
    step = float(np.median(d))
    if step <= 0 or np.max(np.abs(d - step)) > 0.01 * step:
        raise InputError("timestamps are not regularly sampled (needed for a sampling rate)", path)
    return 1.0 / step


def read_array(path, fs=None, *, signal: str = "dff", settings: DffSettings | None = None,
               indicator=None, tau=None) -> CalciumRecording:
    """Read a plain T × N array (.npy, .csv, .tsv).

    Parameters
    ----------
    path : str or Path
        The array. A CSV/TSV may carry a header row (ROI names) and a first
        column named ``time``/``timestamp`` (seconds), which gives ``fs``.
    fs : float, optional
        Sampling rate in Hz; required unless the table has a time column.
    signal : {"dff", "raw"}
        "dff": the values are ΔF/F already; "raw": compute ΔF/F (no neuropil).
    settings : DffSettings, optional
    indicator, tau : optional
        Indicator kernel by name or decay time (see ``calcium_kernel``);
        GCaMP6f when neither is given.
    """
    path = Path(path)
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")
    if not path.is_file():
        raise InputError("no such file", path)
    header = times = None
    if path.suffix == ".npy":
        values = load_npy(path, "traces")
    else:
        values, header, times = _read_table(path)
    file_fs = fs_from_times(times, path) if times is not None else None
    fs, fs_source = resolve_fs(fs, file_fs, path, "time column")
    x = check_traces(values, path)
    meta = {"format": "array", "signal": signal, "fs_source": fs_source}
    if signal == "raw":
        settings = settings or DffSettings(neuropil_coef=0.0)
        x, info = compute_dff(x, fs, settings, path=path)
        meta.update(settings.as_meta(), neuropil_coef=0.0, **info)
    roi_ids = header if header is not None else list(range(x.shape[1]))
    return finish(x, fs, roi_ids, path, meta, indicator, tau)


# --------------------------------------------------------------------------- dispatcher


def load_calcium(path, fs=None, *, indicator=None, tau=None, signal: str | None = None,
                 settings: DffSettings | None = None, plane: int = 0,
                 series: str | None = None) -> CalciumRecording:
    """Load a Ca²⁺ recording as ΔF/F, whatever its format.

    Parameters
    ----------
    path : str or Path
        A suite2p output folder (``suite2p/``, ``plane0/`` or a folder holding
        F.npy), an NWB file (``.nwb``) or a plain array (.npy/.csv/.tsv).
    fs : float, optional
        Sampling rate in Hz; overrides the file's (with a warning if they differ).
    indicator : str, optional
        Indicator name for the kernel, e.g. "GCaMP6f". Default: the NWB imaging
        plane's indicator when it is a known one, else GCaMP6f (meta notes it).
    tau : float, optional
        Kernel decay time in seconds (instead of ``indicator``).
    signal : {"raw", "dff"}, optional
        Force how values are read; default: suite2p raw, NWB by container
        (DfOverF → dff, Fluorescence → raw), arrays dff.
    settings : DffSettings, optional
        Neuropil coefficient and baseline for raw fluorescence.
    plane : int
        suite2p plane folder to read.
    series : str, optional
        NWB RoiResponseSeries name (default: DfOverF first, then Fluorescence).

    Returns
    -------
    CalciumRecording

    Raises
    ------
    InputError
        One line naming the file for any unreadable or invalid input.
    """
    p = Path(path)
    if p.is_dir():
        from dsr.io.calcium_suite2p import read_suite2p

        return read_suite2p(p, fs, plane=plane, settings=settings, indicator=indicator, tau=tau,
                            signal=signal or "raw")
    if not p.exists():
        raise InputError("no such file or folder", p)
    if p.suffix.lower() == ".nwb":
        from dsr.io.calcium_nwb import read_nwb

        return read_nwb(p, fs, series=series, signal=signal, settings=settings,
                        indicator=indicator, tau=tau)
    if p.suffix.lower() in ARRAY_SUFFIXES:
        return read_array(p, fs, signal=signal or "dff", settings=settings, indicator=indicator, tau=tau)
    raise InputError(f"unknown Ca²⁺ format {p.suffix!r}: expected a suite2p folder, .nwb, "
                     f"or one of {', '.join(ARRAY_SUFFIXES)}", p)

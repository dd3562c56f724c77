"""Reading and validating one recording given as an array file (T × N).

Every problem becomes one :class:`~dsr.errors.InputError` naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dsr.errors import InputError
from dsr.io.sizes import load_npy

SUFFIXES = (".npy", ".csv", ".tsv", ".txt")
#: Largest |value| accepted: squares and sums of squares must stay finite in float32 (max ~3.4e38).
MAX_MAGNITUDE = 1e15
#: Smallest column range accepted: float32 has ~1e-38 normal numbers and z-scoring divides by the spread.
MIN_SPREAD = 1e-30


def load_array(path: str | Path, what: str = "data") -> np.ndarray:
    """Load a 2-D float array from .npy, .csv, .tsv or .txt (a header row is skipped).

    Raises
    ------
    InputError
        Missing or unreadable file, non-numeric content, or an array that is not 2-D.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found", path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = load_npy(path, what)
        elif suffix in (".csv", ".tsv", ".txt"):
            arr = _load_text(path, "," if suffix == ".csv" else None)
        else:
            raise InputError(f"unsupported file type '{suffix}' (use {', '.join(SUFFIXES)})", path)
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read {what}: {_short(exc)}", path) from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what} is not numeric (dtype {arr.dtype})", path)
    if arr.ndim == 1:
        raise InputError(f"{what} is 1-D (shape {arr.shape}); expected a 2-D array T × N "
                         "(reshape a single channel to T × 1)", path)
    if arr.ndim != 2:
        raise InputError(f"{what} is {arr.ndim}-D (shape {arr.shape}); expected a 2-D array T × N", path)
    return arr.astype(np.float64)


def _load_text(path: Path, delimiter):
    text = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()  # a byte-order mark is not data
    rows = [ln for ln in text if ln.strip()]
    if not rows:
        raise InputError("file is empty", path)
    if delimiter is None:
        delimiter = "\t" if "\t" in rows[0] else None
    first = rows[0].split(delimiter)
    skip = 0 if all(_is_number(c) for c in first) else 1
    try:
        return np.loadtxt(path, delimiter=delimiter, skiprows=skip, ndmin=2, encoding="utf-8-sig")
    except ValueError as exc:
        raise InputError(f"not a numeric table: {_short(exc)}", path) from None


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def validate_series(x: np.ndarray, path: str | Path | None, min_length: int, what: str = "data",
                    allow_constant: bool = False) -> np.ndarray:
    """Check a (T, N) series: finite, no constant column, at least ``min_length`` samples.

    Raises
    ------
    InputError
        Naming the file and the first problem found.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"{what} must be 2-D T × N, got shape {x.shape}", path)
    T, N = x.shape
    if N == 0 or T == 0:
        raise InputError(f"{what} is empty (shape {x.shape})", path)
    bad = ~np.isfinite(x)
    if bad.any():
        t, n = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(x[t, n]) else "Inf"
        raise InputError(f"{what} contains {int(bad.sum())} non-finite values ({kind} first at row {t}, "
                         f"column {n})", path)
    biggest = float(np.abs(x).max())
    if biggest > MAX_MAGNITUDE:
        raise InputError(f"{what} holds values as large as {biggest:.3g}, beyond the {MAX_MAGNITUDE:.0e} that "
                         "single-precision training can square without overflow; rescale the data", path)
    if not allow_constant:
        spread = np.ptp(x, axis=0)
        const = np.flatnonzero(spread == 0)
        if const.size:
            raise InputError(f"{what} column {int(const[0])} is constant (no signal to model)", path)
        tiny = np.flatnonzero(spread < MIN_SPREAD)
        if tiny.size:
            raise InputError(f"{what} column {int(tiny[0])} varies by only {spread[tiny[0]]:.3g}, below what "
                             f"single precision resolves ({MIN_SPREAD:.0e}); rescale the data", path)
    if T < min_length:
        raise InputError(f"{what} has {T} samples, fewer than the {min_length} needed (the filter has "
                         f"{min_length} taps at this TR)", path)
    return x


def validate_companion(arr: np.ndarray, T: int, path, what: str) -> np.ndarray:
    """Nuisance regressors or inputs: finite, with the same number of rows as the data."""
    arr = validate_series(arr, path, 1, what=what, allow_constant=True)
    if arr.shape[0] != T:
        raise InputError(f"{what} has {arr.shape[0]} rows but the data has {T}", path)
    return arr

"""Confound strategies read from an fMRIPrep ``*_desc-confounds_timeseries.tsv``.

A strategy is a ``+``-joined list of parts:

- ``motion6`` (translations and rotations), ``motion12`` (+ temporal derivatives), ``motion24``
  (+ squares of both, Friston 24);
- ``wmcsf`` (mean white-matter and CSF signals), ``wmcsf8`` (+ derivatives and squares);
- ``gsr`` (global signal), ``gsr4`` (+ derivative and squares);
- ``scrub`` or ``scrub=0.5``: one spike regressor per volume whose framewise displacement exceeds the
  threshold in mm (default 0.5; it must be > 0), or fMRIPrep's ``motion_outlier*`` columns when FD is
  absent. Spike regressors keep the run's length, which a dynamical model needs. A run with more than
  :data:`MAX_SCRUBBED` of its volumes flagged is refused, as is any strategy whose regressors take more than
  :data:`MAX_REGRESSOR_FRACTION` of the run's degrees of freedom (the "cleaned" series would be noise);
- ``compcor`` (fMRIPrep's anatomical CompCor, combined mask) or ``compcor=MASK`` (``anat_separated``,
  ``temporal``, ``temporal_anat_combined``, ``temporal_anat_separated``), ``aroma`` (fMRIPrep's ICA-AROMA
  noise components, the non-aggressive "basic" variant), ``cosine`` (fMRIPrep's discrete-cosine high-pass
  basis), ``nss`` (fMRIPrep's non-steady-state volumes, as spike regressors);
- any column name of the TSV;
- ``none``.

Where the table is fMRIPrep's (found by :func:`nilearn.interfaces.fmriprep.load_confounds` beside the run's
preprocessed BOLD image), the parts above are selected by nilearn, which knows fMRIPrep's column names and
versions, CompCor's JSON metadata and AROMA; volumes nilearn would drop (non-steady-state) become spike
regressors so that the run keeps its length. Otherwise (a table not named as fMRIPrep names it, no BOLD image
given, or columns nilearn needs missing) the classic parts are read by dsr itself: missing derivative and square
columns are computed from their base column (derivatives start at 0); the fMRIPrep-only parts (``compcor``,
``aroma``, ``cosine``, ``nss``) are then refused.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from dsr.errors import InputError
from dsr.library_warnings import logged_warnings

MOTION6 = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
_ALIASES = {"white_matter": ("WhiteMatter",), "csf": ("CSF",), "global_signal": ("GlobalSignal",),
            "framewise_displacement": ("FramewiseDisplacement",)}
DEFAULT_STRATEGY = "motion6+wmcsf"
#: Largest fraction of a run's volumes that scrubbing may flag (a common exclusion criterion is 20-25 %).
MAX_SCRUBBED = 0.25
#: Largest fraction of a run's degrees of freedom that confound regressors (with mean and trend) may take.
MAX_REGRESSOR_FRACTION = 0.5
#: Strategy parts and the nilearn ``load_confounds`` strategy and option each stands for.
NILEARN_PARTS = {"motion6": ("motion", "basic"), "motion12": ("motion", "derivatives"), "motion24": ("motion", "full"),
                 "wmcsf": ("wm_csf", "basic"), "wmcsf8": ("wm_csf", "full"), "gsr": ("global_signal", "basic"),
                 "gsr4": ("global_signal", "full"), "compcor": ("compcor", "anat_combined"),
                 "aroma": ("ica_aroma", "basic"), "cosine": ("high_pass", None), "nss": ("non_steady_state", None)}
COMPCOR_MASKS = ("anat_combined", "anat_separated", "temporal", "temporal_anat_combined", "temporal_anat_separated")
FMRIPREP_ONLY = ("compcor", "aroma", "cosine", "nss")


def _expand(bases, derivatives: bool, squares: bool) -> list[str]:
    cols = list(bases)
    if derivatives:
        cols += [f"{b}_derivative1" for b in bases]
    if squares:
        cols += [f"{c}_power2" for c in list(cols)]
    return cols


def strategy_columns(strategy: str) -> tuple[list[str], float | None]:
    """Columns a strategy asks for, and the scrubbing FD threshold (None: no scrubbing).

    Raises
    ------
    InputError
        An unknown part or a malformed threshold (no file to name: the path is None).
    """
    cols: list[str] = []
    scrub = None
    for part in (p.strip() for p in str(strategy).split("+")):
        if not part or part.lower() == "none":
            continue
        key = part.lower()
        table = {"motion6": (MOTION6, False, False), "motion12": (MOTION6, True, False),
                 "motion24": (MOTION6, True, True), "wmcsf": (("white_matter", "csf"), False, False),
                 "wmcsf8": (("white_matter", "csf"), True, True), "gsr": (("global_signal",), False, False),
                 "gsr4": (("global_signal",), True, True)}
        if key in table:
            cols += [c for c in _expand(*table[key]) if c not in cols]
        elif key.partition("=")[0] in FMRIPREP_ONLY:
            name, _, option = key.partition("=")
            if option and not (name == "compcor" and option in COMPCOR_MASKS):
                raise InputError(f"bad option '{option}' in confound strategy '{strategy}' (only compcor takes "
                                 f"one: {', '.join(COMPCOR_MASKS)})")
        elif key.startswith("scrub"):
            _, _, value = key.partition("=")
            try:
                scrub = float(value) if value else 0.5
            except ValueError:
                raise InputError(f"bad scrubbing threshold in confound strategy '{strategy}'") from None
            if not (math.isfinite(scrub) and scrub > 0):
                raise InputError(f"the scrubbing threshold in confound strategy '{strategy}' must be a "
                                 f"framewise displacement > 0 mm (e.g. scrub=0.5), got {value}")
        elif part not in cols:
            cols.append(part)  # a column name of the TSV
    return cols, scrub


def _column(df: pd.DataFrame, name: str, path: Path) -> np.ndarray:
    """One column by name, an alias, or computed from its base (derivative1 / power2)."""
    for cand in (name,) + _ALIASES.get(name, ()):
        if cand in df.columns:
            values = pd.to_numeric(df[cand], errors="coerce")
            text = values.isna() & df[cand].notna()
            if text.any():
                row = int(np.argmax(text.to_numpy()))
                raise InputError(f"column '{cand}' holds text ({str(df[cand].iloc[row])[:30]!r} in data row "
                                 f"{row + 1}) where a number or n/a belongs", path)
            return values.to_numpy(dtype=np.float64)
    if name.endswith("_power2"):
        return _column(df, name[: -len("_power2")], path) ** 2
    if name.endswith("_derivative1"):
        base = _column(df, name[: -len("_derivative1")], path)
        return np.concatenate([[0.0], np.diff(base)])
    raise InputError(f"no column '{name}' in the confounds table", path)


def read_confounds_table(path: str | Path) -> pd.DataFrame:
    """Read a confounds TSV (``n/a`` is NaN)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("confounds file not found", path)
    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a", "N/A", "NaN", "nan"])
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the confounds table ({exc.__class__.__name__}: {exc})", path) from None


_DETAIL = ("basic", "derivatives", "power2", "full")


def strategy_parts(strategy: str) -> list[str]:
    """The parts of a strategy, as written (``none`` and empty parts dropped)."""
    return [p.strip() for p in str(strategy).split("+") if p.strip() and p.strip().lower() != "none"]


def _nilearn_selection(path: Path, bold: Path | None, parts: list[str], n_volumes: int):
    """Regressors (T, C) and names of the nilearn parts of a strategy, or the reason nilearn cannot select them
    (no BOLD image, a table that is not the one fMRIPrep wrote beside it, columns it needs missing)."""
    if bold is None or not parts:
        return "no preprocessed BOLD image given"
    from nilearn.interfaces.fmriprep import load_confounds as nilearn_load_confounds
    from nilearn.interfaces.fmriprep.load_confounds_utils import MissingConfoundError, get_confounds_file

    strategies, options = [], {}
    for part in parts:
        name, _, option = part.lower().partition("=")
        strat, default = NILEARN_PARTS[name]
        if strat == "non_steady_state":  # nilearn always detects these; "nss" only asks for their spikes
            continue
        strategies += [strat] if strat not in strategies else []
        option = option or default
        if option in _DETAIL and options.get(strat) in _DETAIL:  # motion6+motion24: the fuller one
            option = max(option, options[strat], key=_DETAIL.index)
        if option:
            options[strat] = option
    if "compcor" in strategies and "high_pass" not in strategies:
        strategies.append("high_pass")  # fMRIPrep's CompCor is computed after its cosine high-pass
    try:
        with logged_warnings("nilearn"):
            if Path(get_confounds_file(str(bold), False, False)).resolve() != path.resolve():
                return "the table is not the one fMRIPrep wrote beside the BOLD image"
            table, mask = nilearn_load_confounds(str(bold), strategy=tuple(strategies), demean=False, **options)
    except (ValueError, TypeError, MissingConfoundError, OSError, KeyError) as exc:  # TypeError: a text cell
        return f"nilearn: {' '.join(str(exc).split())[:200]}"
    x = table.to_numpy(dtype=np.float64) if table is not None else np.zeros((n_volumes, 0))  # (T, C)
    names = [str(c) for c in table.columns] if table is not None else []
    wants_nss = any(p.lower() == "nss" for p in parts)
    if mask is not None and wants_nss:  # volumes nilearn would drop: spike regressors, the run keeps its length
        dropped = np.setdiff1d(np.arange(n_volumes), np.asarray(mask))
        spikes = np.zeros((n_volumes, len(dropped)))
        spikes[dropped, np.arange(len(dropped))] = 1.0
        x, names = np.concatenate([x, spikes], 1), names + [f"non_steady_state_{i:03d}" for i in range(len(dropped))]
    return x, names


def load_confounds(path: str | Path, strategy: str, n_volumes: int,
                   bold: str | Path | None = None) -> tuple[np.ndarray, list[str]]:
    """Confound regressors of a run following ``strategy``.

    Parameters
    ----------
    path : path
        fMRIPrep confounds TSV.
    strategy : str
        See the module docstring.
    n_volumes : int
        Length of the BOLD run; the table must have one row per volume.
    bold : path, optional
        The run's preprocessed BOLD image; where fMRIPrep wrote ``path`` beside it, nilearn selects the
        columns.

    Returns
    -------
    regressors : ndarray, shape (T, C)
    names : list of str

    Raises
    ------
    InputError
        Wrong row count, a missing column, non-finite values beyond the first row, an fMRIPrep-only part
        without fMRIPrep's table.
    """
    path = Path(path)
    cols, scrub = strategy_columns(strategy)
    parts = strategy_parts(strategy)
    known = [p for p in parts if p.lower().partition("=")[0] in NILEARN_PARTS]
    if not parts:
        return np.zeros((n_volumes, 0)), []
    df = read_confounds_table(path)
    if len(df) != n_volumes:
        raise InputError(f"the confounds table has {len(df)} rows but the BOLD run has {n_volumes} volumes",
                         path)
    out, names = [], []
    selected = _nilearn_selection(path, None if bold is None else Path(bold), known, n_volumes)
    if not isinstance(selected, str):
        if len(selected[0]) != n_volumes:
            raise InputError(f"nilearn selected {len(selected[0])} rows but the BOLD run has {n_volumes} volumes",
                             path)
        out, names = list(selected[0].T), list(selected[1])
        bad = [nm for nm, v in zip(names, out) if not np.all(np.isfinite(v[1:]))]
        if bad:
            raise InputError(f"column '{bad[0]}' holds missing or non-finite values after the first row", path)
        custom = [p for p in parts if p not in known and not p.lower().startswith("scrub")]
        cols = [c for c in cols if c in custom]
    else:
        only = [p for p in known if p.lower().partition("=")[0] in FMRIPREP_ONLY]
        if only:
            raise InputError(f"confound part '{only[0]}' needs fMRIPrep's confounds table (and its JSON) beside the "
                             f"run's preprocessed BOLD image ({selected})", path)
    for name in cols:
        values = _column(df, name, path)  # (T,)
        if not np.all(np.isfinite(values[1:])):
            raise InputError(f"column '{name}' holds missing or non-finite values after the first row", path)
        out.append(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0))
        names.append(name)
    if scrub is not None:
        spikes = _spikes(df, scrub, path)  # (T, S)
        if spikes.shape[1] > MAX_SCRUBBED * n_volumes:
            raise InputError(f"scrubbing at framewise displacement > {scrub:g} mm flags {spikes.shape[1]} of "
                             f"{n_volumes} volumes ({spikes.shape[1] / n_volumes:.0%}, more than "
                             f"{MAX_SCRUBBED:.0%}): too much motion to model this run; exclude it or raise the "
                             "threshold", path)
        out += list(spikes.T)
        names += [f"spike_{i:03d}" for i in range(spikes.shape[1])]
    if len(names) + 2 > MAX_REGRESSOR_FRACTION * n_volumes:  # + constant and linear trend
        shown = strategy if len(strategy) <= 60 else strategy[:57] + "..."
        raise InputError(f"confound strategy '{shown}' gives {len(names)} regressors for {n_volumes} volumes: "
                         f"with the mean and trend that leaves under {1 - MAX_REGRESSOR_FRACTION:.0%} of the "
                         "degrees of freedom for the signal; choose a smaller strategy", path)
    return (np.stack(out, axis=1) if out else np.zeros((n_volumes, 0))), names


def _spikes(df: pd.DataFrame, threshold: float, path: Path) -> np.ndarray:
    """(T, S) one-hot regressors for the volumes to scrub."""
    n = len(df)
    try:
        fd = np.nan_to_num(_column(df, "framewise_displacement", path), nan=0.0)
        bad = np.flatnonzero(fd > threshold)
    except InputError:
        outliers = [c for c in df.columns if str(c).startswith("motion_outlier")]
        if not outliers:
            raise InputError("scrubbing needs a 'framewise_displacement' or 'motion_outlier*' column",
                             path) from None
        bad = np.flatnonzero(df[outliers].fillna(0).to_numpy().sum(axis=1) > 0)
    spikes = np.zeros((n, len(bad)))
    spikes[bad, np.arange(len(bad))] = 1.0
    return spikes

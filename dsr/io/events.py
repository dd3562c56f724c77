"""BIDS ``events.tsv`` → external inputs: one boxcar per condition, sampled at the TR.

Volume ``t`` covers ``[t·TR, (t+1)·TR)``; its value for a condition is the fraction of that interval
covered by the condition's events (1 inside a long block, between 0 and 1 at its edges), times the
event's ``amplitude``/``modulation`` column when there is one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dsr.errors import InputError


def read_events(path: str | Path) -> pd.DataFrame:
    """Read and check an events TSV (``onset``, ``duration``, optional ``trial_type``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("events file not found", path)
    try:
        df = pd.read_csv(path, sep="\t", na_values=["n/a"])
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the events table ({exc.__class__.__name__}: {exc})", path) from None
    for col in ("onset", "duration"):
        if col not in df.columns:
            raise InputError(f"the events table has no '{col}' column", path)
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any():
            raise InputError(f"column '{col}' holds a missing or non-numeric value (row "
                             f"{int(values.isna().to_numpy().argmax()) + 1})", path)
        df[col] = values.astype(float)
    if (df["duration"] < 0).any():
        raise InputError("negative event duration", path)
    return df


def events_to_inputs(path: str | Path, n_volumes: int, tr: float, *,
                     conditions: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Boxcar inputs of shape (T, n_conditions) from an events file.

    Parameters
    ----------
    path : path
        BIDS events TSV.
    n_volumes : int
        Number of volumes T of the run.
    tr : float
        Repetition time in seconds.
    conditions : list of str, optional
        Conditions (``trial_type`` values) to keep, in this order; default all, sorted.

    Returns
    -------
    inputs : ndarray, shape (T, C)
    names : list of str

    Raises
    ------
    InputError
        Unreadable table, missing columns, a requested condition absent.
    """
    path = Path(path)
    df = read_events(path)
    types = (df["trial_type"].fillna("n/a").astype(str) if "trial_type" in df.columns
             else pd.Series(["event"] * len(df)))
    names = sorted(set(types)) if conditions is None else list(conditions)
    for name in names:
        if name not in set(types):
            raise InputError(f"no events of condition '{name}'", path)
    weight_col = next((c for c in ("amplitude", "modulation") if c in df.columns), None)
    weights = (pd.to_numeric(df[weight_col], errors="coerce").fillna(1.0).to_numpy()
               if weight_col else np.ones(len(df)))
    beyond = df["onset"].to_numpy() >= n_volumes * tr
    if beyond.any():
        i = int(np.argmax(beyond))
        raise InputError(f"{int(beyond.sum())} event(s) start after the run ends (first: onset "
                         f"{df['onset'].iloc[i]:g} s in data row {i + 1}; the run lasts {n_volumes} x {tr:g} s = "
                         f"{n_volumes * tr:g} s); is this the events file of another run, or are onsets in ms?",
                         path)
    start = np.arange(n_volumes) * tr  # (T,)
    end = start + tr
    inputs = np.zeros((n_volumes, len(names)))  # (T, C)
    for onset, duration, kind, w in zip(df["onset"], df["duration"], types, weights):
        if kind not in names:
            continue
        c = names.index(kind)
        if duration == 0:  # an impulse: all in the volume that holds its onset
            t = int(np.floor(onset / tr))
            if 0 <= t < n_volumes:
                inputs[t, c] += w
            continue
        overlap = np.clip(np.minimum(end, onset + duration) - np.maximum(start, onset), 0.0, None)
        inputs[:, c] += w * overlap / tr
    return inputs, names

"""Which of a run's fits (one per seed) the group level's features come from.

With ``seeds.combine = "mean"`` every fit counts and a participant's feature is the mean over its fits. With
``"best"`` each run keeps the one fit whose held-out score ``seeds.select_by`` (a ``metrics.json`` score of
the run's test part, never of another run) is lowest, and the participant's feature is the mean over its
runs' kept fits; the spread over all fits is still reported (``*_sd``). On real split-half BOLD the kept
seed's λ_max was more reliable across halves than the mean or median over seeds (``benchmarks/RESULTS.md``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: The columns that name one run (its fits differ only in ``seed``).
RUN_KEYS = ["participant_id", "session", "run"]


def selected_fits(runs: pd.DataFrame, combine: str, select_by: str) -> pd.Series:
    """A boolean per row of ``runs`` (one row per fit): does the fit count towards its participant's features?

    Parameters
    ----------
    runs : DataFrame
        One row per fit with the :data:`RUN_KEYS` columns and the score column ``select_by``.
    combine : {"mean", "best"}
        Every fit counts, or per run only the fit with the lowest finite ``select_by`` (ties: the first row).
        A run none of whose fits has a finite score keeps all of them.
    select_by : str
        The score column (lower is better).

    Returns
    -------
    Series of bool, indexed like ``runs``.
    """
    if combine == "mean" or select_by not in runs.columns:
        return pd.Series(True, index=runs.index)
    if combine != "best":
        raise ValueError(f"combine must be 'mean' or 'best', got {combine!r}")
    score = pd.to_numeric(runs[select_by], errors="coerce").where(lambda v: np.isfinite(v))
    keys = runs[RUN_KEYS].astype(str).agg("\x1f".join, axis=1)
    keep = pd.Series(False, index=runs.index)
    for _, idx in keys.groupby(keys).groups.items():
        s = score.loc[idx]
        if s.notna().any():
            keep.loc[s.idxmin()] = True
        else:
            keep.loc[idx] = True
    return keep

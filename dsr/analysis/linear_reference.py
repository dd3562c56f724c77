"""The references of one fit: a VAR(1) fitted to the same training part, scored on the same test part, and
the data's own floor (stretches of the training part itself scored the same way).

Macroscale fMRI is often described well by linear models (Volkmann et al., NeurIPS 2024, compare against such
references), so a report shows the convSSM's held-out D_stsp and D_H beside those of a VAR(1)
(:func:`dsr.models.linear.fit_var1`) fitted by least squares to the training volumes. The VAR(1)'s
stochastic samples (started from its stationary distribution) are scored against the held-out volumes with
the fit's own metric settings, in the units of the cleaned series as the convSSM's ``dstsp_test``/``dh_test``.
:func:`data_floor` scores stretches of the recording's own training part as if they were samples: a model
whose samples were as like the test part as the recording's own earlier volumes would score about that, so
it says how far below VAR(1) these data let any model go (on real rest fMRI halves, the recording's other half
beats VAR(1) on D_H for only 11 of 14: benchmarks/RESULTS.md, Session 9).
"""
from __future__ import annotations

import numpy as np

from dsr.analysis.heldout import score_samples
from dsr.models.linear import fit_var1

_NO_SCORES = {"dstsp_test": float("nan"), "dh_test": float("nan")}


def var1_reference(x: np.ndarray, n_train: int, tr: float = 1.0, n_samples: int = 10, seed: int = 0,
                   n_bins: int = 30, scaling: float = 1.0, bins_max_dims: int = 5,
                   smoothing: float = 20.0) -> tuple[dict, np.ndarray]:
    """VAR(1) fitted to ``x[:n_train]`` and scored on ``x[n_train:]``.

    Parameters
    ----------
    x : array (T, N)
        The series the convSSM was fitted to.
    n_train : int
        Training volumes (the rest is the test part).
    tr, n_samples, seed
        Repetition time, samples scored, seed of the samples.
    n_bins, scaling, bins_max_dims, smoothing
        Metric settings (the fit's ``eval`` section).

    Returns
    -------
    scores : dict
        ``dstsp_test``, ``dh_test`` (means over samples), NaN where the test part is under 2 volumes.
    sample : array (T, N)
        One sample of the VAR(1), to draw beside the data.
    """
    x = np.asarray(x, dtype=np.float64)
    model = fit_var1([x[:n_train]], tr)
    draws = model.generate(len(x), seed=seed, n_samples=n_samples)[0]  # (n_samples, T, N)
    test = x[n_train:]
    if len(test) < 2:
        return dict(_NO_SCORES), draws[0]
    return _score_test(test, list(draws), seed=seed, n_bins=n_bins, scaling=scaling, bins_max_dims=bins_max_dims,
                       smoothing=smoothing), draws[0]


def data_floor(x: np.ndarray, n_train: int, n_samples: int = 10, seed: int = 0, n_bins: int = 30,
               scaling: float = 1.0, bins_max_dims: int = 5, smoothing: float = 20.0) -> dict:
    """The recording's own training part scored against its test part: the data's floor.

    Parameters
    ----------
    x : array (T, N)
        The series the convSSM was fitted to.
    n_train : int
        Training volumes (the rest is the test part).
    n_samples : int
        At most this many non-overlapping stretches of the test part's length, taken from the end of the
        training part backwards, are scored as samples (their mean is reported).
    seed, n_bins, scaling, bins_max_dims, smoothing
        Metric settings (the fit's ``eval`` section), as in :func:`var1_reference`.

    Returns
    -------
    dict
        ``dstsp_test``, ``dh_test``; NaN where the test part is under 2 volumes or longer than the training part.
    """
    x = np.asarray(x, dtype=np.float64)
    test = x[n_train:]
    n = len(test)
    if n < 2 or n > n_train:
        return dict(_NO_SCORES)
    k = min(n_samples, n_train // n)
    stretches = [x[n_train - (i + 1) * n:n_train - i * n] for i in range(k)]  # k × (n, N)
    return _score_test(test, stretches, seed=seed, n_bins=n_bins, scaling=scaling, bins_max_dims=bins_max_dims,
                       smoothing=smoothing)


def _score_test(test: np.ndarray, samples: list, **settings) -> dict:
    """Samples scored against the test part (T, N) in its own units (no re-standardisation), mean over samples."""
    N = test.shape[1]
    sc = score_samples(test, samples, scale=(np.zeros(N), np.ones(N)), **settings)
    return {"dstsp_test": sc["dstsp"], "dh_test": sc["dh"]}

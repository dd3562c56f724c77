"""Distances between fitted models, split-half identification and test–retest reliability.

Which distance between two fits tells individuals apart? Each is judged by split-half identification
(Finn et al., Nat. Neurosci. 2015: is each half's nearest other-half the same subject?), with the
functional-connectivity fingerprint (correlation distance between FC matrices) as the reference.

Model-based distances:

* generation distances: symmetrised D_stsp and D_H between stochastic generations of two models
  (each sample z-scored per channel, as :func:`dsr.analysis.group_stats.dynamics_distances`);
* operator distances between linearised dynamics, in the spirit of dynamical similarity analysis
  (Ostrow et al., NeurIPS 2023) and Koopman/DMD spectra: Frobenius distance of region-aligned operators
  (a VAR matrix, or a convSSM's Jacobian averaged along its orbit, :func:`mean_jacobian`), and the
  optimally matched distance between their eigenvalues (invariant to any change of basis);
* the Euclidean distance between Lyapunov spectra.

Reliability of scalar features across the two halves: ICC(3,1) (Shrout & Fleiss 1979, two-way mixed,
consistency, single measurement).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from dsr.analysis.dstsp import dstsp
from dsr.analysis.evaluate import zscore
from dsr.analysis.spectrum import dh


def pairwise(items: list, fn: Callable, symmetric: bool = True) -> np.ndarray:
    """D[i, j] = fn(items[i], items[j]) (symmetrised as (fn(a, b) + fn(b, a)) / 2 unless ``symmetric``)."""
    n = len(items)
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            d = fn(items[i], items[j]) if symmetric else 0.5 * (fn(items[i], items[j]) + fn(items[j], items[i]))
            D[i, j] = D[j, i] = d
    return D


# ---- the reference: FC fingerprints ---------------------------------------------------------
def fc_vector(x) -> np.ndarray:
    """Upper triangle of the Pearson correlation matrix of a (T, N) series, Fisher z-transformed."""
    C = np.corrcoef(np.asarray(x, dtype=np.float64).T)  # (N, N)
    iu = np.triu_indices(C.shape[0], 1)
    return np.arctanh(np.clip(C[iu], -0.999999, 0.999999))


def fc_distances(series: list) -> np.ndarray:
    """FC-fingerprint distance 1 − corr(FC_i, FC_j) between recordings (Finn et al. 2015), (n, n)."""
    v = np.stack([fc_vector(x) for x in series])  # (n, P)
    return np.clip(1.0 - np.corrcoef(v), 0.0, 2.0)


# ---- generation distances -------------------------------------------------------------------
def generation_distances(samples: list, scaling: float = 1.0, smoothing: float = 1.0,
                         seed: int = 0) -> dict[str, np.ndarray]:
    """Symmetrised D_stsp and D_H between models from their generated samples.

    Parameters
    ----------
    samples : list (one entry per model) of arrays (R, T, N)
        Stochastic samples of each model; sample r of model i is compared with sample r of model j.

    Returns
    -------
    dict with ``dstsp`` and ``dh``, each (n, n); non-finite samples give inf / 1.
    """
    zs = [[zscore(np.asarray(s, dtype=np.float64)) for s in np.asarray(m)] for m in samples]
    R = min(len(z) for z in zs)

    def d_stsp(a, b):
        vals = [dstsp(a[r], b[r], scaling=scaling, seed=seed + r) if np.isfinite(b[r]).all() and np.isfinite(a[r]).all()
                else np.inf for r in range(R)]
        return float(np.mean(vals))

    def d_h(a, b):
        return float(np.mean([dh(a[r], b[r], smoothing) if np.isfinite(a[r]).all() else 1.0 for r in range(R)]))

    return {"dstsp": pairwise(zs, d_stsp, symmetric=False), "dh": pairwise(zs, d_h)}


# ---- operator distances ---------------------------------------------------------------------
def mean_jacobian(jacobian: Callable, states) -> np.ndarray:
    """Jacobian averaged over the states of an orbit: ``jacobian`` (B, M) → (B, M, M), states (B, M) → (M, M)."""
    J = np.asarray(jacobian(states), dtype=np.float64)
    return J[np.isfinite(J).all(axis=(1, 2))].mean(0)


def dmd_operator(z) -> np.ndarray:
    """Least-squares linear operator of a trajectory z (T, M) → A (M, M) with z_t ≈ A z_{t-1} + c (exact DMD)."""
    z = np.asarray(z, dtype=np.float64)
    X = np.hstack([z[:-1], np.ones((len(z) - 1, 1))])  # (T-1, M+1)
    coef, *_ = np.linalg.lstsq(X, z[1:], rcond=None)
    return coef[:-1].T


def operator_distance(A, B) -> float:
    """Frobenius distance ‖A − B‖ of two operators on the same (region-aligned) coordinates (NaN if either is not finite)."""
    return float(np.linalg.norm(np.asarray(A) - np.asarray(B)))


def eigenvalue_distance(A, B) -> float:
    """Mean |λ_i − μ_π(i)| over the optimal matching π of the two operators' eigenvalues.

    Invariant to a change of basis of either operator (conjugation), as DSA's comparison of dynamics.
    NaN if either operator is not finite (a diverged fit).
    """
    if not (np.isfinite(A).all() and np.isfinite(B).all()):
        return float("nan")
    la, lb = np.linalg.eigvals(np.asarray(A)), np.linalg.eigvals(np.asarray(B))
    C = np.abs(la[:, None] - lb[None, :])  # (M, M)
    r, c = linear_sum_assignment(C)
    return float(C[r, c].mean())


def vector_distances(vectors: list) -> np.ndarray:
    """Euclidean distances between feature vectors (e.g. Lyapunov spectra); NaN entries → NaN rows."""
    V = np.stack([np.asarray(v, dtype=np.float64) for v in vectors])  # (n, P)
    return np.sqrt(((V[:, None] - V[None]) ** 2).sum(-1))


# ---- identification and reliability -----------------------------------------------------------
def identification_accuracy(D, subjects, halves) -> float:
    """Fraction of fits whose nearest fit from another half belongs to the same subject.

    Parameters
    ----------
    D : array (n, n)
        Distances between all fits (both halves); NaN and inf count as far.
    subjects, halves : arrays (n,)
        Subject label and half label of each fit.
    """
    D = np.where(np.isfinite(D), D, np.inf)
    subjects, halves = np.asarray(subjects), np.asarray(halves)
    hits = []
    for i in range(len(D)):
        other = np.flatnonzero(halves != halves[i])
        if other.size == 0 or not np.isfinite(D[i, other]).any():
            hits.append(False)
            continue
        hits.append(subjects[other[np.argmin(D[i, other])]] == subjects[i])
    return float(np.mean(hits))


def icc_3_1(Y) -> float:
    """ICC(3,1) of a (n subjects, k sessions) table: (MS_rows − MS_err) / (MS_rows + (k−1) MS_err).

    Rows with a non-finite entry are dropped; NaN with fewer than 2 complete rows.
    """
    Y = np.asarray(Y, dtype=np.float64)
    Y = Y[np.isfinite(Y).all(1)]
    n, k = Y.shape
    if n < 2 or k < 2:
        return float("nan")
    grand = Y.mean()
    ms_rows = k * ((Y.mean(1) - grand) ** 2).sum() / (n - 1)
    resid = Y - Y.mean(1, keepdims=True) - Y.mean(0, keepdims=True) + grand
    ms_err = (resid ** 2).sum() / ((n - 1) * (k - 1))
    denom = ms_rows + (k - 1) * ms_err
    return float((ms_rows - ms_err) / denom) if denom > 0 else float("nan")

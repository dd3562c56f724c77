"""Group statistics on per-subject dynamics features.

- feature vs covariate: Spearman (and Pearson) correlation for numeric covariates, a one-way F test for
  categorical ones; p-values by permutation of the covariate; Benjamini–Hochberg FDR over all tests;
- test–retest reliability: ICC(1) (one-way random effects) with within- and between-subject variances;
- between-subject distances of generated trajectories (symmetrised D_stsp, D_H) and a classical-MDS
  embedding.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from dsr.analysis.distances import pairwise
from dsr.analysis.dstsp import dstsp
from dsr.analysis.evaluate import zscore
from dsr.analysis.spectrum import dh

STAT_COLUMNS = ("feature", "covariate", "test", "n", "statistic", "effect", "p_parametric", "p_permutation",
                "q_fdr")


def _rank(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, axis=-1)


def _corr_rows(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Pearson correlation of x (n,) with each row of Y (P, n) → (P,)."""
    xc = x - x.mean()
    Yc = Y - Y.mean(-1, keepdims=True)
    den = np.sqrt((xc ** 2).sum() * (Yc ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (Yc @ xc) / den


def permutation_correlation(x, y, method: str = "spearman", n_perm: int = 2000,
                            seed: int = 0) -> tuple[float, float, float]:
    """Correlation of x and y with a two-sided permutation p-value.

    Parameters
    ----------
    x, y : array (n,)
        Pairs with a NaN in either are dropped.
    method : {"spearman", "pearson"}
    n_perm : int
        Permutations of y.
    seed : int

    Returns
    -------
    r, p_parametric, p_permutation : float
        NaN when fewer than 3 pairs remain or either is constant.
        p_permutation = (1 + #{|r_perm| >= |r|}) / (1 + n_perm).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan"), float("nan")
    if method == "spearman":
        x, y = _rank(x), _rank(y)
    elif method != "pearson":
        raise ValueError(f"unknown method {method!r}")
    r = float(_corr_rows(x, y[None])[0])
    n = len(x)
    t = r * np.sqrt((n - 2) / max(1e-300, 1 - r * r))
    p_par = float(2 * stats.t.sf(abs(t), n - 2))
    if n_perm < 1:
        return r, p_par, float("nan")
    rng = np.random.default_rng(seed)
    perm = np.stack([rng.permutation(y) for _ in range(n_perm)])  # (n_perm, n)
    r_perm = _corr_rows(x, perm)
    p_perm = float((1 + np.sum(np.abs(r_perm) >= abs(r) - 1e-12)) / (1 + n_perm))
    return r, p_par, p_perm


def _f_stat(x: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """One-way ANOVA F for x (n,) under each row of labels codes (P, n) in 0..k-1 → (P,), and eta²."""
    n = x.shape[0]
    onehot = codes[..., None] == np.arange(k)  # (P, n, k)
    cnt = onehot.sum(1)  # (P, k)
    means = (onehot * x[None, :, None]).sum(1) / np.maximum(cnt, 1)  # (P, k)
    ss_between = (cnt * (means - x.mean()) ** 2).sum(-1)  # (P,)
    ss_total = ((x - x.mean()) ** 2).sum()
    ss_within = ss_total - ss_between
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ss_between / (k - 1)) / (ss_within / (n - k)), ss_between / ss_total


def permutation_group_test(x, groups, n_perm: int = 2000, seed: int = 0) -> tuple[float, float, float, float]:
    """One-way F test of x across groups, with a permutation p-value.

    Returns
    -------
    F, eta_squared, p_parametric, p_permutation : float
        NaN when fewer than 2 groups, or fewer than k + 1 values, remain.
    """
    x = np.asarray(x, float)
    g = pd.Series(groups, dtype=object)
    ok = np.isfinite(x) & g.notna().to_numpy() & (g.astype(str) != "n/a").to_numpy()
    x, g = x[ok], g[ok]
    codes, uniques = pd.factorize(g.astype(str))
    k = len(uniques)
    if k < 2 or len(x) <= k or np.ptp(x) == 0:
        return (float("nan"),) * 4
    F, eta = _f_stat(x, codes[None], k)
    if n_perm < 1:
        return float(F[0]), float(eta[0]), float(stats.f.sf(F[0], k - 1, len(x) - k)), float("nan")
    rng = np.random.default_rng(seed)
    Fp, _ = _f_stat(x, np.stack([rng.permutation(codes) for _ in range(n_perm)]), k)
    p_perm = float((1 + np.sum(Fp >= F[0] - 1e-12)) / (1 + n_perm))
    return float(F[0]), float(eta[0]), float(stats.f.sf(F[0], k - 1, len(x) - k)), p_perm


def bh_fdr(p) -> np.ndarray:
    """Benjamini–Hochberg q-values (NaN p-values stay NaN and do not count)."""
    p = np.asarray(p, float)
    q = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return q
    order = ok[np.argsort(p[ok])]
    m = order.size
    adj = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(adj[::-1])[::-1])
    return q


def is_categorical(col: pd.Series) -> bool:
    """A column is categorical when it is not numeric (after dropping n/a)."""
    present = col.replace("n/a", np.nan)
    return pd.to_numeric(present, errors="coerce").notna().sum() < present.notna().sum()


def feature_covariate_tests(table: pd.DataFrame, features: list[str], covariates: list[str],
                            n_perm: int = 2000, seed: int = 0, method: str = "spearman") -> pd.DataFrame:
    """Every feature against every covariate, with permutation p-values and FDR over all tests.

    Parameters
    ----------
    table : DataFrame
        One row per participant with the feature and covariate columns.
    features, covariates : list of str
    n_perm, seed : int
    method : {"spearman", "pearson"}
        Correlation for numeric covariates (``effect`` holds the Pearson r when method is spearman).

    Returns
    -------
    DataFrame
        Columns :data:`STAT_COLUMNS`; ``statistic`` is the correlation (or F), ``effect`` the Pearson r (or η²).
    """
    rows = []
    for cov in covariates:
        col = table[cov]
        cat = is_categorical(col)
        y = None if cat else pd.to_numeric(col.replace("n/a", np.nan), errors="coerce").to_numpy(float)
        for feat in features:
            x = pd.to_numeric(table[feat], errors="coerce").to_numpy(float)
            if cat:
                F, eta, p_par, p_perm = permutation_group_test(x, col.to_numpy(), n_perm, seed)
                n = int(np.sum(np.isfinite(x) & col.notna().to_numpy()))
                rows.append([feat, cov, "anova_f", n, F, eta, p_par, p_perm])
            else:
                r, p_par, p_perm = permutation_correlation(x, y, method, n_perm, seed)
                pear = permutation_correlation(x, y, "pearson", 0, seed)[0] if method == "spearman" else r
                n = int(np.sum(np.isfinite(x) & np.isfinite(y)))
                rows.append([feat, cov, method, n, r, pear, p_par, p_perm])
    out = pd.DataFrame(rows, columns=list(STAT_COLUMNS[:-1]))
    out["q_fdr"] = bh_fdr(out["p_permutation"].to_numpy(float)) if len(out) else []
    return out


def icc(values, subjects) -> dict:
    """ICC(1): one-way random-effects reliability of single measurements (runs, sessions or seeds).

    Parameters
    ----------
    values : array (n,)
        One value per measurement; NaN dropped.
    subjects : array (n,)
        Subject label of each measurement.

    Returns
    -------
    dict
        ``icc``, ``var_between``, ``var_within``, ``n_subjects``, ``n_measurements``; NaN where fewer than
        2 subjects have 2 or more measurements. Unbalanced designs use the mean group size k0.
    """
    v = np.asarray(values, float)
    s = np.asarray(subjects)
    ok = np.isfinite(v)
    df = pd.DataFrame({"v": v[ok], "s": s[ok]})
    counts = df.groupby("s")["v"].transform("size")
    df = df[counts >= 2]
    g = df.groupby("s")["v"]
    a, n = g.ngroups, len(df)
    out = {"icc": float("nan"), "var_between": float("nan"), "var_within": float("nan"),
           "n_subjects": float(a), "n_measurements": float(n)}
    if a < 2:
        return out
    ni = g.size().to_numpy(float)
    means = g.mean().to_numpy()
    grand = df["v"].mean()
    msb = np.sum(ni * (means - grand) ** 2) / (a - 1)
    msw = np.sum((df["v"] - g.transform("mean")) ** 2) / (n - a)
    k0 = (n - np.sum(ni ** 2) / n) / (a - 1)
    var_b = max(0.0, (msb - msw) / k0)
    denom = msb + (k0 - 1) * msw
    out.update(icc=float((msb - msw) / denom) if denom > 0 else float("nan"), var_between=float(var_b),
               var_within=float(msw))
    return out


def distance_matrix(series: list[np.ndarray], fn: Callable[[np.ndarray, np.ndarray], float],
                    symmetric: bool = False) -> np.ndarray:
    """Pairwise distances D[i, j] = (fn(x_i, x_j) + fn(x_j, x_i)) / 2 (one call when ``symmetric``).

    Pairs whose series differ in their number of dims, or are non-finite, get NaN.
    """
    def guarded(a, b):
        if a.shape[1] != b.shape[1] or not (np.isfinite(a).all() and np.isfinite(b).all()):
            return np.nan
        return fn(a, b)
    return pairwise(series, guarded, symmetric)

def dynamics_distances(series: list[np.ndarray], n_bins: int = 30, scaling: float = 1.0,
                       bins_max_dims: int = 3, smoothing: float = 20.0) -> dict[str, np.ndarray]:
    """Symmetrised D_stsp and D_H between subjects' generated series (each z-scored), (S, S) each."""
    zs = [zscore(np.asarray(x, float)) for x in series]
    return {"dstsp": distance_matrix(zs, lambda a, b: dstsp(a, b, n_bins=n_bins, scaling=scaling,
                                                             bins_max_dims=bins_max_dims)),
            "dh": distance_matrix(zs, lambda a, b: dh(a, b, smoothing), symmetric=True)}


def classical_mds(D: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS of a distance matrix (S, S) → coordinates (S, n_components).

    Non-finite or infinite distances are replaced by the largest finite one; components with a
    non-positive eigenvalue are zero.
    """
    D = np.array(D, float)
    fin = np.isfinite(D)
    D[~fin] = D[fin].max() if fin.any() else 0.0
    n = D.shape[0]
    Jc = np.eye(n) - 1.0 / n
    Bm = -0.5 * Jc @ (D ** 2) @ Jc
    w, V = np.linalg.eigh((Bm + Bm.T) / 2)
    idx = np.argsort(w)[::-1][:n_components]
    coords = V[:, idx] * np.sqrt(np.maximum(w[idx], 0.0))
    if coords.shape[1] < n_components:
        coords = np.pad(coords, ((0, 0), (0, n_components - coords.shape[1])))
    return coords

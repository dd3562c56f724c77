"""Group statistics on per-subject dynamics features.

- feature vs covariate: Spearman (or Pearson) correlation for a numeric feature and a numeric covariate,
  a one-way F test for a numeric feature across the groups of a categorical covariate; a nominal feature
  (a code such as ``attractor_kind``) is tested as nominal: Kruskal–Wallis H of a numeric covariate across
  the feature's categories, or the chi-square statistic of the contingency table against a categorical
  covariate. Every p-value is a permutation p-value from :func:`scipy.stats.permutation_test` (exact when
  the number of distinct permutations is at most ``n_perm``), with the parametric one beside it;
  Benjamini–Hochberg FDR over all tests by :func:`scipy.stats.false_discovery_control`;
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
#: What each code of the ``test`` column is (statistic; effect; the permutation).
TEST_NAMES = {
    "spearman": "Spearman rank correlation ρ (effect: Pearson r); permutation p, two-sided",
    "pearson": "Pearson correlation r; permutation p, two-sided",
    "anova_f": "one-way ANOVA F across the covariate's groups (effect: η²); permutation p of F",
    "kruskal_wallis": "Kruskal–Wallis H of the covariate across the feature's categories (nominal feature; "
                      "effect: ε² = H/(n−1)); permutation p of H",
    "chi_square": "chi-square statistic of the feature × covariate contingency table (nominal feature; "
                  "effect: Cramér's V); permutation p of χ²",
}
#: Features that are codes of categories, not quantities.
NOMINAL_FEATURES = ("attractor_kind",)


def _corr(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson correlation of x (..., n) with y (n,) along the last axis → (...)."""
    xc = x - x.mean(axis, keepdims=True)
    yc = y - y.mean()
    den = np.sqrt((xc ** 2).sum(axis) * (yc ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc @ yc) / den


def _permutation_p(result) -> float:
    return float(min(1.0, result.pvalue))


def permutation_correlation(x, y, method: str = "spearman", n_perm: int = 2000,
                            seed: int = 0) -> tuple[float, float, float]:
    """Correlation of x and y with a two-sided permutation p-value (:func:`scipy.stats.permutation_test`,
    pairings of x permuted against y).

    Parameters
    ----------
    x, y : array (n,)
        Pairs with a NaN in either are dropped.
    method : {"spearman", "pearson"}
    n_perm : int
        Resamples (0: no permutation p).
    seed : int

    Returns
    -------
    r, p_parametric, p_permutation : float
        NaN when fewer than 3 pairs remain or either is constant.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan"), float("nan")
    if method == "spearman":
        x, y = stats.rankdata(x), stats.rankdata(y)
    elif method != "pearson":
        raise ValueError(f"unknown method {method!r}")
    r = float(_corr(x, y))
    p_par = float(stats.pearsonr(x, y).pvalue)
    if n_perm < 1:
        return r, p_par, float("nan")
    res = stats.permutation_test((x,), lambda a, axis=-1: _corr(a, y, axis), permutation_type="pairings",
                                 vectorized=True, n_resamples=n_perm, alternative="two-sided",
                                 rng=np.random.default_rng(seed))
    return r, p_par, _permutation_p(res)


def _group_sums(codes: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and sums of values (n,) per group under labels codes (..., n) in 0..k-1 → (..., k) each."""
    onehot = (codes[..., None] == np.arange(k)).astype(float)  # (..., n, k)
    return onehot.sum(-2), np.swapaxes(onehot, -1, -2) @ values  # (..., k), (..., k)


def _f_statistic(codes: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """One-way ANOVA F of x (n,) under labels codes (..., n) → (...)."""
    cnt, sums = _group_sums(codes, x, k)
    ss_between = (sums ** 2 / np.maximum(cnt, 1)).sum(-1) - x.sum() ** 2 / len(x)
    ss_within = ((x - x.mean()) ** 2).sum() - ss_between
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ss_between / (k - 1)) / (ss_within / (len(x) - k))


def _h_statistic(codes: np.ndarray, ranks: np.ndarray, k: int) -> np.ndarray:
    """Kruskal–Wallis H (tie-corrected) of ranks (n,) under labels codes (..., n) → (...)."""
    n = len(ranks)
    cnt, sums = _group_sums(codes, ranks, k)
    h = 12.0 / (n * (n + 1)) * (sums ** 2 / np.maximum(cnt, 1)).sum(-1) - 3 * (n + 1)
    _, ties = np.unique(ranks, return_counts=True)
    return h / (1 - (ties ** 3 - ties).sum() / (n ** 3 - n))


def _valid_groups(x, groups):
    x = np.asarray(x, float)
    g = pd.Series(groups, dtype=object)
    ok = np.isfinite(x) & g.notna().to_numpy() & (g.astype(str) != "n/a").to_numpy()
    return x[ok], g[ok].astype(str).to_numpy()


def permutation_group_test(x, groups, n_perm: int = 2000, seed: int = 0) -> tuple[float, float, float, float]:
    """One-way F test of x across groups, with a permutation p-value (:func:`scipy.stats.permutation_test`,
    group labels permuted against x; one-sided, large F).

    Returns
    -------
    F, eta_squared, p_parametric, p_permutation : float
        NaN when fewer than 2 groups, or fewer than k + 1 values, remain.
    """
    x, g = _valid_groups(x, groups)
    labels = list(dict.fromkeys(g))
    k = len(labels)
    if k < 2 or len(x) <= k or np.ptp(x) == 0:
        return (float("nan"),) * 4
    samples = [x[g == lab] for lab in labels]
    res = stats.f_oneway(*samples)
    ss_total = ((x - x.mean()) ** 2).sum()
    eta = float(sum(len(s) * (s.mean() - x.mean()) ** 2 for s in samples) / ss_total)
    if n_perm < 1:
        return float(res.statistic), eta, float(res.pvalue), float("nan")
    codes = pd.factorize(g)[0]
    perm = stats.permutation_test((codes,), lambda c, axis=-1: _f_statistic(c, x, k), permutation_type="pairings",
                                  vectorized=True, n_resamples=n_perm, alternative="greater",
                                  rng=np.random.default_rng(seed))
    return float(res.statistic), eta, float(res.pvalue), _permutation_p(perm)


def kruskal_wallis_test(values, categories, n_perm: int = 2000, seed: int = 0) -> tuple[float, float, float, float]:
    """Kruskal–Wallis H of ``values`` (numeric) across ``categories`` (nominal), permutation p.

    Returns
    -------
    H, epsilon_squared, p_parametric, p_permutation : float
        NaN when fewer than 2 categories or all values equal.
    """
    x, g = _valid_groups(values, categories)
    labels = list(dict.fromkeys(g))
    if len(labels) < 2 or len(x) <= len(labels) or np.ptp(x) == 0:
        return (float("nan"),) * 4
    samples = [x[g == lab] for lab in labels]
    res = stats.kruskal(*samples)
    eps = float(res.statistic / (len(x) - 1))
    if n_perm < 1:
        return float(res.statistic), eps, float(res.pvalue), float("nan")
    codes, ranks = pd.factorize(g)[0], stats.rankdata(x)
    perm = stats.permutation_test((codes,), lambda c, axis=-1: _h_statistic(c, ranks, len(labels)),
                                  permutation_type="pairings", vectorized=True, n_resamples=n_perm, alternative="greater",
                                  rng=np.random.default_rng(seed))
    return float(res.statistic), eps, float(res.pvalue), _permutation_p(perm)


def _chi2(ca: np.ndarray, b_onehot: np.ndarray, ka: int, axis: int = -1) -> np.ndarray:
    """Pearson chi-square of the contingency tables of codes ca (..., n) in 0..ka-1 against a fixed one-hot
    b (n, kb) → (...)."""
    onehot_a = (ca[..., None] == np.arange(ka)).astype(float)  # (..., n, ka)
    observed = np.swapaxes(onehot_a, -1, -2) @ b_onehot  # (..., ka, kb)
    n = b_onehot.shape[0]
    expected = observed.sum(-1, keepdims=True) * observed.sum(-2, keepdims=True) / n  # (..., ka, kb)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum((observed - expected) ** 2 / expected, axis=(-2, -1))


def chi_square_test(a, b, n_perm: int = 2000, seed: int = 0) -> tuple[float, float, float, float]:
    """Chi-square statistic of the contingency table of two nominal variables, permutation p (``a``
    permuted against ``b``; exact for small n where every arrangement fits in ``n_perm``).

    Returns
    -------
    chi2, cramers_v, p_parametric (asymptotic chi-square), p_permutation : float
        NaN when either has fewer than 2 categories.
    """
    sa, sb = pd.Series(a, dtype=object), pd.Series(b, dtype=object)
    ok = (sa.notna() & sb.notna() & (sa.astype(str) != "n/a") & (sb.astype(str) != "n/a")).to_numpy()
    a, b = sa[ok].astype(str).to_numpy(), sb[ok].astype(str).to_numpy()
    ka, kb = len(set(a)), len(set(b))
    if ka < 2 or kb < 2:
        return (float("nan"),) * 4
    table = pd.crosstab(a, b).to_numpy()
    res = stats.chi2_contingency(table, correction=False)
    v = float(np.sqrt(res.statistic / (len(a) * (min(ka, kb) - 1))))
    if n_perm < 1:
        return float(res.statistic), v, float(res.pvalue), float("nan")
    codes = pd.factorize(a)[0]
    b_onehot = (pd.factorize(b)[0][:, None] == np.arange(kb)).astype(float)  # (n, kb)
    perm = stats.permutation_test((codes,), lambda c, axis=-1: _chi2(c, b_onehot, ka), permutation_type="pairings",
                                  vectorized=True, n_resamples=n_perm, alternative="greater",
                                  rng=np.random.default_rng(seed))
    return float(res.statistic), v, float(res.pvalue), _permutation_p(perm)


def bh_fdr(p) -> np.ndarray:
    """Benjamini–Hochberg q-values by :func:`scipy.stats.false_discovery_control` (NaN p-values stay NaN
    and do not count)."""
    p = np.asarray(p, float)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q


def is_categorical(col: pd.Series) -> bool:
    """A column is categorical when it is not numeric (after dropping n/a)."""
    present = col.replace("n/a", np.nan)
    return pd.to_numeric(present, errors="coerce").notna().sum() < present.notna().sum()


def distinct_values(col: pd.Series) -> int:
    """Number of distinct present values (n/a and NaN dropped; numbers rounded to 10 significant digits)."""
    present = col.replace("n/a", np.nan).dropna()
    num = pd.to_numeric(present, errors="coerce")
    if num.notna().all():
        return int(len(np.unique(np.round(num.to_numpy(float), 10))))
    return int(present.astype(str).nunique())


def informative_features(table: pd.DataFrame, features: list[str], min_distinct: int = 3) -> list[str]:
    """The features worth plotting or testing: at least ``min_distinct`` distinct values (2 for a nominal
    feature); a constant feature, or one with two values over many subjects, says nothing."""
    return [f for f in features
            if distinct_values(table[f]) >= (2 if f in NOMINAL_FEATURES else min_distinct)]


def feature_covariate_tests(table: pd.DataFrame, features: list[str], covariates: list[str],
                            n_perm: int = 2000, seed: int = 0, method: str = "spearman",
                            nominal: tuple[str, ...] = NOMINAL_FEATURES) -> pd.DataFrame:
    """Every feature against every covariate, with permutation p-values and FDR over all tests.

    Parameters
    ----------
    table : DataFrame
        One row per participant with the feature and covariate columns.
    features, covariates : list of str
    n_perm, seed : int
    method : {"spearman", "pearson"}
        Correlation for numeric covariates (``effect`` holds the Pearson r when method is spearman).
    nominal : tuple of str
        Features that are category codes (tested with Kruskal–Wallis or chi-square, see :data:`TEST_NAMES`).

    Returns
    -------
    DataFrame
        Columns :data:`STAT_COLUMNS`; ``test`` a key of :data:`TEST_NAMES`.
    """
    rows = []
    for cov in covariates:
        col = table[cov]
        cat = is_categorical(col)
        y = None if cat else pd.to_numeric(col.replace("n/a", np.nan), errors="coerce").to_numpy(float)
        for feat in features:
            x = pd.to_numeric(table[feat], errors="coerce").to_numpy(float)
            if feat in nominal:
                codes = np.where(np.isfinite(x), np.round(x).astype(str), "n/a")
                n = int(np.sum(np.isfinite(x) & col.replace("n/a", np.nan).notna().to_numpy()))
                if cat:
                    rows.append([feat, cov, "chi_square", n, *chi_square_test(codes, col.to_numpy(), n_perm, seed)])
                else:
                    rows.append([feat, cov, "kruskal_wallis", n, *kruskal_wallis_test(y, codes, n_perm, seed)])
            elif cat:
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

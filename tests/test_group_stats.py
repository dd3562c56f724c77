"""Group statistics: permutation tests, FDR, ICC, distances and MDS."""
import numpy as np
import pandas as pd

from dsr.analysis import group_stats as gs


def test_permutation_correlation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=20)
    r, p_par, p_perm = gs.permutation_correlation(x, x ** 3 + 1e-9 * rng.normal(size=20), n_perm=500)
    assert r > 0.99 and p_perm < 0.01 and p_par < 1e-6
    r, _, p_perm = gs.permutation_correlation(x, rng.normal(size=20), n_perm=500)
    assert abs(r) < 0.6 and p_perm > 0.01
    assert np.isnan(gs.permutation_correlation([1, 2, np.nan], [1, 2, 3])[0])  # too few pairs
    rp = gs.permutation_correlation(x, 2 * x + 1, method="pearson", n_perm=0)
    assert np.isclose(rp[0], 1) and np.isnan(rp[2])


def test_group_test_and_fdr():
    rng = np.random.default_rng(1)
    g = np.array(["a"] * 10 + ["b"] * 10)
    x = rng.normal(size=20) + 3 * (g == "b")
    F, eta, p_par, p_perm = gs.permutation_group_test(x, g, n_perm=500)
    assert F > 20 and 0.5 < eta <= 1 and p_perm < 0.01
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
    q = gs.bh_fdr(p)
    assert np.allclose(q[[0, 1, 2, 4]], [0.04, 0.16 / 3, 0.16 / 3, 0.5]) and np.isnan(q[3])


def test_feature_covariate_tests_table():
    rng = np.random.default_rng(2)
    t = pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(12)], "f1": np.arange(12.0),
                      "f2": rng.normal(size=12), "age": np.arange(12) * 2.0 + 20, "sex": list("FM" * 6)})
    s = gs.feature_covariate_tests(t, ["f1", "f2"], ["age", "sex"], n_perm=200)
    assert list(s.columns) == list(gs.STAT_COLUMNS) and len(s) == 4
    row = s[(s.feature == "f1") & (s.covariate == "age")].iloc[0]
    assert row.test == "spearman" and np.isclose(row.statistic, 1.0) and row.q_fdr < 0.05
    assert set(s[s.covariate == "sex"].test) == {"anova_f"}


def test_icc_recovers_variance_components():
    rng = np.random.default_rng(3)
    n_sub, n_rep, sb, sw = 400, 3, 2.0, 1.0
    subj = np.repeat(np.arange(n_sub), n_rep)
    v = rng.normal(0, sb, n_sub)[subj] + rng.normal(0, sw, n_sub * n_rep)
    out = gs.icc(v, subj)
    assert abs(out["icc"] - sb ** 2 / (sb ** 2 + sw ** 2)) < 0.05
    assert abs(out["var_within"] - sw ** 2) < 0.15 and abs(out["var_between"] - sb ** 2) < 0.6
    assert np.isnan(gs.icc([1.0, 2.0, 3.0], ["a", "b", "c"])["icc"])  # no repeated measurements


def test_distances_and_mds():
    pts = np.array([[0, 0], [3, 0], [0, 4], [3, 4.0]])
    D = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    Y = gs.classical_mds(D, 2)
    assert np.allclose(np.linalg.norm(Y[:, None] - Y[None], axis=-1), D, atol=1e-8)
    rng = np.random.default_rng(4)
    series = [rng.normal(size=(200, 2)), np.sin(np.arange(200) / 5)[:, None] * [1, 1] + 0.1 * rng.normal(size=(200, 2)),
              rng.normal(size=(200, 3))]
    dist = gs.dynamics_distances(series)
    for M in dist.values():
        assert np.allclose(M, M.T, equal_nan=True) and np.allclose(np.diag(M), 0)
        assert np.isnan(M[0, 2]) and np.isfinite(M[0, 1]) and M[0, 1] > 0
    assert gs.classical_mds(dist["dh"]).shape == (3, 2)


def test_bh_is_scipys_false_discovery_control():
    from scipy import stats

    rng = np.random.default_rng(5)
    p = rng.uniform(0, 0.2, 40)
    assert np.array_equal(gs.bh_fdr(p), stats.false_discovery_control(p, method="bh"))
    p[[3, 17]] = np.nan  # NaN p-values stay NaN and do not count in m
    q = gs.bh_fdr(p)
    ok = np.isfinite(p)
    assert np.isnan(q[[3, 17]]).all() and np.array_equal(q[ok], stats.false_discovery_control(p[ok]))


def test_permutation_p_values_come_from_scipy():
    """The p-values are scipy.stats.permutation_test's, and exact when every arrangement fits in n_perm."""
    from scipy import stats

    rng = np.random.default_rng(6)
    x, y = rng.normal(size=12), rng.normal(size=12)
    r, _, p = gs.permutation_correlation(x, y, method="pearson", n_perm=300, seed=4)
    ref = stats.permutation_test((x,), lambda a: stats.pearsonr(a, y).statistic, permutation_type="pairings",
                                 n_resamples=300, rng=np.random.default_rng(4))
    assert np.isclose(r, ref.statistic) and np.isclose(p, ref.pvalue)
    x5 = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # 5! = 120 pairings: exact, p = 2/120 for a perfect rank order
    assert np.isclose(gs.permutation_correlation(x5, x5 ** 2, n_perm=1000)[2], 2 / 120)
    g = np.array(list("aaabbbccc"))
    v = np.array([1.0, 2, 3, 7, 8, 9, 4, 5, 6])
    F, _, _, p_f = gs.permutation_group_test(v, g, n_perm=400, seed=1)
    ref = stats.permutation_test([v[g == k] for k in "abc"], lambda *s: stats.f_oneway(*s).statistic,
                                 n_resamples=400, alternative="greater", rng=np.random.default_rng(1))
    assert np.isclose(F, ref.statistic) and abs(p_f - ref.pvalue) < 0.03  # same test, its own resamples


def test_nominal_feature_tested_as_nominal():
    """attractor_kind (a category code) gets Kruskal-Wallis against a numeric covariate and chi-square
    against a categorical one, never a correlation."""
    from scipy import stats

    kinds = np.array([0, 0, 0, 3, 3, 3, 1, 1, 1, 3.0])
    age = np.array([20, 22, 21, 60, 62, 61, 40, 41, 39, 63.0])
    sex = np.array(list("FFFMMMFFFM"))
    t = pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(10)], "attractor_kind": kinds, "age": age,
                      "sex": sex, "f": np.arange(10.0)})
    s = gs.feature_covariate_tests(t, ["attractor_kind", "f"], ["age", "sex"], n_perm=500)
    kw = s[(s.feature == "attractor_kind") & (s.covariate == "age")].iloc[0]
    chi = s[(s.feature == "attractor_kind") & (s.covariate == "sex")].iloc[0]
    assert kw.test == "kruskal_wallis" and chi.test == "chi_square"
    assert np.isclose(kw.statistic, stats.kruskal(*[age[kinds == k] for k in (0, 1, 3)]).statistic)
    table = pd.crosstab(kinds, sex).to_numpy()
    assert np.isclose(chi.statistic, stats.chi2_contingency(table, correction=False).statistic)
    assert kw.p_permutation < 0.01 and chi.p_permutation < 0.05  # the kinds follow age and sex here
    assert set(s[s.feature == "f"].test) == {"spearman", "anova_f"}


def test_informative_features():
    t = pd.DataFrame({"a": [1.0, 1, 1, 1], "b": [1.0, 2, 1, 2], "c": [1.0, 2, 3, np.nan],
                      "attractor_kind": [3.0, 3, 2, 3]})
    assert gs.informative_features(t, ["a", "b", "c", "attractor_kind"]) == ["c", "attractor_kind"]

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

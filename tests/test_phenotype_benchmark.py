"""Helpers of benchmarks/phenotype.py (issue 19): exact leave-one-out ridge, connectivity features, scores."""
from __future__ import annotations

import numpy as np
import pytest
from bench_support import benchmark_module


def _bench():
    return benchmark_module("phenotype")


def test_ridge_leave_one_out_matches_refitting():
    B = _bench()
    rng = np.random.default_rng(0)
    A = rng.standard_normal((15, 4))
    A -= A.mean(0)
    y = A @ np.array([1.0, -0.5, 0.0, 0.2]) + 3.0 + 0.3 * rng.standard_normal(15)
    alphas = [0.01, 1.0, 30.0]
    brute = []
    for a in alphas:
        errs = []
        for i in range(15):
            keep = np.arange(15) != i
            D = np.c_[np.ones(14), A[keep]]  # unpenalised intercept
            coef = np.linalg.solve(D.T @ D + np.diag([0.0] + [a] * 4), D.T @ y[keep])
            errs.append((y[i] - coef[0] - A[i] @ coef[1:]) ** 2)
        brute.append(np.mean(errs))
    assert np.allclose(B.ridge_loo(A, y, alphas), brute)


def test_ridge_predicts_a_linear_target_tolerates_missing_features_and_does_not_extrapolate():
    B = _bench()
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (60, 3))
    X[40:] *= 0.9  # test rows inside the training range
    y = 2.0 * X[:, 0] - X[:, 1] + 5.0
    X[:, 2] = np.nan  # an all-missing feature
    pred, alpha = B.ridge_predict(X[:40], y[:40], X[40:])
    assert alpha <= 0.01 and B.scores(y[40:], pred)["r2"] > 0.99
    far = np.array([[100.0, 0.0, np.nan], [X[:40, 0].max(), 0.0, np.nan]])  # clipped to the training maximum
    p_far, _ = B.ridge_predict(X[:40], y[:40], far)
    assert p_far[0] == pytest.approx(p_far[1])


def test_connectivity_features_and_scores():
    B = _bench()
    x = np.random.default_rng(2).standard_normal((200, 8))
    f = B.fc_features(x)
    assert f.shape == (28,) and np.abs(f).max() < 0.3  # independent regions: small Fisher z
    y = np.arange(10.0)
    assert B.scores(y, y) == pytest.approx({"r2": 1.0, "rho": 1.0})
    assert B.scores(y, -y)["rho"] == pytest.approx(-1.0)

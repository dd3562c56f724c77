"""Hand-computed cases for the state-space divergence D_stsp."""
import numpy as np
import pytest
import torch

from dsr.analysis.dstsp import dstsp, dstsp_bins, dstsp_gmm


def _lorenz_like(t=4000, seed=0):
    rng = np.random.default_rng(seed)
    s = np.linspace(0, 60, t)
    return np.stack([np.sin(s), np.cos(1.3 * s), np.sin(0.7 * s)], 1) + 0.05 * rng.standard_normal((t, 3))


def test_bins_identical_is_zero():
    x = _lorenz_like()
    assert dstsp_bins(x, x) == pytest.approx(0.0, abs=1e-12)


def test_bins_hand_case_1d():
    # true: two points in each of 2 bins; generated: all 4 points in the first bin
    x_true = np.array([0.0, 0.0, 1.0, 1.0])[:, None]
    x_gen = np.zeros((4, 1))
    a = 1e-5
    p = np.array([2 + a, 2 + a]) / (4 + 2 * a)
    q = np.array([4 + a, a]) / (4 + 2 * a)
    expected = np.sum(p * np.log(p / q))
    assert dstsp_bins(x_true, x_gen, n_bins=2) == pytest.approx(expected, rel=1e-12)


def test_bins_points_outside_volume_dropped():
    x_true = np.array([0.0, 0.0, 1.0, 1.0])[:, None]
    x_gen = np.array([0.0, 0.0, 1.0, 1.0, 50.0, -50.0])[:, None]  # the two far points are ignored
    assert dstsp_bins(x_true, x_gen, n_bins=2) == pytest.approx(0.0, abs=1e-12)
    assert dstsp_bins(x_true, np.full((3, 1), 99.0), n_bins=2) == np.inf


def test_bins_positive_and_grows_with_shift():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, 2))
    y = rng.standard_normal((20000, 2))  # an independent draw of the same distribution
    d0 = dstsp_bins(x, y)
    d1 = dstsp_bins(x, y + 0.3)
    d2 = dstsp_bins(x, y + 0.8)
    assert 0 < d0 < 0.1 < d1 < d2


def test_bins_nonfinite_and_torch_input():
    x = _lorenz_like(500)
    bad = x.copy()
    bad[10, 1] = np.nan
    assert dstsp_bins(x, bad) == np.inf
    assert dstsp(x, bad) == np.inf
    assert dstsp_bins(torch.tensor(x), torch.tensor(x)) == pytest.approx(0.0, abs=1e-12)


def test_bins_constant_dim_is_finite():
    x = _lorenz_like(500)
    x[:, 2] = 1.0
    assert np.isfinite(dstsp_bins(x, x + 0.01))


def test_gmm_identical_is_zero():
    x = np.random.default_rng(0).standard_normal((2000, 10))
    assert dstsp_gmm(x, x) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("scaling", [1.0, 0.3])
def test_gmm_two_points_closed_form(scaling):
    mu1 = np.zeros((1, 4))
    mu2 = np.array([[1.0, -0.5, 0.0, 0.5]])
    d2 = np.sum((mu1 - mu2) ** 2)
    expected = d2 / (2 * scaling)
    n = 4000
    se = np.sqrt(d2 / scaling) / np.sqrt(n)  # std of (log p - log q) is ||d|| / σ
    got = dstsp_gmm(mu1, mu2, scaling=scaling, n_samples=n)
    assert got == pytest.approx(expected, abs=4 * se)


def test_gmm_high_dim_stable_and_chunked():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12000, 100))
    y = x[::-1] + 3.0  # far apart in 100-D: densities underflow without log-sum-exp
    d = dstsp_gmm(x, y, max_points=3000, n_samples=300)
    assert np.isfinite(d) and d > 100


def test_dispatch():
    x = np.random.default_rng(2).standard_normal((500, 4))
    y = x + 0.5
    assert dstsp(x, y, bins_max_dims=3) == dstsp_gmm(x, y)
    assert dstsp(x, y, bins_max_dims=5) == dstsp_bins(x, y)


def test_many_generated_series_equal_one_at_a_time():
    """dstsp_many shares the reference's work across rollouts; every value equals a single call."""
    from scipy.special import logsumexp

    from dsr.analysis.dstsp import _logsumexp_rows, dstsp_many

    rng = np.random.default_rng(3)
    a = rng.normal(size=(7, 50)) * 30
    np.testing.assert_allclose(_logsumexp_rows(a), logsumexp(a, axis=1), rtol=1e-13)
    truth = rng.normal(size=(400, 6))
    gens = [rng.normal(size=(300, 6)) * s for s in (0.5, 1.0, 2.0)] + [np.full((300, 6), np.nan)]
    many = dstsp_many(truth, gens, seed=4)
    assert many[:3] == [dstsp(truth, g, seed=4) for g in gens[:3]] and many[3] == float("inf")
    assert many[1] < many[0] and many[1] < many[2]  # the matching spread is closest
    truth3 = truth[:, :3]
    assert dstsp_many(truth3, [g[:, :3] for g in gens[:2]]) == [dstsp_bins(truth3, g[:, :3]) for g in gens[:2]]

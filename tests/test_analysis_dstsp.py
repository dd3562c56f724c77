"""Hand-computed cases for the state-space divergence D_stsp."""
import numpy as np
import pytest
import torch

from dsr.analysis.dstsp import (dstsp, dstsp_bins, dstsp_bins_batch, dstsp_bins_ref, dstsp_gmm, dstsp_gmm_batch,
                               dstsp_gmm_ref)


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


def test_default_estimator_switches_at_six_dims():
    """The reference (stsp_measure.jl decide_on_measure) bins N < 6 dims and uses the GMM from N = 6."""
    rng = np.random.default_rng(5)
    for n, est in ((5, dstsp_bins), (6, dstsp_gmm)):
        x = rng.standard_normal((400, n))
        y = x * 1.3 + 0.2
        assert dstsp(x, y) == est(x, y)


def test_gmm_uses_the_first_rows():
    """The GMM keeps the first max_points rows of each series (stsp_measure.jl X[1:T̃]), not an even subsample."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((400, 6))
    far = np.concatenate([x[:300], x[300:] + 50.0])  # agrees with x on the first 300 rows only
    assert dstsp_gmm(x, far, max_points=300) == pytest.approx(0.0, abs=1e-12)
    assert dstsp_gmm(x, far, max_points=400) == pytest.approx(np.log(4 / 3), abs=0.05)  # a quarter of q is far
    assert dstsp_gmm_ref(x, far, max_points=300) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n_dims", [1, 3, 5])
def test_binned_batch_equals_ref(n_dims):
    """Batched torch bins equal the NumPy twin: unequal generated spreads, points outside, a diverged rollout."""
    rng = np.random.default_rng(n_dims)
    refs = rng.standard_t(3, (2, 300, n_dims))  # (F, T, N)
    gens = rng.standard_normal((2, 4, 350, n_dims)) * np.array([0.3, 1.0, 3.0, 1.0])[None, :, None, None]
    gens[1, 3, 17, 0] = np.nan  # diverged
    gens[0, 3] = 99.0  # entirely outside the volume
    got = dstsp_bins_batch(torch.as_tensor(refs), torch.as_tensor(gens), n_bins=30).numpy()  # (F, R)
    want = np.array([[dstsp_bins_ref(refs[f], gens[f, r]) for r in range(4)] for f in range(2)])
    assert np.isinf(want[1, 3]) and np.isinf(want[0, 3])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_gmm_batch_equals_ref():
    rng = np.random.default_rng(8)
    refs = [rng.standard_normal((250, 7)) for _ in range(2)]
    gens = rng.standard_normal((2, 3, 260, 7)) * np.array([0.5, 1.0, 2.0])[None, :, None, None]
    gens[0, 2, 5, 3] = np.inf
    got = dstsp_gmm_batch(refs, torch.as_tensor(gens), [4, 5], scaling=0.3).numpy()
    want = np.array([[dstsp_gmm_ref(refs[f], gens[f, r], scaling=0.3, seed=[4, 5][f]) for r in range(3)]
                     for f in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert np.isinf(got[0, 2]) and got[1, 1] < got[1, 0] and got[1, 1] < got[1, 2]  # matching spread closest


def test_binned_batch_in_rollout_blocks(monkeypatch):
    """Rollouts binned in blocks (bounded memory) give what one block gives."""
    import dsr.analysis.dstsp as mod

    rng = np.random.default_rng(9)
    refs = torch.as_tensor(rng.standard_normal((2, 200, 2)))
    gens = torch.as_tensor(rng.standard_normal((2, 5, 210, 2)) * 1.2)
    whole = dstsp_bins_batch(refs, gens)
    monkeypatch.setattr(mod, "_BIN_ENTRIES", 2 * 210 * 2 * 2)  # two rollouts per block
    torch.testing.assert_close(dstsp_bins_batch(refs, gens), whole, rtol=0, atol=0)

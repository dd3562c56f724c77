"""Linear reference models: least-squares recovery, stationary statistics of generation, persistence."""
import numpy as np
import pytest
import torch

from dsr.models.linear import (LinearModel, LinearSpec, filtered_covariance, fit_gaussian, fit_lgssm, fit_var1)
from dsr.signal.filters import make_filter


def simulate_var(A, c, Q, T, seed):
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(Q)
    x = np.zeros((T, len(c)))
    for t in range(1, T):
        x[t] = A @ x[t - 1] + c + L @ rng.standard_normal(len(c))
    return x


A_TRUE = np.array([[0.6, 0.2, 0.0], [-0.3, 0.5, 0.1], [0.0, 0.25, 0.7]])
Q_TRUE = np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.8]])
C_TRUE = np.array([0.5, -1.0, 2.0])


def test_var1_recovers_dynamics_and_noise_covariance():
    xs = [simulate_var(A_TRUE, C_TRUE, Q_TRUE, 20000, seed) for seed in (0, 1)]
    m = fit_var1(xs, tr=2.0)
    assert m.n_subjects == 2 and m.spec.kind == "var1"
    for s in range(2):
        np.testing.assert_allclose(m.params["A"][s].numpy(), A_TRUE, atol=0.03)
        np.testing.assert_allclose(m.params["Q"][s].numpy(), Q_TRUE, atol=0.05)
        np.testing.assert_allclose(m.params["c"][s].numpy(), C_TRUE, atol=0.1)


def test_var1_generation_matches_stationary_moments():
    m = LinearModel(LinearSpec("var1", 3), {"A": torch.as_tensor(A_TRUE)[None], "c": torch.as_tensor(C_TRUE)[None],
                                            "Q": torch.as_tensor(Q_TRUE)[None]})
    mu, P = m.stationary()
    g = m.generate(400, seed=3, n_samples=50)[0].reshape(-1, 3)  # (20000, 3)
    np.testing.assert_allclose(g.mean(0), mu[0], atol=0.15)
    np.testing.assert_allclose(np.cov(g.T), P[0], rtol=0.1, atol=0.08)


def test_lgssm_generation_has_the_model_stationary_covariance():
    h = make_filter("spm", 1.0)  # (K,)
    N = 3
    A = 0.8 * np.eye(N) + 0.1 * np.eye(N, k=1)
    W = np.diag([0.5, 1.0, 0.3])
    R = np.array([0.2, 0.1, 0.3])
    params = {"A": torch.as_tensor(A)[None], "c": torch.zeros(1, N, dtype=torch.float64),
              "W": torch.as_tensor(W)[None], "R": torch.as_tensor(R)[None], "filter": torch.as_tensor(h)[None],
              "x_mean": torch.tensor([[10.0, 0.0, -5.0]], dtype=torch.float64),
              "x_std": torch.tensor([[2.0, 1.0, 3.0]], dtype=torch.float64)}
    m = LinearModel(LinearSpec("lgssm", N, tr=1.0), params)
    g = m.generate(300, seed=1, n_samples=100)[0]  # (100, 300, N)
    flat = g.reshape(-1, N)
    std = params["x_std"][0].numpy()
    expected = (filtered_covariance(A, W, h) + np.diag(R)) * np.outer(std, std)
    np.testing.assert_allclose(flat.mean(0), [10.0, 0.0, -5.0], atol=0.15 * std.max())
    np.testing.assert_allclose(np.cov(flat.T), expected, rtol=0.12, atol=0.05 * expected.max())


def test_lgssm_fit_reproduces_the_data_variance():
    h = make_filter("spm", 1.0)
    z = simulate_var(0.9 * np.eye(2), np.zeros(2), np.eye(2), 3000 + len(h), seed=4)
    x = np.stack([np.convolve(z[:, i], h)[len(h) - 1:len(z)] for i in range(2)], 1)
    x = x * 3.0 + 7.0 + 0.1 * np.random.default_rng(5).standard_normal(x.shape)
    m = fit_lgssm([x], h, tr=1.0)
    g = m.generate(len(x), seed=0, n_samples=20)[0].reshape(-1, 2)
    np.testing.assert_allclose(g.std(0), x.std(0), rtol=0.15)
    np.testing.assert_allclose(g.mean(0), x.mean(0), atol=0.3 * x.std(0).max())


def test_gaussian_generation_matches_covariance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 3)) @ np.linalg.cholesky(Q_TRUE).T + C_TRUE
    m = fit_gaussian([x])
    g = m.generate(2000, seed=0, n_samples=5)[0].reshape(-1, 3)
    np.testing.assert_allclose(np.cov(g.T), Q_TRUE, atol=0.06)


@pytest.mark.parametrize("kind", ["var1", "lgssm", "gaussian"])
def test_save_load_round_trip(tmp_path, kind):
    x = simulate_var(A_TRUE, C_TRUE, Q_TRUE, 400, seed=2)
    h = make_filter("spm", 2.0)
    m = {"var1": lambda: fit_var1([x, x[::-1]], tr=2.0), "gaussian": lambda: fit_gaussian([x], tr=2.0),
         "lgssm": lambda: fit_lgssm([x], h, tr=2.0)}[kind]()
    path = m.save(tmp_path / "m.safetensors")
    back = LinearModel.load(path)
    assert back.spec == m.spec
    assert set(back.params) == set(m.params)
    for k in m.params:
        assert torch.equal(back.params[k], m.params[k])
    np.testing.assert_array_equal(back.generate(50, seed=7), m.generate(50, seed=7))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="series 0"):
        fit_var1([np.zeros(5)])
    with pytest.raises(ValueError, match="kind"):
        LinearModel(LinearSpec("arma", 2), {})

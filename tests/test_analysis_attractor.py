"""Lyapunov spectra with known exponents, the attractor's kind, autocorrelation time, features of a model."""
import numpy as np
import torch

from dsr.analysis.attractor import KINDS, analyse_model, autocorrelation_time, classify_orbit
from dsr.analysis.lyapunov import kaplan_yorke_dimension, lyapunov_spectrum
from dsr.models import latent
from dsr.models.convssm import ConvSSM, ConvSSMSpec


def test_spectrum_of_a_linear_map_with_known_exponents():
    rng = np.random.default_rng(0)
    Q = rng.normal(size=(3, 3))  # non-normal: the eigenbasis is skewed
    lam = np.array([1.3, -0.7, 0.2])
    A = torch.as_tensor(Q @ np.diag(lam) @ np.linalg.inv(Q))
    exps = lyapunov_spectrum(lambda z: z @ A.T,
                             lambda z: A.expand(len(z), 3, 3), torch.ones(2, 3, dtype=torch.float64),
                             n_steps=400, transient=0)
    assert np.allclose(exps.numpy(), np.sort(np.log(np.abs(lam)))[::-1], atol=0.02)


def test_spectrum_sum_is_mean_log_det_for_a_plrnn():
    kind, M = "shPLRNN", 3
    p = latent.init_params(kind, 1, M, 6, torch.Generator().manual_seed(3), dtype=torch.float64)
    p["W1"], p["h1"] = p["W1"] * 3, torch.full((1, M), 0.3, dtype=torch.float64)
    step = lambda z: latent.step(kind, p, z[None])[0]  # noqa: E731
    jac = lambda z: latent.jacobian(kind, p, z[None])[0]  # noqa: E731
    z0 = torch.full((1, M), 0.1, dtype=torch.float64)
    n, transient = 3000, 100
    exps = lyapunov_spectrum(step, jac, z0, n_steps=n, transient=transient)[0].numpy()
    z, logdet = z0, []
    for t in range(transient + n):
        if t >= transient:
            logdet.append(np.log(abs(np.linalg.det(jac(z)[0].numpy()))))
        z = step(z)
    assert np.isclose(exps.sum(), np.mean(logdet), atol=1e-8)
    assert np.isfinite(kaplan_yorke_dimension(exps))


def _orbit(f, z0, n=2000, transient=200):
    z, out = np.asarray(z0, float), []
    for t in range(n + transient):
        z = f(z)
        if t >= transient:
            out.append(z)
    return np.array(out)


def test_classify_orbit():
    th = 2 * np.pi * (np.sqrt(5) - 1) / 2 / 7
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    R5 = np.array([[np.cos(2 * np.pi / 5), -np.sin(2 * np.pi / 5)], [np.sin(2 * np.pi / 5), np.cos(2 * np.pi / 5)]])
    assert classify_orbit(_orbit(lambda z: 0.5 * z + 1, [3.0]), np.log(0.5)) == ("fixed_point", 1)
    assert classify_orbit(_orbit(lambda z: R5 @ z, [1.0, 0.0]), 0.0) == ("cycle", 5)
    assert classify_orbit(_orbit(lambda z: R @ z, [1.0, 0.0]), 0.0)[0] == "quasi_periodic"
    tent = _orbit(lambda z: np.where(z < 0.5, 2 * z, 2 - 2 * z) * 0.999, [0.1234])
    assert classify_orbit(tent, np.log(2 * 0.999))[0] == "chaotic"
    assert classify_orbit(_orbit(lambda z: 2 * z, [1.0], n=60, transient=0), np.nan)[0] == "divergent"


def test_autocorrelation_time_of_ar1():
    rng = np.random.default_rng(0)
    phi, T = 0.9, 200_000
    x = np.zeros(T)
    e = rng.standard_normal(T)
    for t in range(1, T):
        x[t] = phi * x[t - 1] + e[t]
    assert abs(autocorrelation_time(x, dt=2.0)[0] - 2.0 * (-1 / np.log(phi))) <= 0.5  # interpolated crossing
    assert np.isnan(autocorrelation_time(np.ones((10, 1)))[0])


def test_analyse_model_features():
    spec = ConvSSMSpec("cshPLRNN", 3, 8, "identity", n_obs=3, tr=2.0)
    model = ConvSSM.initialise(spec, torch.tensor([1.0]), [0])
    res = analyse_model(model, np.zeros(3), n_steps=300, transient=50, n_restarts=30)
    f = res.features
    assert res.lyapunov.shape == (3,) and np.isclose(f["lyapunov_max"], res.lyapunov[0])
    assert KINDS[int(f["attractor_kind"])] == res.kind
    assert f["fp_count"] == len(res.fixed_points) and f["cycle2_count"] == len(res.cycles2)
    for c in res.fixed_points:
        assert c.residual < 1e-5

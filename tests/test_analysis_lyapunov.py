"""Lyapunov exponents of maps with known values."""
import math

import numpy as np
import pytest
import torch

from dsr.analysis.lyapunov import kaplan_yorke_dimension, lyapunov_spectrum, max_lyapunov

A, B = 1.4, 0.3


def henon_step(z):
    return torch.stack([1 - A * z[:, 0] ** 2 + z[:, 1], B * z[:, 0]], 1)


def henon_jac(z):
    j = torch.zeros(z.shape[0], 2, 2, dtype=z.dtype)
    j[:, 0, 0] = -2 * A * z[:, 0]
    j[:, 0, 1] = 1.0
    j[:, 1, 0] = B
    return j


def _henon_z0(n=8):
    return 0.1 + 0.01 * torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def test_diagonal_linear_map_exact():
    a = torch.tensor([2.0, -0.5, 0.9, 1.0], dtype=torch.float64)
    step = lambda z: z * a
    jac = lambda z: torch.diag(a).expand(z.shape[0], 4, 4)
    z0 = torch.ones(3, 4, dtype=torch.float64)
    lam = lyapunov_spectrum(step, jac, z0, n_steps=50, transient=0)
    expected = torch.sort(torch.log(a.abs()), descending=True).values
    assert torch.allclose(lam, expected.expand(3, 4), atol=1e-12)
    lam3 = lyapunov_spectrum(step, jac, z0, n_steps=50, transient=0, ortho_every=5)
    assert torch.allclose(lam3, expected.expand(3, 4), atol=1e-12)


def test_henon_spectrum():
    lam = lyapunov_spectrum(henon_step, henon_jac, _henon_z0(), n_steps=20000, transient=1000)
    assert lam.shape == (8, 2)
    assert lam[:, 0].mean().item() == pytest.approx(0.4192, abs=0.01)
    assert torch.allclose(lam.sum(1), torch.full((8,), math.log(B), dtype=torch.float64), atol=1e-10)
    ky = kaplan_yorke_dimension(lam.mean(0).numpy())
    assert ky == pytest.approx(1.26, abs=0.01)


def test_max_lyapunov_matches_spectrum():
    z0 = _henon_z0(4)
    l1 = max_lyapunov(henon_step, henon_jac, z0, n_steps=3000, transient=500)
    lam = lyapunov_spectrum(henon_step, henon_jac, z0, n_steps=3000, transient=500)
    assert l1.shape == (4,)
    assert torch.allclose(l1, lam[:, 0], atol=1e-10)


def test_logistic_map_ln2():
    step = lambda z: 4.0 * z * (1 - z)
    jac = lambda z: (4.0 - 8.0 * z)[:, :, None]
    z0 = torch.linspace(0.11, 0.89, 16, dtype=torch.float64)[:, None]
    lam = max_lyapunov(step, jac, z0, n_steps=20000, transient=100)
    assert lam.mean().item() == pytest.approx(math.log(2), abs=0.02)


def test_diverging_orbit_gives_nan():
    step = lambda z: z * 10.0
    jac = lambda z: torch.full((z.shape[0], 1, 1), 10.0, dtype=z.dtype)
    z0 = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    lam = lyapunov_spectrum(step, jac, z0, n_steps=400, transient=0)
    assert torch.isnan(lam[0, 0])
    assert lam[1, 0].item() == pytest.approx(math.log(10.0))


def test_kaplan_yorke_edge_cases():
    assert kaplan_yorke_dimension(np.array([-0.1, -1.0])) == 0.0
    assert kaplan_yorke_dimension(np.array([0.5, 0.0])) == 2.0
    assert kaplan_yorke_dimension(np.array([-1.0, 0.5, 0.0])) == pytest.approx(2.5)
    assert np.isnan(kaplan_yorke_dimension(np.array([np.nan, 1.0])))

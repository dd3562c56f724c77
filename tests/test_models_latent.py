"""Latent models: analytic Jacobians against autograd; shapes; constraints."""
import pytest
import torch

from dsr.config import LATENT_MODELS
from dsr.models import latent


@pytest.mark.parametrize("kind", LATENT_MODELS)
def test_jacobian_matches_autograd(kind):
    gen = torch.Generator().manual_seed(3)
    S, B, M, L = 2, 5, 4, 7
    p = latent.init_params(kind, S, M, L, gen, dtype=torch.float64)
    z = torch.randn(S, B, M, generator=gen, dtype=torch.float64) * 2
    J = latent.jacobian(kind, p, z)  # (S, B, M, M)
    for s in range(S):
        for b in range(B):
            def f(v):
                zz = z.clone()
                zz[s, b] = v
                return latent.step(kind, p, zz)[s, b]
            Ja = torch.autograd.functional.jacobian(f, z[s, b])
            torch.testing.assert_close(J[s, b], Ja, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", LATENT_MODELS)
def test_subjects_are_independent(kind):
    """Changing subject 1's parameters never changes subject 0's step."""
    gen = torch.Generator().manual_seed(0)
    p = latent.init_params(kind, 2, 3, 4, gen, n_inputs=2)
    z = torch.randn(2, 4, 3, generator=gen)
    s = torch.randn(2, 4, 2, generator=gen)
    out = latent.step(kind, p, z, s)
    q = {k: v.clone() for k, v in p.items()}
    for v in q.values():
        v[1] += 1.0
    torch.testing.assert_close(latent.step(kind, q, z, s)[0], out[0])


def test_plrnn_w_stays_offdiagonal():
    gen = torch.Generator().manual_seed(0)
    p = latent.init_params("PLRNN", 1, 4, 4, gen)
    p["W"] += 1.0
    latent.project_("PLRNN", p)
    assert torch.all(torch.diagonal(p["W"], dim1=-2, dim2=-1) == 0)


def test_clipped_model_is_bounded():
    """With |A| < 1 the clipped shallow PLRNN keeps orbits bounded even from far away."""
    gen = torch.Generator().manual_seed(1)
    p = latent.init_params("cshPLRNN", 1, 3, 20, gen, dtype=torch.float64)
    z = torch.full((1, 1, 3), 1e3, dtype=torch.float64)
    for _ in range(2000):
        z = latent.step("cshPLRNN", p, z)
    assert torch.isfinite(z).all() and z.abs().max() < 1e3


def test_init_A_is_normalised_diagonal():
    gen = torch.Generator().manual_seed(0)
    A = latent.init_params("cshPLRNN", 3, 6, 5, gen)["A"]
    assert A.shape == (3, 6) and torch.all(A > 0) and torch.all(A <= 1)


def test_shallow_init_bounds_follow_the_reference():
    """cshPLRNN: W1 ±1/√L, W2 ±1/√M, h2 ±1/√L (shallow_plrnn.jl uniform_init); shPLRNN: h2 = 0."""
    M, L = 4, 400  # L ≫ M: a ±1/√M bound on h2 would show
    p = latent.init_params("cshPLRNN", 2, M, L, torch.Generator().manual_seed(0), dtype=torch.float64)
    for name, bound in (("W1", 1 / L**0.5), ("W2", 1 / M**0.5), ("h2", 1 / L**0.5)):
        v = p[name].abs()
        assert v.max() <= bound and v.max() > 0.9 * bound, name  # fills the interval, never exceeds it
    sh = latent.init_params("shPLRNN", 1, M, L, torch.Generator().manual_seed(0))
    assert torch.all(sh["h2"] == 0)

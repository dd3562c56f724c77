"""Observation models: targets invert the decoder, NaN targets stay out of the gradients, fits run."""
import numpy as np
import pytest
import torch

from dsr import fit, load_config
from dsr.models import observation


@pytest.mark.parametrize("kind", ["affine", "regressor"])
def test_targets_invert_decode(kind):
    gen = torch.Generator().manual_seed(0)
    S, N, M, P = 2, 3, 5, 2
    p = observation.init_params(kind, S, N, M, P, gen, dtype=torch.float64)
    if kind == "regressor":
        p["J"] = torch.randn(S, N, P, generator=gen, dtype=torch.float64)
    z = torch.randn(S, 1, 4, M, generator=gen, dtype=torch.float64)
    r = torch.randn(S, 1, 4, P, generator=gen, dtype=torch.float64) if kind == "regressor" else None
    x = observation.decode(kind, p, z, N, r)  # (S, 1, 4, N)
    d = observation.targets(kind, p, x, r)  # (S, 1, 4, M): least-norm latent that decodes to x
    torch.testing.assert_close(observation.decode(kind, p, d, N, r), x)


def test_nan_targets_give_finite_gradients():
    gen = torch.Generator().manual_seed(1)
    p = {k: v.requires_grad_(True) for k, v in observation.init_params("regressor", 1, 2, 3, 1, gen).items()}
    x = torch.randn(1, 2, 5, 2, generator=gen)
    x[0, 0, 1] = float("nan")
    r = torch.randn(1, 2, 5, 1, generator=gen)
    d = observation.targets("regressor", p, x, r)
    assert torch.isnan(d[0, 0, 1]).all() and torch.isfinite(d[0, 1]).all()
    torch.nan_to_num(d).sum().backward()
    assert all(torch.isfinite(v.grad).all() for v in p.values())


def test_identity_init_state_estimates_unobserved_latents():
    gen = torch.Generator().manual_seed(0)
    p = observation.init_params("identity", 1, 2, 4, 0, gen)
    z = observation.init_state("identity", p, torch.ones(1, 3, 2), 4)
    assert z.shape == (1, 3, 4) and torch.all(z[..., :2] == 1)


def test_regressor_fit_uses_nuisance(oscillator):
    x, _ = oscillator
    rng = np.random.default_rng(0)
    r = rng.standard_normal((len(x), 2))
    cfg = load_config("quick", model={"latent_dim": 3, "hidden_dim": 8},
                      train={"epochs": 3, "batches_per_epoch": 5, "batch_size": 4},
                      eval={"n_rollouts": 2, "lyap_steps": 100, "lyap_transient": 10})
    res = fit(x + 0.3 * r[:, :1], 1.0, cfg, nuisance=r)
    assert res.model.spec.observation == "regressor" and res.status == "ok"
    assert res.model.params["obs.J"].shape == (1, 2, 2)
    assert np.isfinite(res.metrics["pe_test"]) and np.isfinite(res.metrics["dstsp"])


def test_external_inputs_enter_the_model(oscillator):
    x, _ = oscillator
    s = np.zeros((len(x), 1))
    s[::40] = 1.0  # pulses
    cfg = load_config("quick", model={"latent_dim": 2, "hidden_dim": 8},
                      train={"epochs": 2, "batches_per_epoch": 4, "batch_size": 4},
                      eval={"n_rollouts": 2, "lyap_steps": 100, "lyap_transient": 10})
    res = fit(x, 1.0, cfg, inputs=s)
    C = res.model.params["latent.C"]
    assert C.shape == (1, 2, 1) and res.status == "ok"
    assert res.model.spec.n_inputs == 1 and np.isfinite(res.metrics["pe_test"])

"""The forced rollout: hand-written backward against autograd of the plain formula; forcing rules."""
import pytest
import torch

from dsr.models import latent
from dsr.ops.gtf import forcing_weights, gtf_rollout, gtf_rollout_ref
from dsr.ops.gtf_shallow import gtf_rollout_shallow


def _plain_formula(kind, p, z0, d, alpha, inputs):
    """GTF written out directly from the formula, without any helper."""
    z_t = z0
    out = []
    for t in range(1, d.shape[2]):
        z = latent.step(kind, p, z_t, None if inputs is None else inputs[:, :, t - 1])
        out.append(z)
        target = d[:, :, t]
        Mf = target.shape[-1]
        forced = z[..., :Mf] + alpha[:, None, None] * (target - z[..., :Mf])
        forced = torch.where(torch.isfinite(target), forced, z[..., :Mf])
        z_t = torch.cat([forced, z[..., Mf:]], -1)
    return torch.stack(out, 2)


@pytest.mark.parametrize("kind", ["cshPLRNN", "shPLRNN"])
@pytest.mark.parametrize("n_inputs", [0, 2])
@pytest.mark.parametrize("T1", [2, 9])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_shallow_backward_matches_autograd(kind, n_inputs, T1, layout):
    gen = torch.Generator().manual_seed(T1 + n_inputs)
    S, B, M, L, Mf = 3, 4, 5, 6, 3
    p = {k: v.requires_grad_(True) for k, v in
         latent.init_params(kind, S, M, L, gen, n_inputs=n_inputs, dtype=torch.float64).items()}
    d = torch.randn(S, B, T1, Mf, generator=gen, dtype=torch.float64)
    d[0, 1, -1] = float("nan")
    d[2, 0, :, 1] = float("nan")
    d.requires_grad_(True)
    alpha = torch.tensor([0.1, 0.5, 0.0], dtype=torch.float64)
    z0 = torch.randn(S, B, M, generator=gen, dtype=torch.float64, requires_grad=True)
    s = torch.randn(S, B, T1, n_inputs, generator=gen, dtype=torch.float64) if n_inputs else None
    ref = _plain_formula(kind, p, z0, d, alpha, s)
    a, ad = forcing_weights(d, alpha, M, "weak")
    fast = gtf_rollout_shallow(p, z0, a, ad, s, clipped=kind == "cshPLRNN", layout=layout)
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)
    w = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    inputs = [z0, d] + list(p.values())
    g_ref = torch.autograd.grad((ref * w).sum(), inputs, allow_unused=True)
    g_fast = torch.autograd.grad((fast * w).sum(), inputs, allow_unused=True)
    for name, x, gr, gf in zip(["z0", "d"] + list(p), inputs, g_ref, g_fast):
        gr = torch.zeros_like(x) if gr is None else torch.nan_to_num(gr)
        gf = torch.zeros_like(x) if gf is None else torch.nan_to_num(gf)
        torch.testing.assert_close(gf, gr, atol=1e-11, rtol=0, msg=name)


@pytest.mark.parametrize("kind", ["PLRNN", "mcPLRNN", "clipped_dendPLRNN"])
def test_reference_rollout_matches_formula(kind):
    gen = torch.Generator().manual_seed(0)
    p = latent.init_params(kind, 2, 3, 4, gen, dtype=torch.float64)
    d = torch.randn(2, 3, 6, 3, generator=gen, dtype=torch.float64)
    alpha = torch.tensor([0.2, 0.7], dtype=torch.float64)
    z0 = torch.randn(2, 3, 3, generator=gen, dtype=torch.float64)
    a, ad = forcing_weights(d, alpha, 3, "weak")
    out = gtf_rollout(lambda z, s: latent.step(kind, p, z, s), z0, a, ad, None, kind, p)
    torch.testing.assert_close(out, _plain_formula(kind, p, z0, d, alpha, None))


def test_sparse_forcing_replaces_every_tau_steps_and_skips_nan():
    d = torch.arange(12, dtype=torch.float64).reshape(1, 1, 12, 1)
    d[0, 0, 8] = float("nan")
    a, ad = forcing_weights(d, torch.tensor([0.3]), 2, "sparse", interval=4)
    assert a[0, 0, :, 0].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert torch.all(a[..., 1] == 0)  # unforced latent unit
    # identity step: the carried state equals the target right after a forcing step
    out = gtf_rollout_ref(lambda z, s: z, torch.zeros(1, 1, 2, dtype=torch.float64), a, ad)
    assert out[0, 0, 4, 0] == 4.0 and out[0, 0, 8, 0] == 4.0


def test_rollout_layout_is_checked():
    p = latent.init_params("cshPLRNN", 1, 2, 3, torch.Generator().manual_seed(0))
    a = torch.zeros(1, 1, 3, 2)
    with pytest.raises(ValueError, match="layout"):
        gtf_rollout_shallow(p, torch.zeros(1, 1, 2), a, a, layout="diagonal")


def test_no_forcing_is_free_running():
    gen = torch.Generator().manual_seed(0)
    p = latent.init_params("cshPLRNN", 1, 3, 5, gen, dtype=torch.float64)
    d = torch.randn(1, 2, 7, 3, generator=gen, dtype=torch.float64)
    a, ad = forcing_weights(d, torch.tensor([0.5]), 3, "none")
    z0 = d[:, :, 0]
    out = gtf_rollout_shallow(p, z0, a, ad)
    z = z0
    for t in range(6):
        z = latent.step("cshPLRNN", p, z)
        torch.testing.assert_close(out[:, :, t], z)


@pytest.mark.parametrize("kind", ["cshPLRNN", "shPLRNN"])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_forced_outputs_match_formula_and_autograd(kind, layout):
    """loss_states "forced": the twin returns z̃_t = z_t (1 − a_t) + ad_t for the fits flagged 1, with
    its hand-written backward equal to autograd of the plain formula (z0, targets and every parameter)."""
    gen = torch.Generator().manual_seed(5)
    S, B, T1, M, L = 3, 4, 8, 3, 6
    p = {k: v.requires_grad_(True) for k, v in
         latent.init_params(kind, S, M, L, gen, dtype=torch.float64).items()}
    d = torch.randn(S, B, T1, M, generator=gen, dtype=torch.float64)
    d[1, 2, 3] = float("nan")
    d.requires_grad_(True)
    alpha = torch.tensor([0.1, 0.3, 0.2], dtype=torch.float64)
    z0 = torch.randn(S, B, M, generator=gen, dtype=torch.float64, requires_grad=True)
    forced = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    a, ad = forcing_weights(d, alpha, M, "weak")
    free = _plain_formula(kind, p, z0, d, alpha, None)  # (S, B, T̃, M)
    dt = torch.nan_to_num(d[:, :, 1:])
    fin = torch.isfinite(d[:, :, 1:])
    want_forced = torch.where(fin, free + alpha[:, None, None, None] * (dt - free), free)
    want = torch.where(forced[:, None, None, None] > 0, want_forced, free)
    fast = gtf_rollout_shallow(p, z0, a, ad, clipped=kind == "cshPLRNN", forced=forced, layout=layout)
    ref = gtf_rollout_ref(lambda z, s: latent.step(kind, p, z, s), z0, a, ad, forced=forced)
    torch.testing.assert_close(fast, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(ref, want, atol=1e-12, rtol=0)
    w = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    inputs = [z0, d] + list(p.values())
    g_want = torch.autograd.grad((want * w).sum(), inputs, allow_unused=True)
    g_fast = torch.autograd.grad((fast * w).sum(), inputs, allow_unused=True)
    for name, x, gr, gf in zip(["z0", "d"] + list(p), inputs, g_want, g_fast):
        gr = torch.zeros_like(x) if gr is None else torch.nan_to_num(gr)
        gf = torch.zeros_like(x) if gf is None else torch.nan_to_num(gf)
        torch.testing.assert_close(gf, gr, atol=1e-11, rtol=0, msg=name)


@pytest.mark.parametrize("kind", ["cshPLRNN", "shPLRNN"])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_reference_loss_states_forced_values_free_gradient(kind, layout):
    """loss_states "reference" (forced = 1, grad_mix = 0): the values are the forced states z̃_t, the
    gradient is the one of the free states evaluated at those values, as the reference code's Zygote
    gradient (its in-place force is invisible to the loss): dL/dθ = dL_free/dθ with the output's
    gradient set to the one at z̃. Twin and autograd reference agree; mixed stacks keep each fit's mode."""
    gen = torch.Generator().manual_seed(7)
    S, B, T1, M, L = 3, 4, 8, 3, 6
    p = {k: v.requires_grad_(True) for k, v in
         latent.init_params(kind, S, M, L, gen, dtype=torch.float64).items()}
    d = torch.randn(S, B, T1, M, generator=gen, dtype=torch.float64)
    d[0, 1, 4] = float("nan")
    alpha = torch.tensor([0.1, 0.3, 0.2], dtype=torch.float64)
    z0 = torch.randn(S, B, M, generator=gen, dtype=torch.float64, requires_grad=True)
    a, ad = forcing_weights(d, alpha, M, "weak")
    forced = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    grad_mix = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)  # fit 0 reference, 1 forced, 2 free
    clipped = kind == "cshPLRNN"
    step = lambda z, s: latent.step(kind, p, z, s)  # noqa: E731
    fast = gtf_rollout_shallow(p, z0, a, ad, clipped=clipped, forced=forced, grad_mix=grad_mix, layout=layout)
    ref = gtf_rollout_ref(step, z0, a, ad, forced=forced, grad_mix=grad_mix)
    exact = gtf_rollout_shallow(p, z0, a, ad, clipped=clipped, forced=forced, layout=layout)
    free = gtf_rollout_shallow(p, z0, a, ad, clipped=clipped, layout=layout)
    torch.testing.assert_close(fast, exact, atol=1e-12, rtol=0)  # values: forced where forced = 1
    torch.testing.assert_close(ref, exact, atol=1e-12, rtol=0)
    params = list(p.values())
    x = torch.randn(exact.shape, generator=gen, dtype=torch.float64)  # "data"
    g_out = 2 * (exact - x).detach()  # dL/d(output) of L = Σ (out − x)², at the forced values
    g_fast = torch.autograd.grad(((fast - x) ** 2).sum(), [z0] + params)
    g_ref = torch.autograd.grad(((ref - x) ** 2).sum(), [z0] + params)
    # fit 0: the free rollout's gradient with the residual taken at the forced values
    g_free = torch.autograd.grad((free * g_out).sum(), [z0] + params)
    g_exact = torch.autograd.grad(((exact - x) ** 2).sum(), [z0] + params)
    for name, gf, gr, gw, ge in zip(["z0"] + list(p), g_fast, g_ref, g_free, g_exact):
        torch.testing.assert_close(gf, gr, atol=1e-11, rtol=0, msg=name)
        torch.testing.assert_close(gf[0], gw[0], atol=1e-11, rtol=0, msg=name)  # reference fit
        torch.testing.assert_close(gf[1:], ge[1:], atol=1e-11, rtol=0, msg=name)  # exact forced, free
    assert not torch.allclose(g_fast[2][0], g_exact[2][0])  # the reference gradient is another one


@pytest.mark.parametrize("kind", ["cshPLRNN", "shPLRNN"])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_shallow_backward_without_target_gradient(kind, layout):
    """Targets that need no gradient (training data) skip dL/d ad; the other gradients stay those of
    autograd through the plain formula, with h2 of both signs and exactly zero."""
    gen = torch.Generator().manual_seed(7)
    S, B, T1, M, L = 2, 3, 8, 4, 7
    p = latent.init_params(kind, S, M, L, gen, dtype=torch.float64)
    p["h2"][0, :3] = torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64)
    p = {k: v.requires_grad_(True) for k, v in p.items()}
    d = torch.randn(S, B, T1, M, generator=gen, dtype=torch.float64)
    alpha = torch.tensor([0.1, 0.3], dtype=torch.float64)
    z0 = torch.randn(S, B, M, generator=gen, dtype=torch.float64, requires_grad=True)
    ref = _plain_formula(kind, p, z0, d, alpha, None)
    a, ad = forcing_weights(d, alpha, M, "weak")
    fast = gtf_rollout_shallow(p, z0, a, ad, clipped=kind == "cshPLRNN", layout=layout)
    assert not ad.requires_grad
    w = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    inputs = [z0] + list(p.values())
    for name, gr, gf in zip(["z0"] + list(p), torch.autograd.grad((ref * w).sum(), inputs),
                            torch.autograd.grad((fast * w).sum(), inputs)):
        torch.testing.assert_close(gf, gr, atol=1e-11, rtol=0, msg=name)


@pytest.mark.parametrize("kind", ["cshPLRNN", "shPLRNN"])
def test_weak_rollout_from_column_weights_equals_generic_path(kind):
    """On a CPU the weak-forcing rollout makes its forcing weights as columns (weak_columns); they equal
    forcing_weights' a and ad, and the rollout and its gradients equal the generic path's."""
    from dsr.ops.gtf import gtf_rollout, gtf_rollout_weak
    from dsr.ops.gtf_shallow_columns import to_columns, weak_columns

    gen = torch.Generator().manual_seed(3)
    S, B, T1, M, Mf, L = 3, 4, 7, 5, 3, 6
    p = {k: v.requires_grad_(True) for k, v in latent.init_params(kind, S, M, L, gen, dtype=torch.float64).items()}
    d = torch.randn(S, B, T1, Mf, generator=gen, dtype=torch.float64)
    d[0, 1, 2] = float("nan")
    d[2, :, 4, 1] = float("nan")
    alpha = torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64)
    z0 = torch.randn(S, B, M, generator=gen, dtype=torch.float64, requires_grad=True)
    a, ad = forcing_weights(d, alpha, M, "weak")
    keep, adc = weak_columns(d, alpha, M)
    torch.testing.assert_close(keep, to_columns(1 - a), atol=0, rtol=0)
    torch.testing.assert_close(adc, to_columns(ad), atol=0, rtol=0)
    fast = gtf_rollout_weak(None, z0, d, alpha, M, model_kind=kind, params=p)
    ref = gtf_rollout(None, z0, a, ad, model_kind=kind, params=p)
    torch.testing.assert_close(fast, ref, atol=1e-13, rtol=0)
    w = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    inputs = [z0] + list(p.values())
    for name, gf, gr in zip(["z0"] + list(p), torch.autograd.grad((fast * w).sum(), inputs),
                            torch.autograd.grad((ref * w).sum(), inputs)):
        torch.testing.assert_close(gf, gr, atol=1e-12, rtol=0, msg=name)

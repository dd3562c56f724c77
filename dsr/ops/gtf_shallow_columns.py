"""The CPU form of :mod:`dsr.ops.gtf_shallow`'s forced rollout: states as columns.

Both loops keep the states as columns, (S, M, B) and (S, L, B) per step, with the weights on the left of
every batched product (W2 z̃, W1 φ, W1ᵀ g, W2ᵀ gφ); h2 is a last column of W2 against a row of ones under
the states. The backward recomputes each step's pre-activations and adds that step's weight gradients
inside its loop (the form of the GPU's fused backward), so nothing of size T̃·L is stored. On a 2-core
CPU, one thread, S = 30, B = 16, T̃ = 60, L = 50, forward and backward take 8.4 against 14.0 ms at M = 8
and 14.2 against 15.7 ms at M = 16 for session 10's row form (benchmarks/RESULTS.md, Session 11); on a GPU,
where each product is a launch, the row form's fewer launches win (it is 1.1–1.3× faster on an H200), so
CUDA tensors keep it.
Recurrence and gradients as in :mod:`dsr.ops.gtf_shallow`.
"""
from __future__ import annotations

import torch

_masked = torch.ops.aten.threshold_backward  # (grad, x, 0) → grad ⊙ 1[x > 0], one pass


def to_columns(x):
    """(S, B, T, X) → (T, S, X, B), contiguous: step t's slice holds one column block per fit."""
    return x.permute(2, 0, 3, 1).contiguous()


def _expand(v, B):
    """(S, X) → (S, X, B), contiguous (elementwise products without broadcasting)."""
    return v.unsqueeze(2).expand(*v.shape, B).contiguous()


class ShallowGTFColumns(torch.autograd.Function):
    """``apply(z0, keep, adc, A, W1, W2, h1, h2, C, sc, clipped, forced, grad_mix)`` → (T̃, S, M, B): the
    arguments of :class:`dsr.ops.gtf_shallow._ShallowGTF` with keep = 1 − a, ad and the inputs s as columns
    (:func:`rollout_columns` makes them from a, ad; :func:`weak_columns` from targets and α directly)."""

    @staticmethod
    def forward(ctx, z0, keep, adc, A, W1, W2, h1, h2, C, sc, clipped, forced, grad_mix):
        T1, S, M, B = keep.shape
        T, L = T1 - 1, W1.shape[2]
        f = None if forced is None else forced.to(z0.dtype).view(S, 1, 1)  # (S, 1, 1)
        fg = f if grad_mix is None or f is None else grad_mix.to(z0.dtype).view(S, 1, 1)  # backward's f
        W2b = torch.cat([W2, h2.unsqueeze(2)], 2)  # [W2 h2] (S, L, M+1)
        Ae, h1e, h2e = _expand(A, B), _expand(h1, B), _expand(h2, B)  # (S, M, B), (S, M, B), (S, L, B)
        zs = torch.empty(T1, S, M + 1, B, dtype=z0.dtype, device=z0.device)  # [z̃_t; 1], t = 0 … T̃
        zs[:, :, M] = 1
        zs[0, :, :M] = z0.transpose(1, 2)
        out = torch.empty(T, S, M, B, dtype=z0.dtype, device=z0.device)  # z_1 … z_T̃ (or forced)
        q = torch.empty(S, L, B, dtype=z0.dtype, device=z0.device)  # p_t + h2
        for t in range(1, T1):
            zp = zs[t - 1]  # (S, M+1, B)
            torch.bmm(W2b, zp, out=q)
            act = torch.relu(q).sub_(torch.sub(q, h2e).relu_()) if clipped else q.relu_()  # φ_t (S, L, B)
            z = torch.baddbmm(torch.addcmul(h1e, Ae, zp[:, :M]), W1, act,
                              out=out[t - 1] if f is None else None)  # (S, M, B)
            if sc is not None:
                z = torch.baddbmm(z, C, sc[t - 1], out=z)
            torch.addcmul(adc[t], z, keep[t], out=zs[t, :, :M])
            if f is not None:  # the loss sees z + f (z̃ − z)
                torch.addcmul(z, f, zs[t, :, :M] - z, out=out[t - 1])
        ctx.save_for_backward(zs, keep, A, W1, W2b, h2, C, sc, fg)
        ctx.clipped = clipped
        return out

    @staticmethod
    def backward(ctx, goutc):
        zs, keep, A, W1, W2b, h2, C, sc, f = ctx.saved_tensors
        T1, S, M1, B = zs.shape
        M, T, L = M1 - 1, T1 - 1, W1.shape[2]
        clipped = ctx.clipped
        goutc = goutc.contiguous()  # (T̃, S, M, B)
        W1T = W1.transpose(1, 2).contiguous()  # (S, L, M)
        W2T = W2b[:, :, :M].transpose(1, 2).contiguous()  # (S, M, L)
        Ae, h2e = _expand(A, B), _expand(h2, B)
        gz = torch.empty_like(goutc)  # dL/dz_t, (T̃, S, M, B)
        gad = torch.zeros_like(keep) if ctx.needs_input_grad[2] else None  # dL/d ad_t, columns
        gW1 = torch.zeros_like(W1)  # Σ_t g φᵀ, (S, M, L)
        gW2bT = torch.zeros(S, M1, L, dtype=zs.dtype, device=zs.device)  # Σ_t [z̃; 1] gpreᵀ
        gh2 = torch.zeros(S, L, B, dtype=zs.dtype, device=zs.device) if clipped else None  # Σ_t gφ ⊙ 1[p+h2 > 0]
        q = torch.empty(S, L, B, dtype=zs.dtype, device=zs.device)
        g_carry = torch.zeros(S, M, B, dtype=zs.dtype, device=zs.device)  # dL/dz̃_t from the future
        for t in range(T, 0, -1):
            go = goutc[t - 1]  # (S, M, B)
            if f is not None:  # the loss saw z_t + f (z̃_t − z_t)
                g_carry = torch.addcmul(g_carry, f, go)  # dL/dz̃_t
                go = go - f * go
            if gad is not None:
                gad[t] = g_carry
            g = torch.addcmul(go, g_carry, keep[t], out=gz[t - 1])  # dL/dz_t, (S, M, B)
            zp = zs[t - 1]  # [z̃_{t−1}; 1]
            torch.bmm(W2b, zp, out=q)  # this step's p + h2 again, (S, L, B)
            ga = torch.bmm(W1T, g)  # dL/dφ_t, (S, L, B)
            if clipped:
                p = torch.sub(q, h2e)
                gon = _masked(ga, q, 0)  # gφ ⊙ 1[p + h2 > 0]
                gh2.add_(gon)
                gpre = gon.sub_(_masked(ga, p, 0))  # dL/dp_t
                act = q.relu_().sub_(p.relu_())  # φ_t
            else:
                gpre = _masked(ga, q, 0)
                act = q.relu_()
            gW1.baddbmm_(g, act.transpose(1, 2))
            gW2bT.baddbmm_(zp, gpre.transpose(1, 2))
            g_carry = torch.baddbmm(g * Ae, W2T, gpre)  # (S, M, B)
        gW2 = gW2bT[:, :M].transpose(1, 2)  # (S, L, M)
        gh2 = gh2.sum(2) if clipped else gW2bT[:, M]  # (S, L)
        gA = (gz * zs[:T, :, :M]).sum((0, 3))  # (S, M)
        gh1 = gz.sum((0, 3))
        gC = None if C is None else torch.einsum("tsmb,tspb->smp", gz, sc)  # (S, M, P)
        return (g_carry.transpose(1, 2), None, gad, gA, gW1, gW2.contiguous(), gh1, gh2.contiguous(), gC,
                None, None, None, None)


def weak_columns(d: torch.Tensor, alpha: torch.Tensor, M: int) -> tuple[torch.Tensor, torch.Tensor]:
    """keep = 1 − a and ad of weak forcing (:func:`dsr.ops.gtf.forcing_weights`) made directly as columns.

    d (S, B, T̃+1, Mf ≤ M) targets, NaN where not forced; alpha (S,). Returns keep, adc (T̃+1, S, M, B).
    """
    S, B, T1, Mf = d.shape
    dc = d.permute(2, 0, 3, 1).contiguous()  # (T̃+1, S, Mf, B)
    finite = torch.isfinite(dc)
    a = finite * alpha.view(1, S, 1, 1)  # (T̃+1, S, Mf, B)
    keep = torch.ones(T1, S, M, B, dtype=d.dtype, device=d.device)
    adc = torch.zeros(T1, S, M, B, dtype=d.dtype, device=d.device)
    torch.sub(keep[:, :, :Mf], a, out=keep[:, :, :Mf])
    torch.mul(torch.nan_to_num(dc, nan=0.0), a, out=adc[:, :, :Mf])
    return keep, adc


def rollout_columns(params, z0, keep, adc, sc=None, clipped=True, forced=None, grad_mix=None) -> torch.Tensor:
    """Forced rollout (S, B, T̃, M) from column inputs keep, adc (T̃+1, S, M, B) and sc (T̃, S, P, B) or None."""
    C = params.get("C") if sc is not None else None
    out = ShallowGTFColumns.apply(z0, keep, adc, params["A"], params["W1"], params["W2"], params["h1"],
                                  params["h2"], C, sc, clipped, forced, grad_mix)  # (T̃, S, M, B)
    return out.permute(1, 3, 0, 2)

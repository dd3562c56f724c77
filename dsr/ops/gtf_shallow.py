"""Forced rollout of the (clipped) shallow PLRNN with a hand-written backward pass.

Same function as :func:`dsr.ops.gtf.gtf_rollout_ref` for ``shPLRNN`` /
``cshPLRNN``, but the backward pass runs its own loop over time instead of
autograd's graph: about half the small-tensor operations per step, which is
what bounds a small PLRNN. Two forms of the same arithmetic:

* rows (this module, for GPU tensors): states (S, B, M) per step; the backward's loop does only the chain
  products and forms the weight gradients once after it, as (S, B·T̃, L) tensors (the form of the GPU
  kernels' default split backward, :mod:`dsr.ops.gtf_triton_split`); fewest launches.
* columns (:mod:`dsr.ops.gtf_shallow_columns`, for CPU tensors): states (S, M, B), weights on the left
  of every product, weight gradients added step by step; the faster form where each small product is
  arithmetic, not a launch.

Forward, t = 1 … T̃ (z̃_0 = z0):
    p_t  = W2 z̃_{t−1}                                    (S, B, L)
    φ_t  = ReLU(p_t + h2) − ReLU(p_t)      (cshPLRNN; ReLU(p_t + h2) for shPLRNN)
    z_t  = A ⊙ z̃_{t−1} + W1 φ_t + h1 (+ C s_{t−1})
    z̃_t  = z_t ⊙ (1 − a_t) + ad_t
    out_t = z_t, or z̃_t for fits with ``forced`` = 1 (more generally z_t + f ⊙ (z̃_t − z_t))

``forced`` (S,) per fit, 0 or 1: which states the loss decodes. 0 decodes the free states z_t; 1
decodes the forced states z̃_t = (1−α) z_t + α d_t, as the reference code does (its ``force``
overwrites the state in place, humml-lab/GTF-ConvSSM src/tf_training/forcing.jl, called from
tfrecur.jl ``WeakTFRecur``). Backward with f = ``forced``: g̃_t = dL/dz̃_t = f ⊙ gout_t + (future);
dL/d ad_t = g̃_t; dL/dz_t = (1 − f) ⊙ gout_t + g̃_t ⊙ (1 − a_t). This is the exact gradient of the
forced output; the reference's Zygote gradient, blind to the in-place update, passes gout_t to z_t
unscaled (a difference of the factor 1 − α on the loss term).
"""
from __future__ import annotations

import torch

from dsr.ops.gtf_shallow_columns import rollout_columns, to_columns


def _activation(pre, h2, clipped):
    act = torch.relu(pre + h2)
    return act - torch.relu(pre) if clipped else act


def _weight_terms(pre, h2, clipped):
    """φ(p), dφ/dp and 1[p + h2 > 0] of pre-activations ``pre`` (..., L) with ``h2`` broadcast to them."""
    q = pre + h2
    on = (q > 0).to(pre.dtype)
    act = torch.relu(q)
    if not clipped:
        return act, on, on
    return act - torch.relu(pre), on - (pre > 0).to(pre.dtype), on


class _ShallowGTF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z0, a, ad, A, W1, W2, h1, h2, C, s, clipped, forced, grad_mix):
        S, B, T1, M = a.shape
        f = None if forced is None else forced.to(z0.dtype).view(S, 1, 1)  # (S, 1, 1)
        fg = f if grad_mix is None or f is None else grad_mix.to(z0.dtype).view(S, 1, 1)  # backward's f
        W1T, W2T = W1.transpose(1, 2), W2.transpose(1, 2)  # (S, L, M), (S, M, L)
        h2b, Ab, h1b = h2.unsqueeze(1), A.unsqueeze(1), h1.unsqueeze(1)
        keep = 1 - a  # (S, B, T̃+1, M)
        zprev = torch.empty(S, B, T1 - 1, M, dtype=z0.dtype, device=z0.device)  # z̃_0 … z̃_{T̃-1}
        out = torch.empty_like(zprev)  # z_1 … z_T̃
        zt = z0
        for t in range(1, T1):
            zprev[:, :, t - 1] = zt
            act = _activation(torch.bmm(zt, W2T), h2b, clipped)  # (S, B, L)
            z = torch.baddbmm(torch.addcmul(h1b, Ab, zt), act, W1T)  # (S, B, M)
            if C is not None:
                z = torch.baddbmm(z, s[:, :, t - 1], C.transpose(1, 2))
            zt = torch.addcmul(ad[:, :, t], z, keep[:, :, t])  # (S, B, M)
            out[:, :, t - 1] = z if f is None else torch.addcmul(z, f, zt - z)
        ctx.save_for_backward(zprev, keep, A, W1, W2, h2, C, s, fg)
        ctx.clipped = clipped
        return out

    @staticmethod
    def backward(ctx, gout):
        zprev, keep, A, W1, W2, h2, C, s, f = ctx.saved_tensors
        S, B, T, M = zprev.shape
        W2T, h2b, Ab = W2.transpose(1, 2), h2.unsqueeze(1), A.unsqueeze(1)  # (S, M, L), (S, 1, L), (S, 1, M)
        gz = torch.empty_like(gout)  # dL/dz_t, total
        gad = torch.zeros_like(keep)  # dL/d ad_t
        zflat = zprev.reshape(S, B * T, M)  # φ, slopes and 1[p + h2 > 0] of all steps at once, (S, B·T̃, M)
        act, slope, on = _weight_terms(torch.bmm(zflat, W2T), h2b, ctx.clipped)  # (S, B·T̃, L)
        slope_all = slope.reshape(S, B, T, -1)  # (S, B, T̃, L)
        gact_all = torch.empty_like(slope_all)  # dL/dφ_t, kept for the weight gradients after the loop
        g_carry = torch.zeros_like(zprev[:, :, 0])  # dL/dz̃_t from the future
        for t in range(T, 0, -1):
            go = gout[:, :, t - 1]  # (S, B, M)
            if f is not None:  # the loss saw z_t + f (z̃_t − z_t)
                g_carry = torch.addcmul(g_carry, f, go)  # dL/dz̃_t, (S, B, M)
                go = go - f * go
            gad[:, :, t] = g_carry
            g = torch.addcmul(go, g_carry, keep[:, :, t])  # (S, B, M)
            gz[:, :, t - 1] = g
            ga = torch.bmm(g, W1)  # dL/dφ_t (S, B, L)
            gact_all[:, :, t - 1] = ga
            gpre = ga * slope_all[:, :, t - 1]
            g_carry = torch.baddbmm(g * Ab, gpre, W2)  # (S, B, M)
        gact = gact_all.reshape(S, B * T, -1)  # weight gradients over all steps at once, (S, B·T̃, L)
        gW1 = torch.bmm(gz.reshape(S, B * T, M).transpose(1, 2), act)  # (S, M, L)
        gW2 = torch.bmm((gact * slope).transpose(1, 2), zflat)  # (S, L, M)
        gh2 = (gact * on).sum(1)
        gA = (gz * zprev).sum((1, 2))
        gh1 = gz.sum((1, 2))
        gC = None
        if C is not None:
            gC = torch.bmm(gz.reshape(S, B * T, M).transpose(1, 2), s[:, :, :T].reshape(S, B * T, -1))  # (S, M, P)
        return g_carry, None, gad, gA, gW1, gW2, gh1, gh2, gC, None, None, None, None


def gtf_rollout_shallow(params: dict[str, torch.Tensor], z0: torch.Tensor, a: torch.Tensor, ad: torch.Tensor,
                        inputs: torch.Tensor | None = None, clipped: bool = True,
                        forced: torch.Tensor | None = None, grad_mix: torch.Tensor | None = None,
                        layout: str = "auto") -> torch.Tensor:
    """Forced rollout (S, B, T̃, M) of a (clipped) shallow PLRNN; see :func:`dsr.ops.gtf.gtf_rollout_ref`.

    ``forced`` (S,) of 0/1 or None (all 0): per fit, return the forced states z̃_t instead of z_t.
    ``grad_mix`` (S,) of 0/1 or None (= ``forced``): per fit, differentiate them exactly (1) or pass
    their gradient to z_t as for a free output (0, the reference code's gradient).
    ``layout``: "rows", "columns", or "auto" (columns on a CPU, rows elsewhere); the same numbers up to
    the order of float sums.
    """
    if layout not in ("auto", "rows", "columns"):
        raise ValueError(f"layout must be auto, rows or columns, not {layout!r}")
    if layout == "columns" or (layout == "auto" and z0.device.type == "cpu"):
        sc = None if inputs is None else to_columns(inputs[:, :, :a.shape[2] - 1])  # (T̃, S, P, B)
        return rollout_columns(params, z0, to_columns(1 - a), to_columns(ad), sc, clipped, forced, grad_mix)
    C = params.get("C") if inputs is not None else None
    return _ShallowGTF.apply(z0, a, ad, params["A"], params["W1"], params["W2"], params["h1"], params["h2"],
                             C, inputs, clipped, forced, grad_mix)

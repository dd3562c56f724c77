"""Fused Triton kernels for the decoder loss: causal convolution of the latents with each fit's filter and
the per-fit mean squared error against the observations, forward and backward one launch each.

Computes what :func:`dsr.ops.conv_loss.conv_mse_ref` computes (its twin, same signature). With
To = T − K + 1 outputs, for fit s, sequence b, output time j < To and channel n < N ≤ M:

    y[j, n]  = Σ_k h[s, k] z[j + K − 1 − k, n]            (the "valid" convolution)
    r[j, n]  = y[j, n] − x[j, n]
    loss[s]  = Σ_{b, j, n} r² / (B · To · N)
    dL/dz[i, n] = (2 g[s] / (B · To · N)) Σ_k h[s, k] r[i − K + 1 + k, n]   (r outside [0, To) is 0)

The forward writes r (for the backward) and one partial sum of r² / (B · To · N) per program (summed in PyTorch, so
the loss does not depend on the order programs finish in); the latent channels n ≥ N get gradient 0.
One program per (fit · sequence, block of ``BLOCK_T`` times, see ``LAUNCH``), all channels at once. The filter is data
(no gradient). Runs on CUDA, or on CPU tensors under ``TRITON_INTERPRET=1``.

The number of taps K is a compile-time constant (a kernel is compiled once per K) and the tap loop is
unrolled. A form with one Toeplitz-matrix product per program was slower on an H200 (benchmarks/RESULTS.md,
Session 10).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_TAPS = 64
# times per program and warps: at 1020 stacked fits (B 16, T̃ 60, K 23) on an H200, 64 times per program took the
# forward from 0.114 to 0.087 ms per step, and the backward at 2 warps from 0.078 to 0.062 ms (session 10)
LAUNCH: dict[str, dict] = {"fwd": {"BLOCK_T": 64, "num_warps": 4}, "bwd": {"BLOCK_T": 64, "num_warps": 2}}
# launch overrides ("fwd", "bwd": BLOCK_T, num_warps); benchmarks/step_limit.py compares variants on a GPU
TUNING: dict[str, dict] = {"fwd": {}, "bwd": {}}


@triton.jit
def _fwd_kernel(z_ptr, h_ptr, x_ptr, r_ptr, part_ptr, R, T, To, M, N, NTB, XS, inv_count,
                K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)  # (fit, sequence) index
    tb = tl.program_id(1)
    s = row // R
    rj = tb * BLOCK_T + tl.arange(0, BLOCK_T)  # (BT,) output times
    rn = tl.arange(0, BLOCK_N)
    mn = rn < N
    row64 = row.to(tl.int64)
    acc = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)
    for k in tl.static_range(K):
        hk = tl.load(h_ptr + s * K + k)
        ti = rj + K - 1 - k  # (BT,) input times, < T where rj < To
        mask = (rj < To)[:, None] & mn[None, :]
        acc += hk * tl.load(z_ptr + row64 * T * M + ti[:, None] * M + rn[None, :], mask=mask, other=0.0)
    out_mask = (rj < To)[:, None] & mn[None, :]
    xv = tl.load(x_ptr + row64 * XS + rj[:, None] * N + rn[None, :], mask=out_mask, other=0.0)  # XS: row stride
    r = tl.where(out_mask, acc - xv, 0.0)  # (BT, BN)
    tl.store(r_ptr + row64 * To * N + rj[:, None] * N + rn[None, :], r, mask=out_mask)
    tl.store(part_ptr + row64 * NTB + tb, tl.sum(tl.sum(r * r, axis=1), axis=0) * inv_count)


@triton.jit
def _bwd_kernel(r_ptr, h_ptr, g_ptr, gz_ptr, R, T, To, M, N, inv_count, GS,
                K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr):
    row = tl.program_id(0)
    s = row // R
    ri = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)  # (BT,) latent times
    rm = tl.arange(0, BLOCK_M)
    mn = rm < N
    row64 = row.to(tl.int64)
    acc = tl.zeros((BLOCK_T, BLOCK_M), dtype=tl.float32)
    for k in tl.static_range(K):
        hk = tl.load(h_ptr + s * K + k)
        tj = ri - (K - 1) + k  # (BT,) output times
        mask = ((tj >= 0) & (tj < To))[:, None] & mn[None, :]
        acc += hk * tl.load(r_ptr + row64 * To * N + tj[:, None] * N + rm[None, :], mask=mask, other=0.0)
    scale = 2.0 * tl.load(g_ptr + s * GS) * inv_count  # GS: stride of dL/dloss (0 when it is expanded)
    tl.store(gz_ptr + row64 * T * M + ri[:, None] * M + rm[None, :], acc * scale,
             mask=(ri < T)[:, None] & (rm < M)[None, :])


class _ConvMSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, h, x):
        S, B, T, M = z.shape
        K, N, To = h.shape[1], x.shape[3], x.shape[2]
        R = B
        opts = {**LAUNCH["fwd"], **TUNING.get("fwd", {})}
        ntb = triton.cdiv(To, opts["BLOCK_T"])
        r = torch.empty(S, B, To, N, dtype=z.dtype, device=z.device)  # (S, B, To, N) residuals
        part = torch.empty(S, B, ntb, dtype=torch.float32, device=z.device)
        count = B * To * N
        _fwd_kernel[(S * B, ntb)](z, h, x, r, part, R, T, To, M, N, ntb, x.stride(1), 1.0 / count, K=K,
                                  BLOCK_N=max(16, triton.next_power_of_2(N)), **opts)
        ctx.save_for_backward(r, h)
        ctx.meta = (T, M, count)
        return part.view(S, B * ntb).sum(1)  # (S,) partials already divided by the count

    @staticmethod
    def backward(ctx, gl):
        r, h = ctx.saved_tensors
        T, M, count = ctx.meta
        S, B, To, N = r.shape
        gz = torch.empty(S, B, T, M, dtype=r.dtype, device=r.device)
        gl = gl.to(torch.float32)  # (S,), often an expanded 1 (stride 0): read in place
        opts = {**LAUNCH["bwd"], **TUNING.get("bwd", {})}
        _bwd_kernel[(S * B, triton.cdiv(T, opts["BLOCK_T"]))](r, h, gl, gz, B, T, To, M, N, 1.0 / count, gl.stride(0),
                                                              K=h.shape[1], BLOCK_M=max(16, triton.next_power_of_2(M)),
                                                              **opts)
        return gz, None, None


def supported(z: torch.Tensor, h: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether :func:`conv_mse_triton` takes the call: float32 on one device, per-fit filters (S, K) without
    gradient, K ≤ 64, z (S, B, T, M), x (S, B, T − K + 1, N ≤ M), x without gradient."""
    if z.dim() != 4 or x.dim() != 4 or h.dim() != 2:
        return False
    S, B, T, M = z.shape
    K = h.shape[1]
    return (all(t.dtype == torch.float32 for t in (z, h, x)) and len({t.device for t in (z, h, x)}) == 1
            and not h.requires_grad and not x.requires_grad and h.shape[0] == S and 1 <= K <= MAX_TAPS
            and T >= K and tuple(x.shape[:3]) == (S, B, T - K + 1) and 1 <= x.shape[3] <= M and z.numel() > 0)


def conv_mse_triton(z: torch.Tensor, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-fit decoder loss (S,) by the fused kernels; same contract as :func:`dsr.ops.conv_loss.conv_mse_ref`."""
    if not supported(z, h, x):
        from dsr.ops.conv_loss import conv_mse_ref

        return conv_mse_ref(z, h, x)
    rows_ok = x.stride(3) == 1 and x.stride(2) == x.shape[3] and x.stride(0) == x.shape[1] * x.stride(1)
    # a time slice of a contiguous batch (x[:, :, K:]) is read in place, without a copy
    return _ConvMSE.apply(z.contiguous(), h.contiguous(), x if rows_ok else x.contiguous())

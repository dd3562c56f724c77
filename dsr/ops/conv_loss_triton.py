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
One program per (fit · sequence, block of ``BLOCK_T`` times), all channels at once. The filter is data
(no gradient). Runs on CUDA, or on CPU tensors under ``TRITON_INTERPRET=1``.

The number of taps K is a compile-time constant and the tap loop is unrolled, so a program issues its K
shifted loads together instead of waiting for each one in turn (a short program's time was K load
latencies; benchmarks/RESULTS.md, Session 10). A kernel is compiled once per K.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from dsr.ops.gtf_triton import precision

BLOCK_T = 32  # times per program
MAX_TAPS = 64
# launch overrides ("fwd", "bwd": BLOCK_T, num_warps); benchmarks/step_limit.py compares variants on a GPU
TUNING: dict[str, dict] = {"fwd": {}, "bwd": {}}
TOEPLITZ = False  # the forward and backward as one Toeplitz-matrix product per program (_fwd_dot_kernel)


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


@triton.jit
def _fwd_dot_kernel(z_ptr, h_ptr, x_ptr, r_ptr, part_ptr, R, T, To, M, N, NTB, XS, inv_count,
                    K: tl.constexpr, OUT: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr,
                    BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    """The forward as one matmul: OUT = BLOCK_I − K + 1 outputs from BLOCK_I latent times through the
    (BLOCK_O, BLOCK_I) Toeplitz matrix of the filter."""
    row = tl.program_id(0)
    tb = tl.program_id(1)
    s = row // R
    ro = tl.arange(0, BLOCK_O)  # (BO,) local output times
    ri = tl.arange(0, BLOCK_I)  # (BI,) local latent times
    rn = tl.arange(0, BLOCK_N)
    mn = rn < N
    row64 = row.to(tl.int64)
    lag = (K - 1) - (ri[None, :] - ro[:, None])  # (BO, BI) tap k of (output j, latent i): i − j = K − 1 − k
    band = (lag >= 0) & (lag < K) & (ro < OUT)[:, None]
    hmat = tl.load(h_ptr + s * K + lag, mask=band, other=0.0)  # (BO, BI) Toeplitz matrix
    ti = tb * OUT + ri  # (BI,) latent times
    zt = tl.load(z_ptr + row64 * T * M + ti[:, None] * M + rn[None, :], mask=(ti < T)[:, None] & mn[None, :],
                 other=0.0)  # (BI, BN)
    y = tl.dot(hmat, zt, input_precision=PRECISION)  # (BO, BN)
    rj = tb * OUT + ro  # (BO,) output times
    out_mask = ((ro < OUT) & (rj < To))[:, None] & mn[None, :]
    xv = tl.load(x_ptr + row64 * XS + rj[:, None] * N + rn[None, :], mask=out_mask, other=0.0)
    r = tl.where(out_mask, y - xv, 0.0)  # (BO, BN)
    tl.store(r_ptr + row64 * To * N + rj[:, None] * N + rn[None, :], r, mask=out_mask)
    tl.store(part_ptr + row64 * NTB + tb, tl.sum(tl.sum(r * r, axis=1), axis=0) * inv_count)


@triton.jit
def _bwd_dot_kernel(r_ptr, h_ptr, g_ptr, gz_ptr, R, T, To, M, N, inv_count, GS,
                    K: tl.constexpr, OUT: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr,
                    BLOCK_M: tl.constexpr, PRECISION: tl.constexpr):
    """The backward as one matmul: dL/dz at OUT = BLOCK_I − K + 1 latent times from the BLOCK_I residual
    times that reach them, through the transposed Toeplitz matrix."""
    row = tl.program_id(0)
    tb = tl.program_id(1)
    s = row // R
    ro = tl.arange(0, BLOCK_O)  # (BO,) local latent times
    rj = tl.arange(0, BLOCK_I)  # (BI,) local residual times, starting K − 1 before the first latent time
    rm = tl.arange(0, BLOCK_M)
    mn = rm < N
    row64 = row.to(tl.int64)
    lag = rj[None, :] - ro[:, None]  # (BO, BI): latent i = tb·OUT + o, residual j = tb·OUT − (K − 1) + jl
    band = (lag >= 0) & (lag < K) & (ro < OUT)[:, None]
    gmat = tl.load(h_ptr + s * K + lag, mask=band, other=0.0)  # (BO, BI)
    tj = tb * OUT - (K - 1) + rj  # (BI,) residual times
    rt = tl.load(r_ptr + row64 * To * N + tj[:, None] * N + rm[None, :],
                 mask=((tj >= 0) & (tj < To))[:, None] & mn[None, :], other=0.0)  # (BI, BM)
    acc = tl.dot(gmat, rt, input_precision=PRECISION)  # (BO, BM)
    scale = 2.0 * tl.load(g_ptr + s * GS) * inv_count
    ti = tb * OUT + ro
    tl.store(gz_ptr + row64 * T * M + ti[:, None] * M + rm[None, :], acc * scale,
             mask=((ro < OUT) & (ti < T))[:, None] & (rm < M)[None, :])


def _dot_blocks(K: int) -> tuple[int, int, int]:
    """(OUT, BLOCK_O, BLOCK_I) of the Toeplitz kernels: BLOCK_I latent (or residual) times per program, of
    which K − 1 are the filter's overlap, so OUT = BLOCK_I − K + 1 times come out."""
    block_i = 64 if K <= 33 else 128
    out = block_i - K + 1
    return out, max(16, triton.next_power_of_2(out)), block_i


class _ConvMSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, h, x):
        S, B, T, M = z.shape
        K, N, To = h.shape[1], x.shape[3], x.shape[2]
        R = B
        opts = {"BLOCK_T": BLOCK_T, "num_warps": 4, "TOEPLITZ": TOEPLITZ, **TUNING.get("fwd", {})}
        toeplitz = opts.pop("TOEPLITZ")
        OUT, BO, BI = _dot_blocks(K)
        ntb = triton.cdiv(To, OUT if toeplitz else opts["BLOCK_T"])
        r = torch.empty(S, B, To, N, dtype=z.dtype, device=z.device)  # (S, B, To, N) residuals
        part = torch.empty(S, B, ntb, dtype=torch.float32, device=z.device)
        count = B * To * N
        args = (z, h, x, r, part, R, T, To, M, N, ntb, x.stride(1), 1.0 / count)
        if toeplitz:
            _fwd_dot_kernel[(S * B, ntb)](*args, K=K, OUT=OUT, BLOCK_O=BO, BLOCK_I=BI,
                                          BLOCK_N=max(16, triton.next_power_of_2(N)), PRECISION=precision(),
                                          num_warps=opts["num_warps"])
        else:
            _fwd_kernel[(S * B, ntb)](*args, K=K, BLOCK_N=max(16, triton.next_power_of_2(N)), **opts)
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
        opts = {"BLOCK_T": BLOCK_T, "num_warps": 4, "TOEPLITZ": TOEPLITZ, **TUNING.get("bwd", {})}
        K = h.shape[1]
        args = (r, h, gl, gz, B, T, To, M, N, 1.0 / count, gl.stride(0))
        BM = max(16, triton.next_power_of_2(M))
        if opts.pop("TOEPLITZ"):
            OUT, BO, BI = _dot_blocks(K)
            _bwd_dot_kernel[(S * B, triton.cdiv(T, OUT))](*args, K=K, OUT=OUT, BLOCK_O=BO, BLOCK_I=BI, BLOCK_M=BM,
                                                          PRECISION=precision(), num_warps=opts["num_warps"])
        else:
            _bwd_kernel[(S * B, triton.cdiv(T, opts["BLOCK_T"]))](*args, K=K, BLOCK_M=BM, **opts)
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

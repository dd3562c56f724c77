"""Triton kernel for the log-density of Gaussian mixtures at Monte-Carlo samples (float64).

Computes what :func:`dsr.ops.gmm.log_mixture_ref` computes (its plain-PyTorch twin, same contract): for fit f,
mixture g and sample s,

    out[f, g, s] = log Σ_t exp(a_t) + c ‖s‖² − log T,   a_t = c ‖μ_t‖² − 2c s·μ_t,   c = −1 / (2 scaling)

(c read from a float64 tensor: a float argument would reach the kernel as float32; − log T added after), one
program per (fit, mixture, block of ``BLOCK_S`` samples), the T centres streamed in blocks of
``BLOCK_T`` with a running maximum and a rescaled running sum (the log-sum-exp of the twin in one pass), the N
coordinates in an unrolled loop of fused multiply-adds. Nothing but the result is written: the twin writes
and reads a (Sm, T) block of distances about five times. Runs on CUDA, or on CPU tensors under
``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

BLOCK_S = 64  # samples per program
BLOCK_T = 64  # centres per step of the running log-sum-exp
MAX_DIMS = 64  # coordinates unrolled in the kernel


@triton.jit
def _log_mixture_kernel(s_ptr, c_ptr, coef_ptr, out_ptr, G, Sm, T,
                        N: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_T: tl.constexpr):
    fg = tl.program_id(0)  # fit * G + mixture
    coef = tl.load(coef_ptr)  # float64 (a float argument would be float32)
    f = fg // G
    rs = tl.program_id(1) * BLOCK_S + tl.arange(0, BLOCK_S)  # (BS,) samples
    ms = rs < Sm
    s_row = s_ptr + f.to(tl.int64) * Sm * N
    c_row = c_ptr + fg.to(tl.int64) * T * N
    s_sq = tl.zeros((BLOCK_S,), dtype=tl.float64)
    for n in tl.static_range(N):
        sn = tl.load(s_row + rs * N + n, mask=ms, other=0.0)
        s_sq += sn * sn
    run_max = tl.full((BLOCK_S,), float("-inf"), dtype=tl.float64)
    run_sum = tl.zeros((BLOCK_S,), dtype=tl.float64)
    for t0 in range(0, T, BLOCK_T):
        rt = t0 + tl.arange(0, BLOCK_T)  # (BT,) centres
        mt = rt < T
        dot = tl.zeros((BLOCK_S, BLOCK_T), dtype=tl.float64)
        c_sq = tl.zeros((BLOCK_T,), dtype=tl.float64)
        for n in tl.static_range(N):
            sn = tl.load(s_row + rs * N + n, mask=ms, other=0.0)  # (BS,) from the cache after the first block
            cn = tl.load(c_row + rt * N + n, mask=mt, other=0.0)  # (BT,)
            dot += sn[:, None] * cn[None, :]
            c_sq += cn * cn
        a = coef * c_sq[None, :] - 2.0 * coef * dot  # (BS, BT)
        a = tl.where(mt[None, :], a, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(a, axis=1))  # (BS,)
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(a - new_max[:, None]), axis=1)
        run_max = new_max
    out = tl.log(run_sum) + run_max + coef * s_sq
    tl.store(out_ptr + fg.to(tl.int64) * Sm + rs, out, mask=ms)


def supported(samples: torch.Tensor, centres: torch.Tensor) -> bool:
    """Whether :func:`log_mixture_triton` takes this call (float64, one device, N ≤ 64, T ≥ 1)."""
    return (samples.dtype == torch.float64 and centres.dtype == torch.float64 and samples.device == centres.device
            and samples.dim() == 3 and centres.dim() == 4 and centres.shape[0] == samples.shape[0]
            and centres.shape[3] == samples.shape[2] and 1 <= samples.shape[2] <= MAX_DIMS
            and centres.shape[2] >= 1 and samples.shape[1] >= 1)


def log_mixture_triton(samples: torch.Tensor, centres: torch.Tensor, scaling: float) -> torch.Tensor:
    """samples (F, Sm, N), centres (F, G, T, N), float64 → (F, G, Sm); see :func:`dsr.ops.gmm.log_mixture_ref`."""
    F, Sm, N = samples.shape
    G, T = centres.shape[1:3]
    out = torch.empty(F, G, Sm, dtype=torch.float64, device=samples.device)
    coef = torch.full((1,), -0.5 / scaling, dtype=torch.float64, device=samples.device)
    grid = (F * G, triton.cdiv(Sm, BLOCK_S))
    _log_mixture_kernel[grid](samples.contiguous(), centres.contiguous(), coef, out, G, Sm, T, N=N,
                              BLOCK_S=BLOCK_S, BLOCK_T=BLOCK_T, num_warps=8)  # 16 float64 partial dots a thread
    return out - math.log(T)  # (F, G, Sm)

"""Fused Triton kernel for batch sampling: window gather + counter-based Gaussian noise, one launch.

Computes what :func:`dsr.ops.sample.gather_noisy_ref` computes (its twin, same signature): one
program per (fit, sequence, block of ``BLOCK`` elements of the T1 × N window). The integer hash is
done in int64 with products masked to 32 bits, exactly as in the twin, so the uniforms agree bit
for bit; the Box–Muller transform agrees to float32 rounding.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _hash32(x):
    x = x & 0xFFFFFFFF
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


@triton.jit
def _unit(idx, key):
    h = _hash32(_hash32(idx ^ key) + key)
    return ((h >> 8) + 1).to(tl.float32) * 5.9604644775390625e-08  # 2^-24


@triton.jit
def _gather_noisy_kernel(src_ptr, starts_ptr, key1_ptr, key2_ptr, out_ptr, B, T, T1, N, sigma,
                         NOISE: tl.constexpr, BLOCK: tl.constexpr):
    s = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    e = tl.program_id(2).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)  # element in the window
    mask = e < T1 * N
    start = tl.load(starts_ptr + s * B + b)
    val = tl.load(src_ptr + s * T * N + start * N + e, mask=mask, other=0.0)
    if NOISE:
        k1 = tl.load(key1_ptr + s)
        k2 = tl.load(key2_ptr + s)
        g = b * T1 * N + e  # index in the fit's (B, T1, N) draw
        u1 = _unit(g, k1)
        u2 = _unit(g, k2)
        z = tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.283185307179586 * u2)
        val = val + sigma * z
    tl.store(out_ptr + (s * B + b) * T1 * N + e, val, mask=mask)


def gather_noisy_triton(src: torch.Tensor, starts: torch.Tensor, T1: int, key1: torch.Tensor,
                        key2: torch.Tensor, sigma: float) -> torch.Tensor:
    """Same as :func:`dsr.ops.sample.gather_noisy_ref` (see there), one kernel launch."""
    S, T, N = src.shape
    B = starts.shape[1]
    src = src.contiguous()
    out = torch.empty((S, B, T1, N), dtype=src.dtype, device=src.device)
    if out.numel() == 0:
        return out
    grid = (S, B, math.ceil(T1 * N / BLOCK))
    _gather_noisy_kernel[grid](src, starts.to(torch.int64).contiguous(), key1.to(torch.int64).contiguous(),
                               key2.to(torch.int64).contiguous(), out, B, T, T1, N, float(sigma),
                               NOISE=sigma != 0, BLOCK=BLOCK)
    return out

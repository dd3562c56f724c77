"""Triton kernels for batch sampling: window starts and noise keys of a step, and window gather +
counter-based Gaussian noise, one launch each.

``_gather_noisy_kernel`` computes what :func:`dsr.ops.sample.gather_noisy_ref` computes (its twin, same
signature): one program per (fit, sequence, block of ``BLOCK`` elements of the T1 × N window). The integer
hash runs in uint32, whose wrapping products equal the twin's int64 products masked to 32 bits, so the
uniforms agree bit for bit; the Box–Muller transform agrees to float32 rounding, or on a GPU (``FAST_COS``) with
the hardware's approximate cosine to 1e-5 of the noise's standard deviation.

``_stage_index_kernel`` computes what :func:`dsr.ops.sample.stage_index_ref` computes, all in integers: with
u = m · 2⁻²⁴ (m = (h >> 8) + 1 ≤ 2²⁴), ceil(u · n) − 1 = ⌊(m · n − 1) / 2²⁴⌋, which the twin's float64
product gives exactly (m · n < 2⁵³), so the two agree bit for bit.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

BLOCK = 1024
# launch overrides of the gather ("gather": BLOCK, num_warps, FAST_COS); benchmarks/step_limit.py compares variants
TUNING: dict[str, dict] = {"gather": {}}
# on a GPU (the interpreter has no libdevice): the Box–Muller cosine by the hardware approximation, 1744 → 760
# instructions per warp and program, 0.130 → 0.107 ms per step at 1020 stacked fits on an H200 (session 10)
FAST_COS = True


@triton.jit
def _hash32(x):
    x = x & 0xFFFFFFFF
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


@triton.jit
def _hash32_u32(x):
    """_hash32 on uint32 values: the same bits (the int64 version masks every product to 32 bits, uint32
    arithmetic wraps there), without 64-bit integer products, which cost several instructions each."""
    x = x ^ (x >> 16)
    x = x * tl.full([], 0x7FEB352D, tl.uint32)
    x = x ^ (x >> 15)
    x = x * tl.full([], 0x846CA68B, tl.uint32)
    return x ^ (x >> 16)


@triton.jit
def _unit(idx, key):
    """Uniform (0, 1] from element indices and a key (int64 holding values below 2³²): computed in uint32,
    equal to the twin's int64 result because its first step keeps only the low 32 bits."""
    i, k = idx.to(tl.uint32), key.to(tl.uint32)  # low 32 bits
    h = _hash32_u32(_hash32_u32(i ^ k) + k)
    return ((h >> 8) + 1).to(tl.float32) * 5.9604644775390625e-08  # 2^-24


@triton.jit
def _stage_index_kernel(seeds_ptr, counter_ptr, table_ptr, n_ptr, out_ptr, S, B, W,
                        BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_S + tl.arange(0, BLOCK_S).to(tl.int64)  # fits
    cols = tl.program_id(1).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)  # columns of out
    rmask = rows < S
    mask = rmask[:, None] & (cols < B + 4)[None, :]  # (BLOCK_S, BLOCK_C)
    seed = tl.load(seeds_ptr + rows, mask=rmask, other=0)
    counter = tl.load(counter_ptr)
    stream = tl.where(cols < B, 0, cols - B + 1)  # column b < B: uniform b of stream 0; B + k: key of stream k+1
    k = _hash32(seed[:, None] * 0x9E3779B9 + stream[None, :])  # stream_keys, per (fit, column)
    k = _hash32(k ^ (counter & 0xFFFFFFFF))
    k = _hash32(k + (counter >> 32) + 0x9E3779B9)
    h = _hash32(_hash32(cols[None, :] ^ k) + k)  # uniform number `col` of the key
    n = tl.load(n_ptr + rows, mask=rmask, other=1)
    j = (((h >> 8) + 1) * n[:, None] - 1) >> 24  # ceil(u · n) − 1, in [0, n)
    is_start = mask & (cols < B)[None, :]
    start = tl.load(table_ptr + rows[:, None] * W + j, mask=is_start, other=0)
    tl.store(out_ptr + rows[:, None] * (B + 4) + cols[None, :], tl.where(is_start, start, k), mask=mask)


def stage_index_triton(seeds: torch.Tensor, counter: torch.Tensor, table: torch.Tensor, n_starts: torch.Tensor,
                       B: int) -> torch.Tensor:
    """Same as :func:`dsr.ops.sample.stage_index_ref` (see there), one kernel launch and no host sync."""
    S, W = table.shape
    out = torch.empty((S, B + 4), dtype=torch.int64, device=seeds.device)
    if S == 0:
        return out
    BLOCK_C = min(64, triton.next_power_of_2(B + 4))
    grid = (triton.cdiv(S, 32), triton.cdiv(B + 4, BLOCK_C))
    _stage_index_kernel[grid](seeds.to(torch.int64).contiguous(), counter.to(torch.int64).contiguous(),
                              table.to(torch.int64).contiguous(), n_starts.to(torch.int64).contiguous(), out,
                              S, B, W, BLOCK_S=32, BLOCK_C=BLOCK_C)
    return out


@triton.jit
def _gather_noisy_kernel(src_ptr, starts_ptr, key1_ptr, key2_ptr, out_ptr, B, T, T1, N, sigma,
                         NOISE: tl.constexpr, BLOCK: tl.constexpr, FAST_COS: tl.constexpr = 0):
    s = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    e = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,) int32 element of the window (T1 · N < 2³¹)
    mask = e < T1 * N
    start = tl.load(starts_ptr + s * B + b)
    val = tl.load(src_ptr + (s * T * N + start * N) + e, mask=mask, other=0.0)  # 64-bit base, 32-bit offsets
    if NOISE:
        k1 = tl.load(key1_ptr + s)
        k2 = tl.load(key2_ptr + s)
        g = (b * T1 * N).to(tl.uint32) + e.to(tl.uint32)  # low 32 bits of the index in the fit's (B, T1, N) draw
        u1 = _unit(g, k1)
        u2 = _unit(g, k2)
        if FAST_COS:  # hardware approximate cosine on [−π, π] (|error| ≤ 2^-20.9): cos 2πu = −cos π(2u − 1)
            z = -tl.sqrt(-2.0 * tl.log(u1)) * libdevice.fast_cosf(3.141592653589793 * (2.0 * u2 - 1.0))
        else:
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
    opts = {"BLOCK": BLOCK, "FAST_COS": FAST_COS, **TUNING.get("gather", {})}
    opts["FAST_COS"] = int(bool(opts["FAST_COS"]) and os.environ.get("TRITON_INTERPRET") != "1")
    grid = (S, B, math.ceil(T1 * N / opts["BLOCK"]))
    _gather_noisy_kernel[grid](src, starts.to(torch.int64).contiguous(), key1.to(torch.int64).contiguous(),
                               key2.to(torch.int64).contiguous(), out, B, T, T1, N, float(sigma),
                               NOISE=sigma != 0, **opts)
    return out

"""Gather training windows and add counter-based Gaussian noise: the batch-sampling hot loop.

``gather_noisy_ref`` is the plain-PyTorch twin; ``gather_noisy`` is the dispatch point that takes
the fused Triton kernel (:mod:`dsr.ops.sample_triton`) on CUDA. Both compute, for every fit s,
sequence b, step t < T1 and channel n::

    out[s, b, t, n] = src[s, starts[s, b] + t, n] + sigma · N(key[s]; (b·T1 + t)·N + n)

where N(key; i) is the i-th standard normal of the fit's counter-based stream: a pure function of
(seed, step, stream, element index), so a fit's batch depends on nothing but its own seed and the
step number, whichever fits share the stack and on whichever device -- no generator state to keep
or save. The hash is a 32-bit integer finaliser (xor-shift / multiply rounds) done in int64 with
products masked to 32 bits, so CPU, CUDA and the kernel give the same integers.

``stage_index_ref`` / ``stage_index`` draw what the windows are taken from -- each fit's B window starts and
its four noise keys of one step -- from the seeds and a step counter held in a device tensor, so a training
step on CUDA computes them inside its graph instead of on the host.
"""
from __future__ import annotations

import math

import torch

from dsr.ops import kernel_module

_MASK = 0xFFFFFFFF
_M1, _M2 = 0x7FEB352D, 0x846CA68B  # multipliers of a well-mixing 32-bit finaliser
_GOLDEN = 0x9E3779B9


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Mix each int64 entry (taken mod 2³²) to a 32-bit value in [0, 2³²), same shape."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = (x * _M1) & _MASK
    x = x ^ (x >> 15)
    x = (x * _M2) & _MASK
    return x ^ (x >> 16)


def _unit(idx: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Uniform (0, 1] in float32 from element indices (S, n) and per-fit keys (S, 1)."""
    h = hash32(hash32(idx ^ key) + key)  # (S, n)
    return ((h >> 8) + 1).to(torch.float32) * (2.0 ** -24)


def stream_keys(seeds: torch.Tensor, counter, stream: int) -> torch.Tensor:
    """One 32-bit key per fit (S,) int64 from its seed, the step counter (a non-negative int, or an int64
    tensor that broadcasts against the seeds: the same keys) and a stream id."""
    k = hash32(seeds.to(torch.int64) * _GOLDEN + stream)
    k = hash32(k ^ (counter & _MASK))
    return hash32(k + (counter >> 32) + _GOLDEN)


def uniform(keys: torch.Tensor, n: int) -> torch.Tensor:
    """n uniform numbers in (0, 1] per key: (S, n) float32; row s depends only on ``keys[s]``."""
    e = torch.arange(n, device=keys.device, dtype=torch.int64)[None]  # (1, n)
    return _unit(e, keys[:, None].to(torch.int64))


def stage_index_ref(seeds: torch.Tensor, counter: torch.Tensor, table: torch.Tensor, n_starts: torch.Tensor,
                    B: int) -> torch.Tensor:
    """Window starts and noise keys of one training step, plain PyTorch: what a batch is drawn from.

    Parameters
    ----------
    seeds : Tensor (S,) int64
        One per fit.
    counter : Tensor () or (1,) int64
        The global step number (non-negative; may exceed 2³²).
    table : Tensor (S, W) int64
        Each fit's valid window starts, rows padded by repeating their last entry.
    n_starts : Tensor (S,) int64
        How many entries of each row are valid (1 ≤ n_starts ≤ W).
    B : int
        Windows per fit.

    Returns
    -------
    Tensor (S, B + 4) int64
        Columns :B: ``table[s, j]`` with ``j = ceil(u · n_starts[s]) − 1`` for the B uniforms u of stream 0,
        i.e. uniform over the fit's valid starts; columns B: the keys of streams 1–4 (the noise of
        observations and targets).
    """
    counter = counter.reshape(())  # () broadcasts against (S,)
    u = uniform(stream_keys(seeds, counter, 0), B).double()  # (S, B) in (0, 1], exact in float64
    j = torch.ceil(u * n_starts[:, None]).to(torch.int64) - 1  # (S, B) in [0, n_s)
    keys = torch.stack([stream_keys(seeds, counter, k) for k in (1, 2, 3, 4)], 1)  # (S, 4)
    return torch.cat([torch.gather(table, 1, j), keys], 1)


def stage_index(seeds, counter, table, n_starts, B):
    """Dispatch: the Triton kernel for CUDA tensors, the twin otherwise (the same integers)."""
    if seeds.is_cuda and (k := kernel_module("sample_triton")) is not None:
        with torch.cuda.device(seeds.device):
            return k.stage_index_triton(seeds, counter, table, n_starts, B)
    return stage_index_ref(seeds, counter, table, n_starts, B)


def gather_noisy_ref(src: torch.Tensor, starts: torch.Tensor, T1: int, key1: torch.Tensor, key2: torch.Tensor,
                     sigma: float) -> torch.Tensor:
    """Windows of ``src`` plus Gaussian noise, plain PyTorch.

    Parameters
    ----------
    src : Tensor (S, T, N) float32
        Each fit's series (NaN entries stay NaN).
    starts : Tensor (S, B) int64
        First index of every window; ``starts + T1 ≤ T``.
    T1 : int
        Window length.
    key1, key2 : Tensor (S,) int64
        Per-fit keys of the two uniform streams of the Box–Muller transform.
    sigma : float
        Noise standard deviation (0: no noise).

    Returns
    -------
    Tensor (S, B, T1, N)
    """
    S, B = starts.shape
    N = src.shape[2]
    idx = starts[:, :, None] + torch.arange(T1, device=src.device)  # (S, B, T1)
    out = torch.gather(src, 1, idx.reshape(S, B * T1, 1).expand(-1, -1, N)).reshape(S, B, T1, N)
    if sigma == 0:
        return out
    e = torch.arange(B * T1 * N, device=src.device, dtype=torch.int64)[None]  # (1, B·T1·N)
    u1 = _unit(e, key1[:, None].to(torch.int64))  # (S, B·T1·N)
    u2 = _unit(e, key2[:, None].to(torch.int64))
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)  # (S, B·T1·N)
    return out + sigma * z.reshape(S, B, T1, N).to(out.dtype)


def gather_noisy(src, starts, T1, key1, key2, sigma):
    """Dispatch: the Triton kernel for float32 CUDA tensors, the twin otherwise (same result)."""
    if src.is_cuda and src.dtype == torch.float32 and (k := kernel_module("sample_triton")) is not None:
        with torch.cuda.device(src.device):  # launch on the tensors' GPU, not the current one
            return k.gather_noisy_triton(src, starts, T1, key1, key2, sigma)
    return gather_noisy_ref(src, starts, T1, key1, key2, sigma)

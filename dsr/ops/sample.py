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


def stream_keys(seeds: torch.Tensor, counter: int, stream: int) -> torch.Tensor:
    """One 32-bit key per fit (S,) int64 from its seed, the step counter and a stream id."""
    k = hash32(seeds.to(torch.int64) * _GOLDEN + stream)
    k = hash32(k ^ (counter & _MASK))
    return hash32(k + (counter >> 32) + _GOLDEN)


def uniform(keys: torch.Tensor, n: int) -> torch.Tensor:
    """n uniform numbers in (0, 1] per key: (S, n) float32; row s depends only on ``keys[s]``."""
    e = torch.arange(n, device=keys.device, dtype=torch.int64)[None]  # (1, n)
    return _unit(e, keys[:, None].to(torch.int64))


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

"""Triton kernel for the causal convolution of latent series with per-subject filters.

Computes what :func:`dsr.signal.convolution.causal_conv` computes (its plain-PyTorch twin, same
signature) for float32 series laid out (S, ..., T, M), time on dim -2 and channels last, with no
transposes: one program per (series, block of ``BLOCK_T`` output times), all M channels at once, the
K taps in a loop whose loads hit the cache. Forward and backward are the same kernel,

    y[j] = Σ_k h[k] x[j + base + step·k]        (x outside [0, T_x) counts as 0)

forward "valid": base = K−1, step = −1; forward "same": base = 0, step = −1; the gradient of
"valid": base = −(K−1), step = +1 over dL/dy; of "same": base = 0, step = +1. The filter is taken as
data (no gradient): :func:`supported` rejects a filter that requires one, and dispatch then uses the
twin. Runs on CUDA, or on CPU tensors under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_T = 32  # output times per program
MAX_TAPS = 64


@triton.jit
def _conv_kernel(x_ptr, h_ptr, y_ptr, R, Tx, Ty, M, K, base,
                 STEP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr):
    row = tl.program_id(0)  # series index in (S * R)
    s = row // R  # subject (filter row)
    rj = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)  # (BT,) output times
    rm = tl.arange(0, BLOCK_M)  # (BM,)
    mm = rm < M
    row64 = row.to(tl.int64)
    x_row = x_ptr + row64 * Tx * M
    acc = tl.zeros((BLOCK_T, BLOCK_M), dtype=tl.float32)
    for k in range(0, K):
        hk = tl.load(h_ptr + s * K + k)  # scalar tap
        ti = rj + base + STEP * k  # (BT,) input times
        mask = ((ti >= 0) & (ti < Tx))[:, None] & mm[None, :]
        acc += hk * tl.load(x_row + ti[:, None] * M + rm[None, :], mask=mask, other=0.0)  # (BT, BM)
    tl.store(y_ptr + row64 * Ty * M + rj[:, None] * M + rm[None, :], acc, mask=(rj < Ty)[:, None] & mm[None, :])


def _launch(x: torch.Tensor, h: torch.Tensor, Ty: int, base: int, step: int) -> torch.Tensor:
    """x (S, R, Tx, M), h (S, K) → y (S, R, Ty, M)."""
    S, R, Tx, M = x.shape
    y = torch.empty(S, R, Ty, M, dtype=x.dtype, device=x.device)
    grid = (S * R, triton.cdiv(Ty, BLOCK_T))
    _conv_kernel[grid](x, h, y, R, Tx, Ty, M, h.shape[1], base, STEP=step, BLOCK_T=BLOCK_T,
                       BLOCK_M=max(16, triton.next_power_of_2(M)), num_warps=4)
    return y


class _CausalConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, h, valid):
        K, T = h.shape[1], z.shape[2]
        ctx.save_for_backward(h)
        ctx.meta = (valid, T)
        return _launch(z, h, T - K + 1 if valid else T, K - 1 if valid else 0, -1)

    @staticmethod
    def backward(ctx, gy):
        (h,) = ctx.saved_tensors
        valid, T = ctx.meta
        K = h.shape[1]
        gz = _launch(gy.contiguous(), h, T, -(K - 1) if valid else 0, 1)
        return gz, None, None


def supported(z: torch.Tensor, h: torch.Tensor, mode: str) -> bool:
    """Whether :func:`causal_conv_triton` takes this call (float32, a filter without gradient, K ≤ 64)."""
    h = torch.as_tensor(h)
    K = h.shape[-1] if h.dim() in (1, 2) else 0
    per_subject_ok = h.dim() == 1 or (h.dim() == 2 and z.dim() >= 3 and h.shape[0] == z.shape[0])
    return (mode in ("valid", "same") and z.dim() >= 2 and z.dtype == torch.float32 and h.dtype == torch.float32
            and not h.requires_grad and per_subject_ok and 1 <= K <= MAX_TAPS and h.device == z.device
            and z.shape[-2] >= (K if mode == "valid" else 1) and z.numel() > 0)


def causal_conv_triton(z: torch.Tensor, h: torch.Tensor, mode: str = "valid", method: str = "auto") -> torch.Tensor:
    """Causal convolution by the kernel, same signature and result as the twin.

    Parameters
    ----------
    z : Tensor (..., T, M), or (S, ..., T, M) with per-subject filters
    h : Tensor (K,) or (S, K)
        Filter, ``h[0]`` is lag 0; float32, no gradient.
    mode : {"valid", "same"}
    method : str
        Ignored (kept for the twin's signature).

    Returns
    -------
    Tensor (..., T−K+1, M) for "valid", (..., T, M) for "same"; differentiable in z.
    """
    if not supported(z, h, mode):
        from dsr.signal.convolution import causal_conv

        return causal_conv(z, h, mode=mode, method=method)
    T, M = z.shape[-2:]
    h2 = h.unsqueeze(0) if h.dim() == 1 else h  # (S or 1, K)
    S = h2.shape[0]
    x = z.reshape(S, -1, T, M).contiguous()  # (S, R, T, M)
    y = _CausalConv.apply(x, h2.contiguous(), mode == "valid")  # (S, R, To, M)
    return y.reshape(*z.shape[:-2], y.shape[2], M)

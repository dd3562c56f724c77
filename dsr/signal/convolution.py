"""Causal convolution of latent series with an observation filter (torch, differentiable, batched).

``x_t = Σ_{k=0}^{K-1} h[k] z_{t-k}``, time on dim -2 and channels last. A short kernel goes through
``F.conv1d``; a long one through ``torch.fft.rfft``; both give the same numbers. ``convolve_np`` is
the numpy twin used to simulate data.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import lfilter

from dsr.errors import InputError

#: Kernels with more taps than this go through the FFT path.
DIRECT_MAX_TAPS = 64


def _prepare(z: torch.Tensor, h: torch.Tensor, mode: str):
    """Validate shapes; return ``h`` on z's device/dtype as (S, K) and whether it is per-subject."""
    if mode not in ("valid", "same"):
        raise ValueError(f"mode must be 'valid' or 'same', got {mode!r}")
    if z.dim() < 2:
        raise ValueError(f"z must have shape (..., T, M), got {tuple(z.shape)}")
    h = torch.as_tensor(h).to(device=z.device, dtype=z.dtype)
    if h.dim() == 1:
        per_subject = False
        h2 = h.unsqueeze(0)  # (1, K)
    elif h.dim() == 2:
        per_subject = True
        if z.dim() < 3 or h.shape[0] != z.shape[0]:
            raise ValueError(f"per-subject kernels of shape {tuple(h.shape)} need z of shape "
                             f"(S={h.shape[0]}, ..., T, M), got {tuple(z.shape)}")
        h2 = h  # (S, K)
    else:
        raise ValueError(f"h must have shape (K,) or (S, K), got {tuple(h.shape)}")
    T, K = z.shape[-2], h2.shape[-1]
    if K == 0:
        raise ValueError("the filter has no taps")
    if mode == "valid" and T < K:
        raise InputError(f"series of {T} samples is shorter than the filter of {K} taps")
    return h2, per_subject


def _conv_direct(z: torch.Tensor, h2: torch.Tensor, per_subject: bool, mode: str) -> torch.Tensor:
    """Causal convolution through ``F.conv1d`` (cross-correlation with the flipped kernel)."""
    M, K = z.shape[-1], h2.shape[-1]
    lead = z.shape[:-2]
    w = h2.flip(-1)  # (S, K)
    x = z.transpose(-1, -2)  # (..., M, T)
    if mode == "same":
        x = F.pad(x, (K - 1, 0))  # (..., M, T+K-1), zero history before the start
    Tp = x.shape[-1]
    if per_subject:
        S = z.shape[0]
        C = x.numel() // (S * Tp)  # channels per subject
        x = x.reshape(1, S * C, Tp)  # (1, S*C, Tp)
        weight = w.repeat_interleave(C, dim=0).unsqueeze(1)  # (S*C, 1, K)
        y = F.conv1d(x, weight, groups=S * C)  # (1, S*C, Tp-K+1)
    else:
        x = x.reshape(-1, 1, Tp)  # (B*M, 1, Tp)
        y = F.conv1d(x, w.view(1, 1, K))  # (B*M, 1, Tp-K+1)
    To = Tp - K + 1
    return y.reshape(*lead, M, To).transpose(-1, -2)  # (..., To, M)


def _conv_fft(z: torch.Tensor, h2: torch.Tensor, per_subject: bool, mode: str) -> torch.Tensor:
    """Causal convolution through zero-padded real FFTs (no circular wrap-around)."""
    T, K = z.shape[-2], h2.shape[-1]
    out_dtype = z.dtype
    if z.dtype not in (torch.float32, torch.float64):  # half types: FFT sizes are restricted
        z, h2 = z.float(), h2.float()
    n = T + K - 1  # full linear convolution length
    Z = torch.fft.rfft(z, n=n, dim=-2)  # (..., n//2+1, M)
    H = torch.fft.rfft(h2, n=n, dim=-1)  # (S, n//2+1)
    if per_subject:
        H = H.reshape(H.shape[0], *([1] * (z.dim() - 3)), H.shape[-1], 1)  # (S, 1.., F, 1)
    else:
        H = H[0].unsqueeze(-1)  # (F, 1)
    full = torch.fft.irfft(Z * H, n=n, dim=-2)  # (..., T+K-1, M)
    y = full[..., K - 1:T, :] if mode == "valid" else full[..., :T, :]  # (..., To, M)
    return y.to(out_dtype)


def causal_conv(z: torch.Tensor, h: torch.Tensor, mode: str = "valid",
                method: str = "auto") -> torch.Tensor:
    """Convolve latent series with a causal filter along time.

    Parameters
    ----------
    z : Tensor, shape (..., T, M)
        Series, time on dim -2, channels last. With per-subject kernels: (S, ..., T, M).
    h : Tensor, shape (K,) or (S, K)
        One kernel for all series, or one kernel per entry of z's first dim. ``h[0]`` is lag 0.
    mode : {"valid", "same"}
        "valid": shape (..., T-K+1, M), ``out[j] = Σ_k h[k] z[j+K-1-k]`` (the response at time
        j+K-1, full history only). "same": shape (..., T, M), zero history before the start.
    method : {"auto", "direct", "fft"}
        "auto" uses conv1d for K <= 64 and the FFT beyond.

    Returns
    -------
    Tensor, same dtype and device as z; differentiable in z and h.
    """
    h2, per_subject = _prepare(z, h, mode)
    if method == "auto":
        method = "direct" if h2.shape[-1] <= DIRECT_MAX_TAPS else "fft"
    if method == "direct":
        return _conv_direct(z, h2, per_subject, mode)
    if method == "fft":
        return _conv_fft(z, h2, per_subject, mode)
    raise ValueError(f"method must be 'auto', 'direct' or 'fft', got {method!r}")


def convolve_np(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Causal "same" convolution in numpy: ``y[t] = Σ_{k<=t} h[k] x[t-k]``.

    Parameters
    ----------
    x : ndarray, shape (T, N) or (T,)
    h : ndarray, shape (K,)

    Returns
    -------
    ndarray, same shape as x, float64
    """
    x = np.asarray(x, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64).ravel()
    return lfilter(h, [1.0], x, axis=0)  # (T, N)

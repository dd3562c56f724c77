"""Causal convolution of latent series with the observation filter: the dispatch point.

``causal_conv_ref`` is the plain-PyTorch twin (:func:`dsr.signal.convolution.causal_conv`:
``F.conv1d``, or the FFT for long filters); :func:`causal_conv` picks the Triton kernel
(:mod:`dsr.ops.conv_triton`) for float32 CUDA tensors with a filter that needs no gradient, and the
twin elsewhere (CPU, float64, a learned filter, ``DSR_DISABLE_TRITON=1``).
"""
from __future__ import annotations

import torch

from dsr.ops import kernel_module
from dsr.signal.convolution import causal_conv as causal_conv_ref


def causal_conv(z: torch.Tensor, h: torch.Tensor, mode: str = "valid", method: str = "auto") -> torch.Tensor:
    """Causal convolution (..., T, M) → (..., T−K+1 or T, M); see :func:`causal_conv_ref` for the contract."""
    if z.is_cuda and method == "auto" and (kernel := kernel_module("conv_triton")) is not None \
            and kernel.supported(z, h, mode):
        with torch.cuda.device(z.device):  # launch on the tensors' GPU, not the current one
            return kernel.causal_conv_triton(z, h, mode)
    return causal_conv_ref(z, h, mode=mode, method=method)

"""The decoder loss of training: causal convolution of the latents with each fit's filter, then the per-fit
mean squared error against the observations (identity observation model, no regressors).

``conv_mse_ref`` is the plain-PyTorch twin; :func:`conv_mse` is the dispatch point that takes the fused
Triton kernels (:mod:`dsr.ops.conv_loss_triton`: forward and backward one launch each, instead of the
convolution, difference, square, mean and their backward ops apart) for float32 CUDA tensors.
"""
from __future__ import annotations

import torch

from dsr.ops import kernel_module
from dsr.signal.convolution import causal_conv as causal_conv_ref


def conv_mse_ref(z: torch.Tensor, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-fit loss mean_{b, t, n} (causal_conv(z[..., :N], h, "valid") − x)², plain PyTorch.

    Parameters
    ----------
    z : Tensor (S, B, T, M)
        Latent states.
    h : Tensor (S, K)
        Each fit's filter (``h[:, 0]`` is lag 0); no gradient.
    x : Tensor (S, B, T − K + 1, N), N ≤ M
        Observations aligned with the convolution's outputs.

    Returns
    -------
    Tensor (S,)
        Differentiable in z.
    """
    N = x.shape[-1]
    return (causal_conv_ref(z[..., :N], h, mode="valid") - x).pow(2).mean(dim=(1, 2, 3))


def conv_mse(z: torch.Tensor, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Dispatch: the fused kernels for float32 CUDA tensors they support, else the convolution dispatch
    (:func:`dsr.ops.conv.causal_conv`) and PyTorch's MSE (same result)."""
    if z.is_cuda and (k := kernel_module("conv_loss_triton")) is not None and k.supported(z, h, x):
        with torch.cuda.device(z.device):  # launch on the tensors' GPU, not the current one
            return k.conv_mse_triton(z, h, x)
    from dsr.ops.conv import causal_conv

    N = x.shape[-1]
    return (causal_conv(z[..., :N], h, mode="valid") - x).pow(2).mean(dim=(1, 2, 3))

"""The log-density of a Gaussian mixture at Monte-Carlo samples (the GMM D_stsp's inner loop): the dispatch point.

For F fits, each with Sm samples s and G mixtures of T isotropic components (centres μ_t, variance
``scaling``), :func:`log_mixture` computes

    log (1/T) Σ_t exp(−‖s − μ_t‖² / (2 scaling))

as (F, G, Sm) (:mod:`dsr.analysis.dstsp`; Hershey & Olsen 2007, as the reference code
humml-lab/GTF-ConvSSM src/measures/stsp_measure.jl estimates it). :func:`log_mixture_ref` is the plain-PyTorch
twin: blocks of ``baddbmm`` distances, then max, exp, sum and log, each a pass over the block (about 70
bytes of memory traffic per distance); on CUDA in float64 the Triton kernel (:mod:`dsr.ops.gmm_triton`)
streams over the centres with a running log-sum-exp and writes only the result.
"""
from __future__ import annotations

import math

import torch

from dsr.log import user_log
from dsr.ops import kernel_module

log = user_log()
_BROKEN: list[str] = []  # the kernel's error, once it failed to compile or launch on this machine


def log_mixture(samples: torch.Tensor, centres: torch.Tensor, scaling: float, budget: int) -> torch.Tensor:
    """:func:`log_mixture_ref` (same contract), by the Triton kernel for float64 CUDA tensors.

    A kernel that cannot be compiled or launched on this machine is reported once and the twin used."""
    if samples.is_cuda and not _BROKEN and (kernel := kernel_module("gmm_triton")) is not None \
            and kernel.supported(samples, centres):
        try:
            with torch.cuda.device(samples.device):  # launch on the tensors' GPU, not the current one
                return kernel.log_mixture_triton(samples, centres, scaling)
        except Exception as exc:  # noqa: BLE001  (a compiler or driver problem: the twin gives the same numbers)
            _BROKEN.append(f"{type(exc).__name__}: {exc}")
            log.warning("GMM kernel unavailable (%s); using the PyTorch path", _BROKEN[0].splitlines()[0][:200])
    return log_mixture_ref(samples, centres, scaling, budget)


def log_mixture_ref(samples: torch.Tensor, centres: torch.Tensor, scaling: float, budget: int) -> torch.Tensor:
    """log (1/T) Σ_t exp(−‖s − μ_t‖² / (2 scaling)) per sample (the NumPy estimator: dsr.analysis.dstsp).

    samples (F, Sm, N), centres (F, G, T, N) -> (F, G, Sm); blocks of at most ~budget distances. The
    exponent −(‖μ‖² − 2 s·μ) / (2 scaling) comes from one ``baddbmm``; −‖s‖² / (2 scaling) is added after.
    """
    F, Sm = samples.shape[:2]
    G, T = centres.shape[1:3]
    c = -0.5 / scaling
    s_sq = (samples**2).sum(-1) * c  # (F, Sm)
    c_sq = (centres**2).sum(-1) * c  # (F, G, T)
    out = torch.empty(F, G, Sm, dtype=samples.dtype, device=samples.device)
    gb = max(1, min(G, budget // (Sm * T)))
    fb = max(1, budget // (G * Sm * T)) if gb == G else 1
    for f in range(0, F, fb):
        sl = slice(f, f + fb)
        for g in range(0, G, gb):
            mu = centres[sl, g:g + gb].flatten(1, 2)  # (fb, gb*T, N)
            a = torch.baddbmm(c_sq[sl, g:g + gb].flatten(1)[:, None, :], samples[sl], mu.transpose(1, 2),
                              alpha=-2.0 * c)  # (fb, Sm, gb*T)
            a = a.view(a.shape[0], Sm, -1, T)  # (fb, Sm, gb, T)
            m = a.amax(-1, keepdim=True)  # (fb, Sm, gb, 1) the nearest centre
            lse = a.sub_(m).exp_().sum(-1).log_() + m[..., 0]  # (fb, Sm, gb)
            out[sl, g:g + gb] = lse.transpose(1, 2)  # (fb, gb, Sm)
    return out + s_sq[:, None, :] - math.log(T)



"""The generalized-teacher-forcing recurrence: the training hot loop.

``gtf_rollout_ref`` is the plain-PyTorch version (differentiable by autograd);
``gtf_rollout`` is the single dispatch point: it picks the fused Triton kernel
(:mod:`dsr.ops.gtf_triton`) on CUDA for shallow PLRNNs and falls back to the
plain-PyTorch twins elsewhere.

Recurrence (Volkmann et al., NeurIPS 2024; reference code github humml-lab/GTF-ConvSSM), for a sequence of T̃+1 targets d_0 … d_T̃:

    z_0 = init(d_0)
    z_t = F(z̃_{t−1}, s_{t−1})                  t = 1 … T̃
    z̃_t = z_t + a_t ⊙ (d_t − z_t)              on the forced units

where ``a_t`` is α (weak / adaptive forcing), 1 every τ steps (sparse forcing)
or 0 (no forcing), and 0 wherever the target is NaN. The un-forced states
z_1 … z_T̃ are returned (they are what the decoder sees), or, per fit with
``forced`` = 1, the forced states z̃_1 … z̃_T̃ (``train.loss_states = "forced"``,
what the reference code's loss decodes: humml-lab/GTF-ConvSSM
src/tf_training/forcing.jl ``force`` overwrites the state in place).

``grad_mix`` (S,) sets, per fit, how the gradient treats a forced output: 1 (the default, = ``forced``)
differentiates z̃_t exactly; 0 passes the output's gradient to z_t unchanged, as if the loss had decoded
z_t (``train.loss_states = "reference"``: forced values, free-state gradient). The latter is what the
reference code's Zygote gradient computes: the in-place ``force`` (custom rrule, forcing.jl) is invisible
to the array the loss reads, so the loss term reaches z_t unscaled and the targets not at all.
"""
from __future__ import annotations

from typing import Callable

import torch

from dsr.ops import kernel_module

StepFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def forcing_weights(d: torch.Tensor, alpha: torch.Tensor, M: int, mode: str, interval: int = 1):
    """Per-step forcing weight and weighted target, padded to M units.

    Parameters
    ----------
    d : Tensor (S, B, T, Mf)
        Latent targets, NaN where unreliable.
    alpha : Tensor (S,)
        Forcing strength per subject (ignored for sparse forcing).
    M : int
        Latent dimension (Mf ≤ M units are forced).
    mode : {"weak", "adaptive", "sparse", "none"}
    interval : int
        τ of sparse forcing.

    Returns
    -------
    a, ad : Tensor (S, B, T, M)
        ``z̃ = z (1 − a) + ad``.
    """
    S, B, T, Mf = d.shape
    finite = torch.isfinite(d)  # (S, B, T, Mf)
    d0 = torch.where(finite, d, torch.zeros((), dtype=d.dtype, device=d.device))
    if mode == "sparse":
        on = (torch.arange(T, device=d.device) % interval == 0).to(d.dtype)  # (T,)
        a = finite.to(d.dtype) * on[None, None, :, None]  # (S, B, T, Mf)
    elif mode == "none":
        a = torch.zeros_like(d0)
    else:
        a = finite.to(d.dtype) * alpha[:, None, None, None]  # (S, B, T, Mf)
    if Mf < M:
        pad = (0, M - Mf)
        a, d0 = torch.nn.functional.pad(a, pad), torch.nn.functional.pad(d0, pad)
    return a, a * d0


def gtf_rollout_ref(step: StepFn, z0: torch.Tensor, a: torch.Tensor, ad: torch.Tensor,
                    inputs: torch.Tensor | None = None, forced: torch.Tensor | None = None,
                    grad_mix: torch.Tensor | None = None) -> torch.Tensor:
    """Forced rollout in plain PyTorch.

    Parameters
    ----------
    step : callable
        One latent step ``(z (S, B, M), s (S, B, P) or None) → (S, B, M)``.
    z0 : Tensor (S, B, M)
        Initial state (from the first target).
    a, ad : Tensor (S, B, T̃+1, M)
        Forcing weights and weighted targets from :func:`forcing_weights`.
    inputs : Tensor (S, B, T̃+1, P) or None
        External inputs; ``inputs[:, :, t-1]`` drives the step into t.
    forced : Tensor (S,) or None
        Per fit 0 (return z_t) or 1 (return z̃_t); None: all 0.
    grad_mix : Tensor (S,) or None
        Per fit 1 (differentiate z̃_t exactly) or 0 (gradient as for z_t); None: equal to ``forced``.

    Returns
    -------
    Tensor (S, B, T̃, M)
        Un-forced states z_1 … z_T̃ (forced states z̃_t for fits with ``forced`` = 1).
    """
    T1 = a.shape[2]
    zt = z0
    out = []
    f = None if forced is None else forced.to(z0.dtype).view(-1, 1, 1)  # (S, 1, 1)
    g = f if grad_mix is None or f is None else grad_mix.to(z0.dtype).view(-1, 1, 1)  # (S, 1, 1)
    for t in range(1, T1):
        z = step(zt, None if inputs is None else inputs[:, :, t - 1])  # (S, B, M)
        zt = z * (1 - a[:, :, t]) + ad[:, :, t]  # (S, B, M)
        if f is None:
            out.append(z)
        else:  # the value z + f (z̃ − z); its gradient sees only g (z̃ − z)
            out.append(z + g * (zt - z) + ((f - g) * (zt - z)).detach())
    return torch.stack(out, dim=2)


def _triton_kernel():
    """The fused kernel module, or None where Triton is absent or disabled (``DSR_DISABLE_TRITON=1``)."""
    return kernel_module("gtf_triton")


def gtf_rollout(step: StepFn, z0, a, ad, inputs=None, model_kind: str | None = None, params=None,
                forced: torch.Tensor | None = None, grad_mix: torch.Tensor | None = None):
    """The one dispatch point for the forced rollout.

    Shallow PLRNNs on CUDA without external inputs take the fused Triton kernel
    (:mod:`dsr.ops.gtf_triton`) when Triton imports, the tensors are float32 and
    the hidden layer fits the kernel's one-tile path (next_pow2(M) · next_pow2(L)
    ≤ 2048, e.g. M ≤ 16 with L ≤ 128, M ≤ 32 with L ≤ 64): there it beats the
    twin on an H100. The L-tiled path (M ≤ 128, L ≤ 4096) is slower than the
    twin at (M, L) = (100, 1000), S = 16, so dispatch leaves those sizes to the
    twin for now. Other shallow PLRNN calls take the
    hand-differentiated loop (:mod:`dsr.ops.gtf_shallow`, the kernel's twin);
    other models take the autograd reference :func:`gtf_rollout_ref`.
    ``DSR_DISABLE_TRITON=1`` forces the twin. ``forced`` (S,) of 0/1 picks per fit
    which states come back, ``grad_mix`` (S,) how their gradient is taken (see :func:`gtf_rollout_ref`);
    every path supports both.
    """
    if model_kind in ("shPLRNN", "cshPLRNN") and params is not None:
        clipped = model_kind == "cshPLRNN"
        if z0.is_cuda and inputs is None and (kernel := _triton_kernel()) is not None \
                and kernel.supported(params, z0, a, inputs, ad) and kernel.fits_one_tile(*params["W1"].shape[1:]):
            with torch.cuda.device(z0.device):  # launch on the tensors' GPU, not the current one
                return kernel.gtf_rollout_triton(params, z0, a, ad, None, clipped=clipped, forced=forced,
                                                 grad_mix=grad_mix)
        from dsr.ops.gtf_shallow import gtf_rollout_shallow

        return gtf_rollout_shallow(params, z0, a, ad, inputs, clipped=clipped, forced=forced, grad_mix=grad_mix)
    return gtf_rollout_ref(step, z0, a, ad, inputs, forced=forced, grad_mix=grad_mix)


def gtf_rollout_weak_ref(params, z0, d, alpha, clipped: bool = True, forced: torch.Tensor | None = None):
    """Weakly forced rollout of a (clipped) shallow PLRNN from the targets d (S, B, T̃+1, N ≤ M) and α (S,):
    :func:`forcing_weights` then the hand-differentiated twin (the twin of
    :func:`dsr.ops.gtf_triton.gtf_rollout_triton_weak`)."""
    from dsr.ops.gtf_shallow import gtf_rollout_shallow

    a, ad = forcing_weights(d, alpha, params["W1"].shape[1], "weak")
    return gtf_rollout_shallow(params, z0, a, ad, None, clipped=clipped, forced=forced)


def gtf_rollout_weak(step: StepFn, z0, d, alpha, M: int, inputs=None, model_kind: str | None = None, params=None,
                     forced: torch.Tensor | None = None):
    """Weak (or adaptive) forcing rollout from the targets d (S, B, T̃+1, Mf) and α (S,): on CUDA, for
    shallow PLRNNs the fused kernel makes the forcing weights itself (:func:`dsr.ops.gtf_triton.
    gtf_rollout_triton_weak`, no a / ad tensors); on a CPU the columns form gets them as columns
    (:func:`dsr.ops.gtf_shallow_columns.weak_columns`) where d needs no gradient; elsewhere
    :func:`forcing_weights` and :func:`gtf_rollout`."""
    if model_kind in ("shPLRNN", "cshPLRNN") and params is not None and z0.is_cuda and inputs is None \
            and (kernel := _triton_kernel()) is not None and kernel.fits_one_tile(*params["W1"].shape[1:]) \
            and kernel.supported_weak(params, z0, d, alpha):
        with torch.cuda.device(z0.device):
            return kernel.gtf_rollout_triton_weak(params, z0, d, alpha, clipped=model_kind == "cshPLRNN",
                                                  forced=forced)
    if model_kind in ("shPLRNN", "cshPLRNN") and params is not None and z0.device.type == "cpu" and inputs is None \
            and not d.requires_grad:  # the CPU form takes its forcing weights as columns, made in one go
        from dsr.ops.gtf_shallow_columns import rollout_columns, weak_columns

        keep, adc = weak_columns(d, alpha, M)  # (T̃+1, S, M, B)
        return rollout_columns(params, z0, keep, adc, None, model_kind == "cshPLRNN", forced)
    a, ad = forcing_weights(d, alpha, M, "weak")
    return gtf_rollout(step, z0, a, ad, inputs, model_kind, params, forced=forced)

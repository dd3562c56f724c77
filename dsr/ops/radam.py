"""The guarded RAdam update of S stacked fits over flat parameter buffers: the optimiser hot loop.

``guarded_radam_ref`` is the plain-PyTorch twin; ``guarded_radam`` is the dispatch point that takes the
fused Triton kernel (:mod:`dsr.ops.radam_triton`, one launch for all parameters of the stack) for
float32 CUDA buffers. Both do, in place, what the training step used to do in ~150 small launches:

1. RAdam (Liu et al., ICLR 2020, "On the variance of the adaptive learning rate and beyond"; the
   elementwise form of ``torch.optim.RAdam``) for every fit with ``use`` = finite loss & active, at
   learning rate ``lr_epoch · lr_factor[s]`` and with the fit's own step count;
2. the NaN guard: a fit that was active and whose loss or updated parameters are not all finite is
   rolled back to its last good parameters, moments and step count, its ``lr_factor`` is multiplied by
   ``nan_lr_factor``, its ``retries`` grow by one, and it stays active while ``retries ≤ nan_retries``;
3. the epoch bookkeeping: ``losses += loss`` and ``n_ok += 1`` for fits with ``use``.

Layout: every parameter tensor k of the stack is a contiguous (S, n_k) block of one flat buffer,
block after block (``segments`` row k = (offset of the block, n_k, 1 if the parameter got a gradient
else 0)); gradients, moments and the roll-back copies use the same layout. A parameter without a
gradient is left alone by RAdam (as ``torch.optim`` skips it) but still checked for finiteness.
"""
from __future__ import annotations

import logging

import torch

from dsr.ops import kernel_module

log = logging.getLogger(__name__)


def _radam_scalars(step: torch.Tensor, b1: float, b2: float):
    """Per-fit step size factors from the step counts (S,) float64: (adapt_scale, plain_scale, bc2_sqrt, 1/bc1)."""
    t = step.clamp(min=1)  # (S,)
    rho_inf = 2 / (1 - b2) - 1
    b2t = b2 ** t
    rho = rho_inf - 2 * t * b2t / (1 - b2t)  # (S,)
    rect = torch.sqrt(((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)).clamp(min=0))
    adapt_scale = torch.where(rho > 5.0, rect, torch.zeros_like(rect))  # (S,) factor on the adaptive step
    plain_scale = torch.where(rho > 5.0, torch.zeros_like(rect), torch.ones_like(rect))  # (S,) un-rectified
    return adapt_scale, plain_scale, torch.sqrt(1 - b2t), 1 / (1 - b1 ** t)


def guarded_radam_ref(p, g, m, v, good_p, good_m, good_v, segments, step, good_step, loss, lr_epoch, lr_factor,
                      retries, active, losses, n_ok, b1=0.9, b2=0.999, eps=1e-8, nan_lr_factor=0.5,
                      nan_retries=3) -> None:
    """Guarded RAdam step in plain PyTorch, everything updated in place (see the module docstring).

    Parameters
    ----------
    p, g, m, v : Tensor (P,)
        Flat parameters, gradients, first and second moments (P = Σ_k S · n_k).
    good_p, good_m, good_v : Tensor (P,)
        The roll-back copies (last good epoch).
    segments : Tensor (n_seg, 3) int64
        Per parameter block: offset in the flat buffers, n_k (entries per fit), has-gradient flag.
    step, good_step : Tensor (S,) float64
        RAdam step counts, now and at the last good epoch.
    loss : Tensor (S,)
        This step's per-fit losses.
    lr_epoch : Tensor (1,) float64
        The scheduled learning rate.
    lr_factor, retries, active, losses, n_ok : Tensor (S,)
        float64, int64, bool, float64, float64: the guard's per-fit state.
    b1, b2, eps : float
        RAdam constants.
    nan_lr_factor : float
        Learning-rate factor applied at every roll-back.
    nan_retries : int
        Roll-backs after which a fit stops.
    """
    S = step.shape[0]
    finite = torch.isfinite(loss)  # (S,)
    use = finite & active  # (S,)
    lr = lr_epoch * lr_factor  # (S,) float64
    step.add_(use.to(step.dtype))
    adapt_scale, plain_scale, bc2_sqrt, inv_bc1 = _radam_scalars(step, b1, b2)
    step_size = lr * inv_bc1  # (S,)
    dt = p.dtype
    ok = finite.clone()  # (S,) loss and parameters finite
    blocks = []
    for off, n, has_grad in segments.tolist():
        sl = slice(off, off + S * n)
        pk, mk, vk, gk = (x[sl].view(S, n) for x in (p, m, v, g))  # (S, n_k)
        blocks.append((sl, n))
        if has_grad:
            act = use[:, None]  # (S, 1)
            mk.copy_(torch.where(act, b1 * mk + (1 - b1) * gk, mk))
            vk.copy_(torch.where(act, b2 * vk + (1 - b2) * gk * gk, vk))
            adapt = bc2_sqrt.to(dt)[:, None] / (vk.sqrt() + eps)  # (S, n_k)
            scale = adapt_scale.to(dt)[:, None] * adapt + plain_scale.to(dt)[:, None]
            upd = step_size.to(dt)[:, None] * mk * scale
            pk.sub_(torch.where(act, upd, torch.zeros((), dtype=dt, device=p.device)))
        ok &= torch.isfinite(pk).all(1)
    bad = active & ~ok  # (S,)
    if p.device.type != "cpu" or bool(bad.any()):  # a CPU skips the roll-back when no fit needs one (a captured
        for sl, n in blocks:                       # GPU graph cannot branch on it)
            for x, good in ((p, good_p), (m, good_m), (v, good_v)):
                xk = x[sl].view(S, n)
                xk.copy_(torch.where(bad[:, None], good[sl].view(S, n), xk))
    step.copy_(torch.where(bad, good_step, step))
    retries.add_(bad.to(retries.dtype))
    lr_factor.copy_(torch.where(bad, lr_factor * nan_lr_factor, lr_factor))
    active.copy_(active & (retries <= nan_retries))
    losses.add_(torch.where(use, loss.to(losses.dtype), torch.zeros_like(losses)))
    n_ok.add_(use.to(n_ok.dtype))


def supported(p: torch.Tensor, step: torch.Tensor) -> bool:
    """Whether the fused kernel takes this call (float32 CUDA buffers)."""
    return p.is_cuda and p.dtype == torch.float32 and step.device == p.device


_KERNEL_FAILED: list[str] = []  # set once the kernel failed to compile or launch; the twin runs from then on


def guarded_radam(p, g, m, v, good_p, good_m, good_v, segments, step, good_step, loss, lr_epoch, lr_factor,
                  retries, active, losses, n_ok, b1=0.9, b2=0.999, eps=1e-8, nan_lr_factor=0.5,
                  nan_retries=3) -> None:
    """Dispatch: the fused Triton kernel for float32 CUDA buffers, the twin otherwise (same contract)."""
    args = (p, g, m, v, good_p, good_m, good_v, segments, step, good_step, loss, lr_epoch, lr_factor,
            retries, active, losses, n_ok)
    kw = dict(b1=b1, b2=b2, eps=eps, nan_lr_factor=nan_lr_factor, nan_retries=nan_retries)
    if supported(p, step) and not _KERNEL_FAILED and (k := kernel_module("radam_triton")) is not None:
        try:  # a compile failure happens before the launch, so nothing has been written yet
            with torch.cuda.device(p.device):
                k.guarded_radam_triton(*args, **kw)
            return
        except Exception as exc:  # noqa: BLE001 - one log line, then the twin for the rest of the run
            _KERNEL_FAILED.append(f"{type(exc).__name__}: {exc}")
            log.warning("fused RAdam kernel failed (%s); using the PyTorch twin", _KERNEL_FAILED[0].splitlines()[0])
    guarded_radam_ref(*args, **kw)

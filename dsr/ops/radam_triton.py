"""Fused Triton kernel for the guarded RAdam update of S stacked fits: one launch for the whole stack.

Computes what :func:`dsr.ops.radam.guarded_radam_ref` computes (its twin, same signature; the contract
is in :mod:`dsr.ops.radam`): one program per fit, which

1. computes the fit's RAdam factors from its step count in float64 (Liu et al., ICLR 2020; β^t by
   repeated squaring, so only float64 multiplies, divisions and square roots are needed),
2. walks every parameter block of the fit (``segments``), updating moments and parameters where the
   fit's loss is finite and the fit is active, and counts non-finite updated parameters,
3. if the fit must roll back, copies its last good parameters, moments and step count back,
4. updates the guard's per-fit state (retries, learning-rate factor, active flag, loss sums).

Runs on CUDA, or on CPU tensors under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 512  # parameter entries per inner iteration


@triton.jit
def _powi(base, e):
    """base ** e for a float64 base and an int64 exponent e ≥ 0, by squaring and multiplying (float64
    multiplies only: no transcendental function in double precision)."""
    result = base * 0.0 + 1.0
    while e > 0:
        result = tl.where((e & 1) == 1, result * base, result)
        base = base * base
        e = e >> 1
    return result


@triton.jit
def _guarded_radam_kernel(p_ptr, g_ptr, m_ptr, v_ptr, gp_ptr, gm_ptr, gv_ptr, seg_ptr, n_seg,
                          step_ptr, gstep_ptr, loss_ptr, lr_ptr, lrf_ptr, retries_ptr, active_ptr, losses_ptr,
                          nok_ptr, consts_ptr, b1, one_m_b1, b2, one_m_b2, eps, nan_retries, S,
                          BLOCK: tl.constexpr):
    s = tl.program_id(0).to(tl.int64)
    rb = tl.arange(0, BLOCK)
    loss = tl.load(loss_ptr + s)
    finite = tl.abs(loss) <= 3.4028234663852886e38  # False for NaN and ±inf
    act_flag = tl.load(active_ptr + s) != 0
    use = finite & act_flag
    use_f = use.to(tl.float64)
    # per-fit RAdam factors in float64, as the twin computes them
    b1_64 = tl.load(consts_ptr + 0)
    b2_64 = tl.load(consts_ptr + 1)
    rho_inf = tl.load(consts_ptr + 2)
    nan_lr_factor = tl.load(consts_ptr + 3)
    step = tl.load(step_ptr + s) + use_f
    t = tl.maximum(step, 1.0)
    t_int = t.to(tl.int64)  # step counts are whole numbers
    b2t = _powi(b2_64, t_int)
    rho = rho_inf - 2.0 * t * b2t / (1.0 - b2t)
    r2 = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
    rect = tl.sqrt(tl.maximum(r2, 0.0))
    adaptive = rho > 5.0
    adapt_scale = tl.where(adaptive, rect, 0.0).to(tl.float32)
    plain_scale = tl.where(adaptive, 0.0, 1.0).to(tl.float32)
    bc2_sqrt = tl.sqrt(1.0 - b2t).to(tl.float32)
    lrf = tl.load(lrf_ptr + s)
    step_size = (tl.load(lr_ptr) * lrf / (1.0 - _powi(b1_64, t_int))).to(tl.float32)
    n_bad = tl.zeros((BLOCK,), dtype=tl.int32)
    for k in range(0, n_seg):
        off = tl.load(seg_ptr + 3 * k)
        n = tl.load(seg_ptr + 3 * k + 1)
        upd_on = use & (tl.load(seg_ptr + 3 * k + 2) != 0)
        base = off + s * n
        for j in range(0, n, BLOCK):
            idx = base + j + rb
            mask = (j + rb) < n
            pv = tl.load(p_ptr + idx, mask=mask, other=0.0)
            if upd_on:
                gv = tl.load(g_ptr + idx, mask=mask, other=0.0)
                mv = b1 * tl.load(m_ptr + idx, mask=mask, other=0.0) + one_m_b1 * gv
                vv = b2 * tl.load(v_ptr + idx, mask=mask, other=0.0) + one_m_b2 * gv * gv
                adapt = bc2_sqrt / (tl.sqrt(vv) + eps)
                pv = pv - step_size * mv * (adapt_scale * adapt + plain_scale)
                tl.store(m_ptr + idx, mv, mask=mask)
                tl.store(v_ptr + idx, vv, mask=mask)
                tl.store(p_ptr + idx, pv, mask=mask)
            n_bad += (mask & ~(tl.abs(pv) <= 3.4028234663852886e38)).to(tl.int32)
    bad = act_flag & ~(finite & (tl.sum(n_bad, axis=0) == 0))
    if bad:  # roll the fit back to its last good epoch
        tl.debug_barrier()
        for k in range(0, n_seg):
            off = tl.load(seg_ptr + 3 * k)
            n = tl.load(seg_ptr + 3 * k + 1)
            base = off + s * n
            for j in range(0, n, BLOCK):
                idx = base + j + rb
                mask = (j + rb) < n
                tl.store(p_ptr + idx, tl.load(gp_ptr + idx, mask=mask), mask=mask)
                tl.store(m_ptr + idx, tl.load(gm_ptr + idx, mask=mask), mask=mask)
                tl.store(v_ptr + idx, tl.load(gv_ptr + idx, mask=mask), mask=mask)
        step = tl.load(gstep_ptr + s)
        lrf = lrf * nan_lr_factor
    tl.store(step_ptr + s, step)
    tl.store(lrf_ptr + s, lrf)
    retries = tl.load(retries_ptr + s) + bad.to(tl.int64)
    tl.store(retries_ptr + s, retries)
    tl.store(active_ptr + s, (act_flag & (retries <= nan_retries)).to(tl.uint8))
    tl.store(losses_ptr + s, tl.load(losses_ptr + s) + tl.where(use, loss.to(tl.float64), 0.0))
    tl.store(nok_ptr + s, tl.load(nok_ptr + s) + use_f)


_CONSTS: dict = {}  # (b1, b2, nan_lr_factor, device) → float64 constants on the device (made once, outside graphs)


def guarded_radam_triton(p, g, m, v, good_p, good_m, good_v, segments, step, good_step, loss, lr_epoch, lr_factor,
                         retries, active, losses, n_ok, b1=0.9, b2=0.999, eps=1e-8, nan_lr_factor=0.5,
                         nan_retries=3) -> None:
    """Same as :func:`dsr.ops.radam.guarded_radam_ref` (see there), one kernel launch."""
    S = step.shape[0]
    key = (b1, b2, nan_lr_factor, p.device)
    if key not in _CONSTS:
        _CONSTS[key] = torch.tensor([b1, b2, 2 / (1 - b2) - 1, nan_lr_factor],
                                    dtype=torch.float64, device=p.device)
    for x in (p, g, m, v, good_p, good_m, good_v, segments, step, good_step, loss, lr_factor, retries, active,
              losses, n_ok):
        if not x.is_contiguous():
            raise ValueError("guarded_radam_triton needs contiguous buffers (it updates them in place)")
    _guarded_radam_kernel[(S,)](p, g, m, v, good_p, good_m, good_v, segments, segments.shape[0],
                                step, good_step, loss, lr_epoch, lr_factor, retries, active.view(torch.uint8),
                                losses, n_ok, _CONSTS[key], float(b1), float(1 - b1), float(b2), float(1 - b2),
                                float(eps), int(nan_retries), S, BLOCK=BLOCK, num_warps=4)

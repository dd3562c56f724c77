"""The split backward of the fused GTF rollout: a time loop that does only the dependency chain, then the
weight gradients as one parallel reduction over all steps.

The fused backward (:func:`dsr.ops.gtf_triton_kernels._gtf_bwd_kernel`) does five matmul products per step, of
which only two are on the chain from dL/dz̃_t to dL/dz̃_{t−1}: g φ-gradient ``gφ = g W1`` and
``g̃ ← g ⊙ A + (gφ ⊙ slope) W2``. The other three (the recomputed pre-activation p_t, and the
weight-gradient products gᵀ φ_t and gpᵀ z̃_{t−1}) cost issue slots in a loop whose programs are few per
multiprocessor. Here:

``_gtf_bwd_chain_kernel`` (one program per fit and block of ``BLOCK_B`` sequences, the time loop inside)
    runs t = T̃ … 1 with the two chain products only and writes g_t = dL/dz_t (S, B, T̃, M). The
    activation's slope dφ/dp_t comes from what the forward stored, rows padded to BLOCK_L (``SLOPE`` 1: int8
    slopes, a quarter of a float32 p_t; 2: p_t itself in float32, the cheapest store for the forward), or is
    recomputed from z̃_{t−1} (``SLOPE`` 0: one more product, off the chain).
``_gtf_bwd_weights_kernel`` (one program per fit and block of rows, rows = the B·T̃ (sequence, step) pairs)
    recomputes p_t = z̃_{t−1} W2ᵀ, φ_t and gφ_t = g_t W1 from the M-sized z̃_{t−1} and g_t (no L-sized
    tensor goes through memory) and accumulates dL/dW1 = Σ gᵀ φ, dL/dW2 = Σ (gφ ⊙ slope)ᵀ z̃,
    dL/dh2 = Σ gφ ⊙ 1[p + h2 > 0], dL/dA = Σ g ⊙ z̃ and dL/dh1 = Σ g into per-program partial sums
    (one flat buffer per program, ``[W1 | W2 | h2 | A | h1]`` each for all S fits).

The twin is the same loop / after-the-loop split of :class:`dsr.ops.gtf_shallow._ShallowGTF` (its backward
already forms the weight gradients with batched matmuls after the loop). One tile only (BLOCK_M · BLOCK_L ≤
2048); :mod:`dsr.ops.gtf_triton` picks this backward or the fused one (``DSR_GTF_BACKWARD``).
"""
from __future__ import annotations

import triton
import triton.language as tl

from dsr.ops.gtf_triton_kernels import _act, _dot3, _forcing_a, _hi_lo, _mm


@triton.jit
def _slope(slope_ptr, zprev_ptr, off_sl, off_z, mask_sl, mask_bm, w2t, h2,
           CLIPPED: tl.constexpr, PRECISION: tl.constexpr, SLOPE: tl.constexpr):
    """dφ/dp_t (BB, BL): from the forward's int8 slopes (SLOPE 1) or its float32 p_t (SLOPE 2), or recomputed
    from z̃_{t−1} (SLOPE 0)."""
    if SLOPE == 1:
        slope = tl.load(slope_ptr + off_sl, mask=mask_sl, other=0).to(tl.float32)
    elif SLOPE == 2:
        pre = tl.load(slope_ptr + off_sl, mask=mask_sl, other=0.0)
        act, slope, on = _act(pre, h2[None, :], CLIPPED)
    else:
        zp = tl.load(zprev_ptr + off_z, mask=mask_bm, other=0.0)  # z̃_{t−1} (BB, BM)
        pre = tl.dot(zp, w2t, input_precision=PRECISION)  # (BB, BL)
        act, slope, on = _act(pre, h2[None, :], CLIPPED)
    return slope


@triton.jit
def _gtf_bwd_chain_kernel(gout_ptr, slope_ptr, zprev_ptr, a_ptr, al_ptr, A_ptr, W1_ptr, W2_ptr, h2_ptr, f_ptr,
                          gz0_ptr, gad_ptr, gz_ptr, B, T1, M, L, CIN,
                          CLIPPED: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_L: tl.constexpr,
                          PREFETCH: tl.constexpr, NEED_GAD: tl.constexpr, MIX: tl.constexpr, PRECISION: tl.constexpr,
                          FROM_D: tl.constexpr, SLOPE: tl.constexpr, SPLIT: tl.constexpr = 0):
    s = tl.program_id(0)
    rb = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,) sequence index
    rm = tl.arange(0, BLOCK_M)  # (BM,)
    rl = tl.arange(0, BLOCK_L)  # (BL,)
    mb, mm, ml = rb < B, rm < M, rl < L
    mask_bm = mb[:, None] & mm[None, :]  # (BB, BM)
    mask_ml = mm[:, None] & ml[None, :]  # (BM, BL)
    T = T1 - 1
    s64 = s.to(tl.int64)
    A = tl.load(A_ptr + s64 * M + rm, mask=mm, other=0.0)  # (BM,)
    fs = 0.0
    if MIX:  # 1: the loss saw this fit's forced states
        fs = tl.load(f_ptr + s64)
    alpha = 0.0
    if FROM_D:  # al_ptr holds α (S,)
        alpha = tl.load(al_ptr + s64)
    seq_in = (s64 * B + rb[:, None]) * T1 * CIN + rm[None, :]  # (BB, BM) into a (or d) at t = 0
    mask_in = mb[:, None] & (rm < CIN)[None, :]
    seq_out = (s64 * B + rb[:, None]) * T * M + rm[None, :]  # (BB, BM) into gout, zprev, gz at t = 1
    seq_sl = (s64 * B + rb[:, None]) * T * BLOCK_L + rl[None, :]  # (BB, BL) into the slopes (rows padded to BL)
    mask_sl = mb[:, None]  # (BB, 1): rows only, constant along a row (vector loads; padded columns hold 0)
    W1_s, W2_s = W1_ptr + s64 * M * L, W2_ptr + s64 * L * M
    w1 = tl.load(W1_s + rm[:, None] * L + rl[None, :], mask=mask_ml, other=0.0)  # (BM, BL)
    w2t = tl.load(W2_s + rl[None, :] * M + rm[:, None], mask=mask_ml, other=0.0)  # (BM, BL) = W2ᵀ
    w2 = tl.trans(w2t)  # (BL, BM)
    w1_hi, w1_lo = _hi_lo(w1)  # used with SPLIT (three TF32 products, weights split once)
    w2_hi, w2_lo = _hi_lo(w2)
    h2 = tl.load(h2_ptr + s64 * L + rl, mask=ml, other=0.0)  # (BL,), used only when recomputing
    gc = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)  # dL/dz̃_t from the future
    a_n = _forcing_a(a_ptr, seq_in + T * CIN, mask_in, alpha, FROM_D)  # step T̃'s inputs
    go_n = tl.load(gout_ptr + seq_out + (T - 1) * M, mask=mask_bm, other=0.0)
    sl_n = _slope(slope_ptr, zprev_ptr, seq_sl + (T - 1) * BLOCK_L, seq_out + (T - 1) * M, mask_sl, mask_bm, w2t, h2,
                  CLIPPED, PRECISION, SLOPE)
    for i in range(0, T):
        t = T - i
        if PREFETCH:  # step t−1's loads go out before step t's arithmetic
            a_t, go_t, sl_t = a_n, go_n, sl_n
            tn = tl.maximum(t - 1, 1)
            a_n = _forcing_a(a_ptr, seq_in + tn * CIN, mask_in, alpha, FROM_D)
            go_n = tl.load(gout_ptr + seq_out + (tn - 1) * M, mask=mask_bm, other=0.0)
            sl_n = _slope(slope_ptr, zprev_ptr, seq_sl + (tn - 1) * BLOCK_L, seq_out + (tn - 1) * M, mask_sl, mask_bm,
                          w2t, h2, CLIPPED, PRECISION, SLOPE)
        else:
            a_t = _forcing_a(a_ptr, seq_in + t * CIN, mask_in, alpha, FROM_D)
            go_t = tl.load(gout_ptr + seq_out + (t - 1) * M, mask=mask_bm, other=0.0)
            sl_t = _slope(slope_ptr, zprev_ptr, seq_sl + (t - 1) * BLOCK_L, seq_out + (t - 1) * M, mask_sl, mask_bm,
                          w2t, h2, CLIPPED, PRECISION, SLOPE)
        if MIX:  # dL/dz̃_t gains the loss term; dL/dz_t keeps (1 − f) of it
            gc = gc + fs * go_t
            go_t = go_t - fs * go_t
        if NEED_GAD:
            tl.store(gad_ptr + seq_in + t * CIN, gc, mask=mask_bm)
        g = go_t + gc * (1.0 - a_t)  # dL/dz_t (BB, BM)
        tl.store(gz_ptr + seq_out + (t - 1) * M, g, mask=mask_bm)
        gpre = _mm(g, w1, w1_hi, w1_lo, PRECISION, SPLIT) * sl_t  # dL/dp_t (BB, BL)
        gc = g * A[None, :] + _mm(gpre, w2, w2_hi, w2_lo, PRECISION, SPLIT)  # dL/dz̃_{t−1} (BB, BM)
    tl.store(gz0_ptr + (s64 * B + rb[:, None]) * M + rm[None, :], gc, mask=mask_bm)


@triton.jit
def _gtf_bwd_weights_kernel(zprev_ptr, gz_ptr, W1_ptr, W2_ptr, h2_ptr, part_ptr, R, M, L, ROWS, PSIZE,
                            CLIPPED: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_M: tl.constexpr,
                            BLOCK_L: tl.constexpr, PRECISION: tl.constexpr, SPLIT: tl.constexpr):
    s = tl.program_id(0)
    p = tl.program_id(1)
    rm = tl.arange(0, BLOCK_M)
    rl = tl.arange(0, BLOCK_L)
    rr = tl.arange(0, BLOCK_R)
    mm, ml = rm < M, rl < L
    mask_ml = mm[:, None] & ml[None, :]  # (BM, BL)
    s64 = s.to(tl.int64)
    W1_s, W2_s = W1_ptr + s64 * M * L, W2_ptr + s64 * L * M
    w1 = tl.load(W1_s + rm[:, None] * L + rl[None, :], mask=mask_ml, other=0.0)  # (BM, BL)
    w2t = tl.load(W2_s + rl[None, :] * M + rm[:, None], mask=mask_ml, other=0.0)  # (BM, BL) = W2ᵀ
    w1_hi, w1_lo = _hi_lo(w1)  # SPLIT: the weights split once, outside the row loop
    w2t_hi, w2t_lo = _hi_lo(w2t)
    h2 = tl.load(h2_ptr + s64 * L + rl, mask=ml, other=0.0)  # (BL,)
    gW1 = tl.zeros((BLOCK_M, BLOCK_L), dtype=tl.float32)
    gW2 = tl.zeros((BLOCK_L, BLOCK_M), dtype=tl.float32)
    gh2 = tl.zeros((BLOCK_L,), dtype=tl.float32)
    gA = tl.zeros((BLOCK_M,), dtype=tl.float32)
    gh1 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    base = s64 * R * M
    for r0 in range(0, ROWS, BLOCK_R):  # ROWS: a multiple of BLOCK_R
        r = p * ROWS + r0 + rr  # (BR,) rows (sequence, step) of this fit
        mask_rm = (r < R)[:, None] & mm[None, :]  # (BR, BM)
        off = base + r[:, None] * M + rm[None, :]
        zp = tl.load(zprev_ptr + off, mask=mask_rm, other=0.0)  # z̃_{t−1} (BR, BM)
        g = tl.load(gz_ptr + off, mask=mask_rm, other=0.0)  # dL/dz_t (BR, BM); 0 on masked rows
        if SPLIT:  # three TF32 products per matmul, every operand split once
            zp_hi, zp_lo = _hi_lo(zp)
            g_hi, g_lo = _hi_lo(g)
            zero = tl.zeros((BLOCK_R, BLOCK_L), dtype=tl.float32)
            pre = _dot3(zp_hi, zp_lo, w2t_hi, w2t_lo, zero)  # (BR, BL)
            act, slope, on = _act(pre, h2[None, :], CLIPPED)
            gact = _dot3(g_hi, g_lo, w1_hi, w1_lo, zero)  # dL/dφ_t (BR, BL)
            act_hi, act_lo = _hi_lo(act)
            gW1 = _dot3(tl.trans(g_hi), tl.trans(g_lo), act_hi, act_lo, gW1)  # (BM, BL)
            gp_hi, gp_lo = _hi_lo(tl.trans(gact * slope))  # (BL, BR)
            gW2 = _dot3(gp_hi, gp_lo, zp_hi, zp_lo, gW2)  # (BL, BM)
        else:
            pre = tl.dot(zp, w2t, input_precision=PRECISION)  # (BR, BL)
            act, slope, on = _act(pre, h2[None, :], CLIPPED)
            gact = tl.dot(g, w1, input_precision=PRECISION)  # dL/dφ_t (BR, BL)
            gW1 += tl.dot(tl.trans(g), act, input_precision=PRECISION)  # (BM, BL)
            gW2 += tl.dot(tl.trans(gact * slope), zp, input_precision=PRECISION)  # (BL, BM)
        gh2 += tl.sum(gact * on, axis=0)
        gA += tl.sum(g * zp, axis=0)
        gh1 += tl.sum(g, axis=0)
    # partial sums laid out [dW1 (S, M, L) | dW2 (S, L, M) | dh2 (S, L) | dA (S, M) | dh1 (S, M)] per program p,
    # so that the sum over programs (or, for one program, the buffer itself) splits into contiguous gradients
    S = tl.num_programs(0).to(tl.int64)
    out = part_ptr + p * S * PSIZE
    tl.store(out + s64 * M * L + rm[:, None] * L + rl[None, :], gW1, mask=mask_ml)
    out += S * M * L
    tl.store(out + s64 * L * M + rl[:, None] * M + rm[None, :], gW2, mask=ml[:, None] & mm[None, :])
    out += S * L * M
    tl.store(out + s64 * L + rl, gh2, mask=ml)
    out += S * L
    tl.store(out + s64 * M + rm, gA, mask=mm)
    tl.store(out + S * M + s64 * M + rm, gh1, mask=mm)

"""The Triton kernels of the fused GTF rollout: forward and backward programs and their helpers.

The recurrence, its backward, the launch grid and the twin are described in :mod:`dsr.ops.gtf_triton`,
which launches these kernels (one program per fit and block of ``BLOCK_B`` sequences, the time loop
inside). ``FROM_D`` kernels read the targets d and α instead of the forcing weights a and ad and make
the weak-forcing weights on the fly (``CIN`` = channels of the arrays read: M for a / ad, N for d).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _act(pre, h2, CLIPPED: tl.constexpr):
    """φ(p) and its slope dφ/dp, and 1[p + h2 > 0] (for dL/dh2)."""
    on = (pre + h2 > 0).to(tl.float32)
    act = tl.maximum(pre + h2, 0.0)
    if CLIPPED:
        act = act - tl.maximum(pre, 0.0)
        slope = on - (pre > 0).to(tl.float32)
    else:
        slope = on
    return act, slope, on


@triton.jit
def _hi_lo(x):
    """x = hi + lo with hi x's first 10 mantissa bits (a TF32 value) and lo the exact float32 rest."""
    hi = (x.to(tl.int32, bitcast=True) & -8192).to(tl.float32, bitcast=True)  # -8192 = 0xFFFFE000
    return hi, x - hi


@triton.jit
def _dot3(a_hi, a_lo, b_hi, b_lo, acc):
    """acc + a b from three TF32 products of split operands (the small ones first), as "tf32x3" does, but
    with each operand split once by the caller, however many products it enters."""
    acc = tl.dot(a_lo, b_hi, acc, input_precision="tf32")
    acc = tl.dot(a_hi, b_lo, acc, input_precision="tf32")
    return tl.dot(a_hi, b_hi, acc, input_precision="tf32")


@triton.jit
def _mm(a, b, b_hi, b_lo, PRECISION: tl.constexpr, SPLIT: tl.constexpr):
    """a b: with SPLIT, three TF32 products with b split beforehand (outside the time loop) and a here;
    otherwise one tl.dot at PRECISION."""
    if SPLIT:
        a_hi, a_lo = _hi_lo(a)
        out = _dot3(a_hi, a_lo, b_hi, b_lo, tl.zeros((a.shape[0], b.shape[1]), dtype=tl.float32))
    else:
        out = tl.dot(a, b, input_precision=PRECISION)
    return out


@triton.jit
def _forcing(a_ptr, ad_ptr, off, mask, alpha, FROM_D: tl.constexpr):
    """(a_t, ad_t) at ``off``: loaded, or (FROM_D, weak forcing) made from the targets d at ``a_ptr`` and the
    fit's α as in :func:`dsr.ops.gtf.forcing_weights`: a = α, ad = α d where d is finite, else 0."""
    if FROM_D:
        dv = tl.load(a_ptr + off, mask=mask, other=0.0)
        fin = mask & (tl.abs(dv) <= 3.4028234663852886e38)  # False for NaN, ±inf and masked lanes
        a_t = tl.where(fin, alpha, 0.0)
        ad_t = tl.where(fin, alpha * dv, 0.0)
    else:
        a_t = tl.load(a_ptr + off, mask=mask, other=0.0)
        ad_t = tl.load(ad_ptr + off, mask=mask, other=0.0)
    return a_t, ad_t


@triton.jit
def _forcing_a(a_ptr, off, mask, alpha, FROM_D: tl.constexpr):
    """a_t at ``off`` (see :func:`_forcing`)."""
    if FROM_D:
        dv = tl.load(a_ptr + off, mask=mask, other=0.0)
        a_t = tl.where(mask & (tl.abs(dv) <= 3.4028234663852886e38), alpha, 0.0)
    else:
        a_t = tl.load(a_ptr + off, mask=mask, other=0.0)
    return a_t


@triton.jit
def _gtf_fwd_kernel(z0_ptr, a_ptr, ad_ptr, A_ptr, W1_ptr, W2_ptr, h1_ptr, h2_ptr, out_ptr, zprev_ptr, f_ptr,
                    slope_ptr, B, T1, M, L, CIN,
                    CLIPPED: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_L: tl.constexpr,
                    N_LC: tl.constexpr, PREFETCH: tl.constexpr, MIX: tl.constexpr, PRECISION: tl.constexpr,
                    FROM_D: tl.constexpr, STORE_SLOPE: tl.constexpr, SPLIT: tl.constexpr = 0):
    # STORE_SLOPE (one tile only), for the split backward (dsr.ops.gtf_triton_split): also write, rows padded
    # to BLOCK_L (S, B, T̃, BLOCK_L) so the stores need no column mask and go out as vectors, the activation's
    # slope dφ/dp_t (−1, 0 or 1) as int8 (1) or the pre-activation p_t in float32 (2)
    s = tl.program_id(0)
    rb = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,) sequence index
    rm = tl.arange(0, BLOCK_M)  # (BM,)
    rl = tl.arange(0, BLOCK_L)  # (BL,)
    mb, mm = rb < B, rm < M
    mask_bm = mb[:, None] & mm[None, :]  # (BB, BM)
    T = T1 - 1
    s64 = s.to(tl.int64)
    A = tl.load(A_ptr + s64 * M + rm, mask=mm, other=0.0)  # (BM,)
    h1 = tl.load(h1_ptr + s64 * M + rm, mask=mm, other=0.0)  # (BM,)
    fs = 0.0
    if MIX:  # 1: this fit's output is the forced state
        fs = tl.load(f_ptr + s64)
    z = tl.load(z0_ptr + (s64 * B + rb[:, None]) * M + rm[None, :], mask=mask_bm, other=0.0)  # (BB, BM)
    seq_in = (s64 * B + rb[:, None]) * T1 * CIN + rm[None, :]  # (BB, BM) offsets into a, ad (or d) at t = 0
    mask_in = mb[:, None] & (rm < CIN)[None, :]  # (BB, BM) channels of a, ad (or d)
    alpha = 0.0
    if FROM_D:  # ad_ptr holds α (S,)
        alpha = tl.load(ad_ptr + s64)
    seq_out = (s64 * B + rb[:, None]) * T * M + rm[None, :]  # (BB, BM) offsets into out, zprev at t = 1
    W1_s, W2_s, h2_s = W1_ptr + s64 * M * L, W2_ptr + s64 * L * M, h2_ptr + s64 * L
    if N_LC == 1:
        ml = rl < L
        mask_ml = mm[:, None] & ml[None, :]  # (BM, BL)
        w2t = tl.load(W2_s + rl[None, :] * M + rm[:, None], mask=mask_ml, other=0.0)  # (BM, BL) = W2ᵀ
        w1t = tl.trans(tl.load(W1_s + rm[:, None] * L + rl[None, :], mask=mask_ml, other=0.0))  # (BL, BM)
        h2 = tl.load(h2_s + rl, mask=ml, other=0.0)  # (BL,)
        w2t_hi, w2t_lo = _hi_lo(w2t)  # used with SPLIT (three TF32 products, weights split once)
        w1t_hi, w1t_lo = _hi_lo(w1t)
        seq_sl = (s64 * B + rb[:, None]) * T * BLOCK_L + rl[None, :]  # (BB, BL) into the slopes at t = 1
        mask_b = mb[:, None]  # (BB, 1): rows only, constant along a row (vector stores)
        a_n, ad_n = _forcing(a_ptr, ad_ptr, seq_in + CIN, mask_in, alpha, FROM_D)  # step 1's forcing (BB, BM)
        for t in range(1, T1):
            if PREFETCH:  # issue step t+1's loads before step t's arithmetic, off the dependency chain
                a_t, ad_t = a_n, ad_n
                tn = tl.minimum(t + 1, T1 - 1)
                a_n, ad_n = _forcing(a_ptr, ad_ptr, seq_in + tn * CIN, mask_in, alpha, FROM_D)
            tl.store(zprev_ptr + seq_out + (t - 1) * M, z, mask=mask_bm)
            pre = _mm(z, w2t, w2t_hi, w2t_lo, PRECISION, SPLIT)  # (BB, BL)
            act, slope, on = _act(pre, h2[None, :], CLIPPED)
            if STORE_SLOPE == 1:  # −1, 0 or 1 from the comparisons themselves (no float conversion)
                sl8 = (pre + h2[None, :] > 0).to(tl.int8)
                if CLIPPED:
                    sl8 = sl8 - (pre > 0).to(tl.int8)
                tl.store(slope_ptr + seq_sl + (t - 1) * BLOCK_L, sl8, mask=mask_b)
            elif STORE_SLOPE == 2:
                tl.store(slope_ptr + seq_sl + (t - 1) * BLOCK_L, pre, mask=mask_b)
            znew = A[None, :] * z + h1[None, :] + _mm(act, w1t, w1t_hi, w1t_lo, PRECISION, SPLIT)  # (BB, BM)
            if not PREFETCH:
                a_t, ad_t = _forcing(a_ptr, ad_ptr, seq_in + t * CIN, mask_in, alpha, FROM_D)
            z = znew * (1.0 - a_t) + ad_t
            if MIX:
                tl.store(out_ptr + seq_out + (t - 1) * M, znew + fs * (z - znew), mask=mask_bm)
            else:
                tl.store(out_ptr + seq_out + (t - 1) * M, znew, mask=mask_bm)
    else:
        for t in range(1, T1):
            tl.store(zprev_ptr + seq_out + (t - 1) * M, z, mask=mask_bm)
            acc = A[None, :] * z + h1[None, :]  # (BB, BM)
            for c in range(N_LC):
                lc = c * BLOCK_L + rl  # (BL,)
                ml = lc < L
                mask_ml = mm[:, None] & ml[None, :]
                w2t = tl.load(W2_s + lc[None, :] * M + rm[:, None], mask=mask_ml, other=0.0)  # (BM, BL)
                w1t = tl.trans(tl.load(W1_s + rm[:, None] * L + lc[None, :], mask=mask_ml, other=0.0))
                h2 = tl.load(h2_s + lc, mask=ml, other=0.0)
                pre = tl.dot(z, w2t, input_precision=PRECISION)  # (BB, BL)
                act, slope, on = _act(pre, h2[None, :], CLIPPED)
                acc += tl.dot(act, w1t, input_precision=PRECISION)
            a_t, ad_t = _forcing(a_ptr, ad_ptr, seq_in + t * CIN, mask_in, alpha, FROM_D)
            z = acc * (1.0 - a_t) + ad_t
            if MIX:
                tl.store(out_ptr + seq_out + (t - 1) * M, acc + fs * (z - acc), mask=mask_bm)
            else:
                tl.store(out_ptr + seq_out + (t - 1) * M, acc, mask=mask_bm)


@triton.jit
def _gtf_bwd_kernel(gout_ptr, zprev_ptr, a_ptr, al_ptr, A_ptr, W1_ptr, W2_ptr, h2_ptr, f_ptr,
                    gz0_ptr, gad_ptr, gz_ptr, gA_ptr, gh1_ptr, gW1_ptr, gW2_ptr, gh2_ptr,
                    B, T1, M, L, NB, CIN,
                    CLIPPED: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_L: tl.constexpr,
                    N_LC: tl.constexpr, PREFETCH: tl.constexpr, NEED_GAD: tl.constexpr, MIX: tl.constexpr,
                    PRECISION: tl.constexpr, FROM_D: tl.constexpr):
    s = tl.program_id(0)
    pb = tl.program_id(1)
    rb = pb * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,)
    rm = tl.arange(0, BLOCK_M)
    rl = tl.arange(0, BLOCK_L)
    mb, mm = rb < B, rm < M
    mask_bm = mb[:, None] & mm[None, :]  # (BB, BM)
    T = T1 - 1
    s64 = s.to(tl.int64)
    part = s64 * NB + pb  # this program's slot in the per-program partial sums
    A = tl.load(A_ptr + s64 * M + rm, mask=mm, other=0.0)  # (BM,)
    fs = 0.0
    if MIX:  # 1: the loss saw this fit's forced states
        fs = tl.load(f_ptr + s64)
    seq_in = (s64 * B + rb[:, None]) * T1 * CIN + rm[None, :]
    mask_in = mb[:, None] & (rm < CIN)[None, :]
    alpha = 0.0
    if FROM_D:
        alpha = tl.load(al_ptr + s64)
    seq_out = (s64 * B + rb[:, None]) * T * M + rm[None, :]
    W1_s, W2_s, h2_s = W1_ptr + s64 * M * L, W2_ptr + s64 * L * M, h2_ptr + s64 * L
    gc = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)  # dL/dz̃_t from the future
    gA = tl.zeros((BLOCK_M,), dtype=tl.float32)
    gh1 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    if N_LC == 1:
        ml = rl < L
        mask_ml = mm[:, None] & ml[None, :]
        w2t = tl.load(W2_s + rl[None, :] * M + rm[:, None], mask=mask_ml, other=0.0)  # (BM, BL) = W2ᵀ
        w1 = tl.load(W1_s + rm[:, None] * L + rl[None, :], mask=mask_ml, other=0.0)  # (BM, BL)
        w2 = tl.trans(w2t)  # (BL, BM)
        h2 = tl.load(h2_s + rl, mask=ml, other=0.0)  # (BL,)
        gW1 = tl.zeros((BLOCK_M, BLOCK_L), dtype=tl.float32)
        gW2 = tl.zeros((BLOCK_L, BLOCK_M), dtype=tl.float32)
        gh2 = tl.zeros((BLOCK_L,), dtype=tl.float32)
        a_n = _forcing_a(a_ptr, seq_in + T * CIN, mask_in, alpha, FROM_D)  # step T̃'s inputs, (BB, BM)
        go_n = tl.load(gout_ptr + seq_out + (T - 1) * M, mask=mask_bm, other=0.0)
        zp_n = tl.load(zprev_ptr + seq_out + (T - 1) * M, mask=mask_bm, other=0.0)
        for i in range(0, T):
            t = T - i
            if PREFETCH:  # step t−1's loads go out before step t's arithmetic
                a_t, go_t, zp = a_n, go_n, zp_n
                tn = tl.maximum(t - 1, 1)
                a_n = _forcing_a(a_ptr, seq_in + tn * CIN, mask_in, alpha, FROM_D)
                go_n = tl.load(gout_ptr + seq_out + (tn - 1) * M, mask=mask_bm, other=0.0)
                zp_n = tl.load(zprev_ptr + seq_out + (tn - 1) * M, mask=mask_bm, other=0.0)
            else:
                a_t = _forcing_a(a_ptr, seq_in + t * CIN, mask_in, alpha, FROM_D)
                go_t = tl.load(gout_ptr + seq_out + (t - 1) * M, mask=mask_bm, other=0.0)
                zp = tl.load(zprev_ptr + seq_out + (t - 1) * M, mask=mask_bm, other=0.0)  # z̃_{t−1} (BB, BM)
            if MIX:  # dL/dz̃_t gains the loss term; dL/dz_t keeps (1 − f) of it
                gc = gc + fs * go_t
                go_t = go_t - fs * go_t
            if NEED_GAD:
                tl.store(gad_ptr + seq_in + t * CIN, gc, mask=mask_bm)
            g = go_t + gc * (1.0 - a_t)
            gA += tl.sum(g * zp, axis=0)
            gh1 += tl.sum(g, axis=0)
            pre = tl.dot(zp, w2t, input_precision=PRECISION)  # (BB, BL)
            act, slope, on = _act(pre, h2[None, :], CLIPPED)
            gact = tl.dot(g, w1, input_precision=PRECISION)  # (BB, BL)
            gpre = gact * slope
            gh2 += tl.sum(gact * on, axis=0)
            gW1 += tl.dot(tl.trans(g), act, input_precision=PRECISION)  # (BM, BL)
            gW2 += tl.dot(tl.trans(gpre), zp, input_precision=PRECISION)  # (BL, BM)
            gc = g * A[None, :] + tl.dot(gpre, w2, input_precision=PRECISION)  # (BB, BM)
        tl.store(gW1_ptr + part * M * L + rm[:, None] * L + rl[None, :], gW1, mask=mask_ml)
        tl.store(gW2_ptr + part * L * M + rl[:, None] * M + rm[None, :], gW2,
                 mask=ml[:, None] & mm[None, :])
        tl.store(gh2_ptr + part * L + rl, gh2, mask=ml)
    else:
        for i in range(0, T):
            t = T - i
            go_t = tl.load(gout_ptr + seq_out + (t - 1) * M, mask=mask_bm, other=0.0)
            if MIX:
                gc = gc + fs * go_t
                go_t = go_t - fs * go_t
            if NEED_GAD:
                tl.store(gad_ptr + seq_in + t * CIN, gc, mask=mask_bm)
            a_t = _forcing_a(a_ptr, seq_in + t * CIN, mask_in, alpha, FROM_D)
            g = go_t + gc * (1.0 - a_t)
            tl.store(gz_ptr + seq_out + (t - 1) * M, g, mask=mask_bm)
            zp = tl.load(zprev_ptr + seq_out + (t - 1) * M, mask=mask_bm, other=0.0)
            gA += tl.sum(g * zp, axis=0)
            gh1 += tl.sum(g, axis=0)
            acc = g * A[None, :]
            for c in range(N_LC):
                lc = c * BLOCK_L + rl
                ml = lc < L
                mask_ml = mm[:, None] & ml[None, :]
                w2t = tl.load(W2_s + lc[None, :] * M + rm[:, None], mask=mask_ml, other=0.0)  # (BM, BL)
                w1 = tl.load(W1_s + rm[:, None] * L + lc[None, :], mask=mask_ml, other=0.0)  # (BM, BL)
                h2 = tl.load(h2_s + lc, mask=ml, other=0.0)
                pre = tl.dot(zp, w2t, input_precision=PRECISION)  # (BB, BL)
                act, slope, on = _act(pre, h2[None, :], CLIPPED)
                gpre = tl.dot(g, w1, input_precision=PRECISION) * slope  # (BB, BL)
                acc += tl.dot(gpre, tl.trans(w2t), input_precision=PRECISION)
            gc = acc
    tl.store(gz0_ptr + (s64 * B + rb[:, None]) * M + rm[None, :], gc, mask=mask_bm)
    tl.store(gA_ptr + part * M + rm, gA, mask=mm)
    tl.store(gh1_ptr + part * M + rm, gh1, mask=mm)

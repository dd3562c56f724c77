"""Fused Triton kernel for the forced rollout of the (clipped) shallow PLRNN.

Computes exactly what :func:`dsr.ops.gtf_shallow.gtf_rollout_shallow` computes
(its plain-PyTorch twin, same signature), for S subjects × B sequences in one
launch: one program per (subject, block of ``BLOCK_B`` sequences), the whole
time loop inside the kernel.

Forward, t = 1 … T̃ (z̃_0 = z0), per program:
    p_t  = z̃_{t−1} W2ᵀ                                   (BLOCK_B, L)
    φ_t  = ReLU(p_t + h2) − ReLU(p_t)     (cshPLRNN; ReLU(p_t + h2) for shPLRNN)
    z_t  = A ⊙ z̃_{t−1} + φ_t W1ᵀ + h1                    (BLOCK_B, M)
    z̃_t  = z_t ⊙ (1 − a_t) + ad_t
The forward stores the output, z_t (or, for fits with ``forced`` = 1, z̃_t:
``train.loss_states = "forced"``, see :mod:`dsr.ops.gtf_shallow`), and z̃_{t−1}
(for the backward).

Backward, t = T̃ … 1 (g̃ = dL/dz̃_t from the future, 0 at t = T̃; f = ``forced``):
    g̃ ← g̃ + f gout_t;   dL/d ad_t = g̃;   g = dL/dz_t = (1 − f) gout_t + g̃ ⊙ (1 − a_t)
    gφ = g W1;  gp = gφ ⊙ slope(p_t);  g̃ ← g ⊙ A + gp W2
and dL/dz0 = g̃ at the end. With ``grad_mix`` (S,) the backward uses it as f instead of ``forced``
(0 with ``forced`` = 1: ``train.loss_states = "reference"``, the forced values with the free-state
gradient; the forward kernel is unchanged). Weight gradients, when the hidden layer fits in one tile
(``BLOCK_M * BLOCK_L ≤ _ONE_TILE``): by default (``DSR_GTF_BACKWARD=split``, :mod:`dsr.ops.gtf_triton_split`)
the time loop does only the two products on the chain and writes dL/dz_t, and one parallel kernel then
forms the weight gradients over all steps, as the twin does after its loop (the forward stores the
activation's slopes as int8 for it; ``split_pre`` stores p_t, ``split_recompute`` nothing); ``fused`` (session 6)
accumulates them in registers inside the loop, as per-program partials summed over sequence blocks in
PyTorch. With L tiled in chunks inside each step the kernel writes dL/dz_t and the weight gradients are
formed afterwards by batched matmuls, as in the twin.

Matmuls: three TF32 tensor-core products by default (``tf32x3``, about float32 accuracy; in the one-tile
forward, chain loop and weight-gradient kernel each operand is split into its TF32 part and float32 rest once,
the weights outside the time loop, ``SPLIT``); ``DSR_GTF_PRECISION=ieee`` keeps float32 FMA, ``tf32`` one TF32
product (:func:`precision`).
Sizes: M ≤ ``MAX_M`` (128), L ≤ ``MAX_L`` (4096), float32 only, no external inputs (``C s``):
:func:`supported` says whether a call can take the kernel.
Runs on CUDA, or on CPU tensors under ``TRITON_INTERPRET=1`` (set before this
module is imported). Uses only APIs present in Triton 3.0–3.9.
"""
from __future__ import annotations

import functools
import os

import triton
import torch

from dsr.ops import fused_step
from dsr.ops.gtf_triton_kernels import _gtf_bwd_kernel, _gtf_fwd_kernel
from dsr.ops.gtf_triton_split import _gtf_bwd_chain_kernel, _gtf_bwd_weights_kernel

MAX_M = 128
MAX_L = 4096
BLOCK_B = 16  # sequences per program (tl.dot needs ≥ 16 rows)
_ONE_TILE = 2048  # BLOCK_M * BLOCK_L up to which weights and their gradients live in registers
_MAX_TILE = 8192  # largest BLOCK_M * BLOCK_L tile of the L-tiled path (128 × 128 runs out of shared memory)


def _blocks(M: int, L: int, block_l: int | None):
    """Block sizes: (BLOCK_M, BLOCK_L, number of L chunks)."""
    BM = max(16, triton.next_power_of_2(M))
    if block_l is None:
        BL = max(16, triton.next_power_of_2(L))
        if BM * BL > _ONE_TILE:  # tile L; 32 × 128 with 8 warps measured best at (M, L) = (100, 1000) on an H100
            BL = max(16, min(64, _MAX_TILE // 2 // BM))
    else:
        BL = max(16, triton.next_power_of_2(block_l))
        if BM * BL > _MAX_TILE:
            raise ValueError(f"block_l={block_l} too large for M={M} (BLOCK_M * BLOCK_L ≤ {_MAX_TILE})")
    return BM, BL, triton.cdiv(L, BL)


def fits_one_tile(M: int, L: int) -> bool:
    """Whether the whole hidden layer is one register tile (the fast path; dispatch uses the kernel then)."""
    return max(16, triton.next_power_of_2(M)) * max(16, triton.next_power_of_2(L)) <= _ONE_TILE


def _num_warps(BM: int, BL: int) -> int:
    """Warps per program: more for large weight tiles."""
    return 4 if BM * BL <= _ONE_TILE else 8


def _default_precision() -> str:
    """"tf32x3", or "ieee" on a current CUDA device without TF32 tensor cores (compute capability < 8.0)."""
    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        if torch.cuda.get_device_capability()[0] < 8:
            return "ieee"
    return "tf32x3"


def precision(var: str = "DSR_GTF_PRECISION", default: str | None = None) -> str:
    """Matmul precision of the kernels' tl.dot: "tf32x3" (default: three TF32 tensor-core products, about
    float32 accuracy; on an H200, 1020 stacked fits train at 1.11 against 1.61 ms per step with "ieee", the
    parameters after 300 steps within 6e-4 relative of the float32 path's, the order of two float32 kernels'
    summation orders: benchmarks/RESULTS.md, Session 9; with the operands split once, session 10: 0.97 ms),
    "ieee" (float32 FMA) or "tf32";
    ``DSR_GTF_PRECISION``, read at every launch. GPUs without TF32 tensor cores (before Ampere) default to
    "ieee"."""
    default = default or _default_precision()
    p = os.environ.get(var, default) or default
    if p not in ("ieee", "tf32x3", "tf32"):
        raise ValueError(f"{var} must be ieee, tf32x3 or tf32, got {p!r}")
    return p


def weights_precision() -> str:
    """Matmul precision of the split backward's weight-gradient kernel: ``DSR_GTF_WEIGHTS_PRECISION``, by
    default that of the other kernels. Its products are off the recurrence (an error in one does not travel
    through time), so TF32 there costs accuracy only in dL/dW1, dL/dW2 and dL/dh2: with "tf32x3" about float32's,
    with plain "tf32" up to 17 % of the largest entry of dL/dW2 (measured on an H200, session 9)."""
    return precision("DSR_GTF_WEIGHTS_PRECISION", precision())


BACKWARDS = ("split", "split_pre", "split_recompute", "fused")
_SLOPE = {"split": 1, "split_pre": 2, "split_recompute": 0}  # what the forward stores for the split loop


def backward_kind(n_programs: int = 1, n_sms: int = 1) -> str:
    """Which backward the one-tile kernels run (``DSR_GTF_BACKWARD``, read at every forward): "split"
    (the forward stores the int8 slopes dφ/dp_t, a time loop does only the two chain products and writes
    dL/dz_t, a parallel kernel then forms the weight gradients; :mod:`dsr.ops.gtf_triton_split`),
    "split_pre" (the forward stores p_t in float32: fewer forward instructions, 4× the bytes),
    "split_recompute" (the loop recomputes p_t, nothing stored), "fused" (session 6: one loop with all five
    products per step, weight gradients accumulated in registers), or "auto" (default): "split", except with
    float32-FMA products ("ieee") when the ``n_programs`` recurrence programs exceed one wave on the ``n_sms``
    multiprocessors. Measured on an H200 (benchmarks/RESULTS.md, Session 9, host staging off the step):
    one model at (16, 50) split 0.64 against fused 0.85 ms; 1020 fits with tf32x3 products split 1.16
    against fused 1.44 ms, with ieee products fused 1.66 against split 1.73 ms."""
    b = os.environ.get("DSR_GTF_BACKWARD", "auto") or "auto"
    if b == "auto":
        return "split" if n_programs <= n_sms or precision() != "ieee" else "fused"
    if b not in BACKWARDS:
        raise ValueError(f"DSR_GTF_BACKWARD must be one of auto, {', '.join(BACKWARDS)}, got {b!r}")
    return b


# Launch overrides; benchmarks/gtf_kernel_tune.py and step_limit.py set them to compare variants on a GPU
# ("chain": the split backward's time loop; "weights": its weight-gradient kernel, e.g. BLOCK_R, SPLIT,
# PROGRAMS_PER_SM, maxnreg; "fwd" and "chain" also take SPLIT).
TUNING: dict[str, dict] = {"fwd": {}, "bwd": {}, "chain": {}, "weights": {}}
# weight-gradient kernel: rows (sequence, step) per iteration, and warps per matmul precision: the fewest
# SASS instructions per row that keep ≥ 4 programs per multiprocessor (benchmarks/gtf_kernel_sass.py,
# (M, L) = (16, 50): per 16 rows 2962 for ieee at 2 warps, 2776 for tf32x3 and 1216 for tf32 at 4 warps)
BLOCK_R = 16
WEIGHTS_WARPS = {"ieee": 2, "tf32x3": 4, "tf32": 4}


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    """Multiprocessors of a CUDA device (4 for the interpreter on CPU)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def _launch_options(which: str, BM: int, BL: int, n_programs: int, device: torch.device) -> dict:
    """Launch options of the forward, fused backward or split backward's loop ("fwd", "bwd", "chain"):
    num_warps, PREFETCH, optionally maxnreg.

    One-tile sizes: 4 warps while there are at most as many programs as multiprocessors (each step's
    latency is what counts); with more programs, fewer warps per program (1 forward, 2 backward) do
    the same work with less synchronisation and more programs resident. On an H100 at (M, L) =
    (16, 50), S = 1024 this took the forward from 3.0 to 1.7 ms and the backward from 2.5 to 2.2 ms;
    prefetching the next step's loads took S = 1 from 0.51 to 0.42 ms forward
    (benchmarks/results/gtf_kernel_tune.json). The split backward's loop has the forward's shape (two
    products, both on the chain) and takes its setting (not yet timed against 2 warps).
    """
    nw = _num_warps(BM, BL)
    if nw == 4 and n_programs > _sm_count(device):
        nw = 2 if which == "bwd" else 1
    opts = {"num_warps": nw, "PREFETCH": True, "PRECISION": precision()}
    if which in ("fwd", "chain"):  # SPLIT: tf32x3 with the weights split once, outside the time loop
        opts["SPLIT"] = 1
    opts.update(TUNING.get(which, {}))
    if "SPLIT" in opts:
        opts["SPLIT"] = int(opts["SPLIT"] and opts["PRECISION"] == "tf32x3")
    return opts


def _activation(pre, h2, clipped):
    act = torch.relu(pre + h2)
    return act - torch.relu(pre) if clipped else act


class _TritonGTF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z0, a, ad, A, W1, W2, h1, h2, clipped, block_l, forced, from_d, grad_mix):
        # from_d: a = targets d (S, B, T̃+1, N ≤ M), ad = α (S,); weak forcing made inside the kernels
        S, B, T1, CIN = a.shape
        M, L = A.shape[1], W1.shape[2]
        z0, a, ad, A, W1, W2, h1, h2 = (x.contiguous() for x in (z0, a, ad, A, W1, W2, h1, h2))
        mix = forced is not None
        f = forced.to(device=z0.device, dtype=torch.float32).contiguous() if mix else A  # (S,); A: unused
        BM, BL, n_lc = _blocks(M, L, block_l)
        out = torch.empty(S, B, T1 - 1, M, dtype=z0.dtype, device=z0.device)  # z_1 … z_T̃
        zprev = torch.empty_like(out)  # z̃_0 … z̃_{T̃-1}
        n_prog = S * triton.cdiv(B, BLOCK_B)  # the recurrence's programs
        bwd = backward_kind(n_prog, _sm_count(z0.device)) if n_lc == 1 else "fused"  # L-tiled: its own backward
        store = _SLOPE.get(bwd, 0)  # 1: int8 slopes dφ/dp_t, 2: float32 p_t (rows padded to BL)
        slope = torch.empty(S, B, T1 - 1, BL if store else 0, dtype=torch.int8 if store == 1 else torch.float32,
                            device=z0.device)
        grid = (S, triton.cdiv(B, BLOCK_B))
        _gtf_fwd_kernel[grid](z0, a, ad, A, W1, W2, h1, h2, out, zprev, f, slope, B, T1, M, L, CIN,
                              CLIPPED=bool(clipped), BLOCK_B=BLOCK_B, BLOCK_M=BM, BLOCK_L=BL, N_LC=n_lc, MIX=mix,
                              FROM_D=bool(from_d), STORE_SLOPE=store,
                              **_launch_options("fwd", BM, BL, grid[0] * grid[1], z0.device))
        # the backward's f (S,): grad_mix where given (train.loss_states = "reference"), else forced
        fb = f if not mix or grad_mix is None else grad_mix.to(device=z0.device, dtype=torch.float32).contiguous()
        ctx.save_for_backward(zprev, a, ad if from_d else A, A, W1, W2, h2, fb, slope)
        ctx.meta = (bool(clipped), BM, BL, n_lc, mix, bool(from_d), bwd)
        return out

    @staticmethod
    def backward(ctx, gout):
        zprev, a, al, A, W1, W2, h2, f, slope = ctx.saved_tensors
        clipped, BM, BL, n_lc, mix, from_d, bwd = ctx.meta
        S, B, T1, CIN = a.shape
        M, L = A.shape[1], W1.shape[2]
        NB = triton.cdiv(B, BLOCK_B)
        gout = gout.contiguous()
        kw = dict(dtype=torch.float32, device=a.device)
        gz0 = torch.empty(S, B, M, **kw)
        need_gad = ctx.needs_input_grad[2] and not from_d  # targets depend on parameters (e.g. a regressor decoder)
        gad = torch.zeros(S, B, T1, M, **kw) if need_gad else torch.empty(0, **kw)  # dL/d ad_0 = 0
        if bwd != "fused":
            grads = _split_backward(gout, zprev, slope, a, al, A, W1, W2, h2, f, gz0, gad, clipped, BM, BL, mix,
                                    from_d, need_gad, _SLOPE[bwd])
            return (gz0, None, gad if need_gad else None, *grads, None, None, None, None, None)
        gA, gh1 = torch.empty(S, NB, M, **kw), torch.empty(S, NB, M, **kw)  # per-program partials
        one = n_lc == 1
        gz = torch.empty(0, **kw) if one else torch.empty(S, B, T1 - 1, M, **kw)  # dL/dz_t (chunked path)
        gW1 = torch.empty(S, NB, M, L, **kw) if one else torch.empty(0, **kw)
        gW2 = torch.empty(S, NB, L, M, **kw) if one else torch.empty(0, **kw)
        gh2 = torch.empty(S, NB, L, **kw) if one else torch.empty(0, **kw)
        _gtf_bwd_kernel[(S, NB)](gout, zprev, a, al, A, W1, W2, h2, f, gz0, gad, gz, gA, gh1, gW1, gW2, gh2,
                                 B, T1, M, L, NB, CIN, CLIPPED=clipped, BLOCK_B=BLOCK_B, BLOCK_M=BM, BLOCK_L=BL,
                                 N_LC=n_lc, NEED_GAD=need_gad, MIX=mix, FROM_D=from_d,
                                 **_launch_options("bwd", BM, BL, S * NB, a.device))
        views = NB == 1 and fused_step()  # one sequence block: the partials are the sums (views, no launches)
        if one and views:
            gW1, gW2, gh2 = gW1.squeeze(1), gW2.squeeze(1), gh2.squeeze(1)
        elif one:
            gW1, gW2, gh2 = gW1.sum(1), gW2.sum(1), gh2.sum(1)
        else:  # weight gradients over all steps at once, as in the twin
            T = T1 - 1
            zflat = zprev.reshape(S, B * T, M)  # (S, B*T̃, M)
            gzf = gz.reshape(S, B * T, M)  # (S, B*T̃, M)
            pre = torch.bmm(zflat, W2.transpose(1, 2))  # (S, B*T̃, L)
            on = (pre + h2.unsqueeze(1) > 0).to(pre.dtype)
            slope = on - (pre > 0).to(pre.dtype) if clipped else on
            act = _activation(pre, h2.unsqueeze(1), clipped)  # (S, B*T̃, L)
            gact = torch.bmm(gzf, W1)  # (S, B*T̃, L)
            gW1 = torch.bmm(gzf.transpose(1, 2), act)  # (S, M, L)
            gW2 = torch.bmm((gact * slope).transpose(1, 2), zflat)  # (S, L, M)
            gh2 = (gact * on).sum(1)  # (S, L)
        gA, gh1 = (gA.squeeze(1), gh1.squeeze(1)) if views else (gA.sum(1), gh1.sum(1))
        return gz0, None, gad if need_gad else None, gA, gW1, gW2, gh1, gh2, None, None, None, None, None


def _split_backward(gout, zprev, slope, a, al, A, W1, W2, h2, f, gz0, gad, clipped, BM, BL, mix, from_d,
                    need_gad, slope_kind):
    """The split backward (:mod:`dsr.ops.gtf_triton_split`): the chain loop fills gz0 (and gad), then the
    weight-gradient kernel; returns dL/d(A, W1, W2, h1, h2)."""
    S, B, T1, CIN = a.shape
    M, L, T = A.shape[1], W1.shape[2], a.shape[2] - 1
    gz = torch.empty(S, B, T, M, dtype=torch.float32, device=a.device)  # dL/dz_t
    NB = triton.cdiv(B, BLOCK_B)
    _gtf_bwd_chain_kernel[(S, NB)](gout, slope, zprev, a, al, A, W1, W2, h2, f, gz0, gad, gz, B, T1, M, L, CIN,
                                   CLIPPED=clipped, BLOCK_B=BLOCK_B, BLOCK_M=BM, BLOCK_L=BL, NEED_GAD=need_gad,
                                   MIX=mix, FROM_D=from_d, SLOPE=slope_kind,
                                   **_launch_options("chain", BM, BL, S * NB, a.device))
    R = B * T  # rows (sequence, step) per fit
    prec = weights_precision()
    opts = {"BLOCK_R": BLOCK_R, "num_warps": WEIGHTS_WARPS[prec], "PRECISION": prec, "SPLIT": 1,
            "PROGRAMS_PER_SM": 2, **TUNING.get("weights", {})}
    opts["SPLIT"] = int(opts["SPLIT"] and prec == "tf32x3")  # the split operands emulate tf32x3 only
    br, per_sm = opts["BLOCK_R"], opts.pop("PROGRAMS_PER_SM")
    n_prog = max(1, min(triton.cdiv(R, br), triton.cdiv(per_sm * _sm_count(a.device), S)))  # ≥ per_sm per SM
    rows = triton.cdiv(triton.cdiv(R, n_prog), br) * br
    n_prog = triton.cdiv(R, rows)
    size = 2 * M * L + L + 2 * M
    part = torch.empty(n_prog, S * size, dtype=torch.float32, device=a.device)  # per-program partial sums
    _gtf_bwd_weights_kernel[(S, n_prog)](zprev, gz, W1, W2, h2, part, R, M, L, rows, size, CLIPPED=clipped,
                                         BLOCK_M=BM, BLOCK_L=BL, **opts)
    tot = part[0] if n_prog == 1 else part.sum(0)  # (S · size,): one launch, none for one program per fit
    gW1, gW2, gh2, gA, gh1 = tot.split([S * M * L, S * L * M, S * L, S * M, S * M])  # contiguous pieces
    gW1, gW2, gh2, gA, gh1 = gW1.view(S, M, L), gW2.view(S, L, M), gh2.view(S, L), gA.view(S, M), gh1.view(S, M)
    return gA, gW1, gW2, gh1, gh2


def supported(params: dict[str, torch.Tensor], z0: torch.Tensor, a: torch.Tensor,
              inputs: torch.Tensor | None = None, ad: torch.Tensor | None = None) -> bool:
    """Whether :func:`gtf_rollout_triton` handles this call (sizes, dtype, no external inputs)."""
    M, L = params["W1"].shape[1], params["W1"].shape[2]
    tensors = [z0, a] + [params[k] for k in ("A", "W1", "W2", "h1", "h2")] + ([] if ad is None else [ad])
    return (inputs is None and 1 <= M <= MAX_M and 1 <= L <= MAX_L and a.shape[2] >= 2
            and a.shape[0] * a.shape[1] > 0 and all(x.dtype == torch.float32 for x in tensors)
            and len({x.device for x in tensors}) == 1)


def gtf_rollout_triton(params: dict[str, torch.Tensor], z0: torch.Tensor, a: torch.Tensor, ad: torch.Tensor,
                       inputs: torch.Tensor | None = None, clipped: bool = True,
                       block_l: int | None = None, forced: torch.Tensor | None = None,
                       grad_mix: torch.Tensor | None = None) -> torch.Tensor:
    """Forced rollout (S, B, T̃, M) of a (clipped) shallow PLRNN by the fused kernel.

    Parameters
    ----------
    params : dict of str to Tensor
        ``A`` (S, M), ``W1`` (S, M, L), ``W2`` (S, L, M), ``h1`` (S, M), ``h2`` (S, L).
    z0 : Tensor (S, B, M)
        Initial state.
    a, ad : Tensor (S, B, T̃+1, M)
        Forcing weights and weighted targets (:func:`dsr.ops.gtf.forcing_weights`).
    inputs : None
        External inputs are not supported by the kernel; calls with inputs (or
        any call :func:`supported` rejects) go to the twin.
    clipped : bool
        cshPLRNN (True) or shPLRNN (False).
    block_l : int or None
        Hidden-layer tile; None picks one (one tile when it fits). Tests set it
        small to exercise the tiled path.
    forced : Tensor (S,) of 0/1, or None
        Per fit, return the forced states z̃_t instead of z_t (None: all 0).
    grad_mix : Tensor (S,) of 0/1, or None
        Per fit, differentiate the forced states exactly (1) or as free ones (0); None: ``forced``.

    Returns
    -------
    Tensor (S, B, T̃, M)
        Un-forced states z_1 … z_T̃ (forced ones where ``forced`` = 1); differentiable in z0, ad and the parameters
        (not in ``a``, like the twin).
    """
    if not supported(params, z0, a, inputs, ad):
        from dsr.ops.gtf_shallow import gtf_rollout_shallow

        return gtf_rollout_shallow(params, z0, a, ad, inputs, clipped=clipped, forced=forced, grad_mix=grad_mix)
    return _TritonGTF.apply(z0, a, ad, params["A"], params["W1"], params["W2"], params["h1"], params["h2"],
                            clipped, block_l, forced, False, grad_mix)


def supported_weak(params: dict[str, torch.Tensor], z0: torch.Tensor, d: torch.Tensor, alpha: torch.Tensor) -> bool:
    """Whether :func:`gtf_rollout_triton_weak` takes the call: as :func:`supported`, with targets d
    (S, B, T̃+1, N ≤ M) and α (S,) in float32 that need no gradient."""
    M = params["W1"].shape[1]
    return (d.dim() == 4 and 1 <= d.shape[3] <= M and alpha.shape == (d.shape[0],) and supported(params, z0, d)
            and alpha.dtype == torch.float32 and alpha.device == d.device
            and not d.requires_grad and not alpha.requires_grad)


def gtf_rollout_triton_weak(params: dict[str, torch.Tensor], z0: torch.Tensor, d: torch.Tensor,
                            alpha: torch.Tensor, clipped: bool = True,
                            forced: torch.Tensor | None = None) -> torch.Tensor:
    """Weakly forced rollout (S, B, T̃, M) straight from the targets: the forcing weights of
    :func:`dsr.ops.gtf.forcing_weights` (mode "weak", first N units forced, NaN targets unforced) are
    made inside the kernels, so neither a nor ad is written to memory. Twin:
    :func:`dsr.ops.gtf.gtf_rollout_weak_ref`; calls :func:`supported_weak` rejects go there."""
    if not supported_weak(params, z0, d, alpha):
        from dsr.ops.gtf import gtf_rollout_weak_ref

        return gtf_rollout_weak_ref(params, z0, d, alpha, clipped=clipped, forced=forced)
    return _TritonGTF.apply(z0, d, alpha, params["A"], params["W1"], params["W2"], params["h1"], params["h2"],
                            clipped, None, forced, True, None)

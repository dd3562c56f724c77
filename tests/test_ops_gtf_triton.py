"""The fused Triton GTF kernel against its plain-PyTorch twin (outputs and all gradients, float32).

Without CUDA the kernel runs on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``, set by
conftest.py before Triton is imported); with CUDA the same tests run on the GPU. Tolerance: float32, relative
1e-5 of the largest reference entry of each tensor (the two sum the same terms in different orders).
"""
import pytest
import torch

triton = pytest.importorskip("triton")

from dsr.models import latent  # noqa: E402
from dsr.ops import gtf as gtf_mod  # noqa: E402
from dsr.ops import gtf_triton  # noqa: E402
from dsr.ops.gtf import forcing_weights, gtf_rollout  # noqa: E402
from dsr.ops.gtf_shallow import gtf_rollout_shallow  # noqa: E402
from dsr.ops.gtf_triton import gtf_rollout_triton  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RTOL = 1e-5

# (S, B, T̃+1, M, L, block_l): M = 1, non-powers of two, B over one block of 16, the tiled hidden layer
SIZES = [
    (1, 1, 2, 1, 1, None),
    (2, 3, 6, 3, 7, None),
    (3, 17, 5, 5, 50, None),
    (2, 4, 4, 16, 50, None),
    (1, 2, 4, 33, 20, None),
    (2, 5, 5, 6, 50, 16),  # L tiled in chunks of 16 (4 chunks, last one partial)
    (1, 3, 3, 100, 40, None),  # BLOCK_M = 128: tiled by the default choice
    (2, 16, 40, 16, 50, None),  # a longer sequence: sums over many steps
]


def _problem(kind, S, B, T1, M, L, seed=0, mode="weak"):
    gen = torch.Generator().manual_seed(seed)
    p = latent.init_params(kind, S, M, L, gen, dtype=torch.float32)
    if kind == "shPLRNN":  # non-zero h2 so both gates matter
        p["h2"] = torch.randn(S, L, generator=gen) * 0.5
    p = {k: v.to(DEVICE).requires_grad_(True) for k, v in p.items()}
    d = torch.randn(S, B, T1, M, generator=gen)  # (S, B, T̃+1, M)
    d[0, 0, T1 // 2] = float("nan")  # a whole step unreliable
    d[-1, -1, :, 0] = float("nan")  # one unit never forced
    alpha = torch.linspace(0.1, 0.5, S)
    a, ad = forcing_weights(d.to(DEVICE), alpha.to(DEVICE), M, mode, interval=2)
    ad = ad.detach().requires_grad_(True)
    z0 = torch.randn(S, B, M, generator=gen).to(DEVICE).requires_grad_(True)
    w = torch.randn(S, B, T1 - 1, M, generator=gen).to(DEVICE)  # loss weights
    return p, z0, a, ad, w


def _close(got, want, name):
    scale = want.abs().max().item() if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=RTOL, atol=RTOL * max(scale, 1e-6), msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("kind", ["cshPLRNN", "shPLRNN"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "S{}-B{}-T{}-M{}-L{}-bl{}".format(*s))
def test_kernel_matches_twin(kind, size):
    S, B, T1, M, L, block_l = size
    p, z0, a, ad, w = _problem(kind, S, B, T1, M, L, seed=sum(size[:5]))
    clipped = kind == "cshPLRNN"
    assert gtf_triton.supported(p, z0, a)
    fast = gtf_rollout_triton(p, z0, a, ad, None, clipped=clipped, block_l=block_l)
    ref = gtf_rollout_shallow(p, z0, a, ad, None, clipped=clipped)
    assert fast.shape == ref.shape == (S, B, T1 - 1, M)
    _close(fast, ref, "output")
    inputs = [z0, ad] + list(p.values())
    g_fast = torch.autograd.grad((fast * w).sum(), inputs)
    g_ref = torch.autograd.grad((ref * w).sum(), inputs)
    for name, gf, gr in zip(["z0", "ad"] + list(p), g_fast, g_ref):
        _close(gf, gr, name)


@pytest.mark.parametrize("mode", ["sparse", "none"])
def test_kernel_matches_twin_other_forcing(mode):
    p, z0, a, ad, w = _problem("cshPLRNN", 2, 3, 7, 4, 9, seed=3, mode=mode)
    fast = gtf_rollout_triton(p, z0, a, ad)
    ref = gtf_rollout_shallow(p, z0, a, ad)
    _close(fast, ref, "output")
    inputs = [z0, ad] + list(p.values())
    for name, gf, gr in zip(["z0", "ad"] + list(p), torch.autograd.grad((fast * w).sum(), inputs),
                            torch.autograd.grad((ref * w).sum(), inputs)):
        _close(gf, gr, name)


@pytest.mark.parametrize("bwd", gtf_triton.BACKWARDS)
@pytest.mark.parametrize("prefetch", [True, False])
@pytest.mark.parametrize("block_l", [None, 16])
def test_kernel_variants_and_targets_without_grad(prefetch, block_l, bwd, monkeypatch):
    """Both load schedules give the twin's result, under each backward; with targets that need no gradient
    the kernel skips dL/d ad and the other gradients are unchanged."""
    monkeypatch.setenv("DSR_GTF_BACKWARD", bwd)
    monkeypatch.setattr(gtf_triton, "TUNING", {k: {"PREFETCH": prefetch} for k in ("fwd", "bwd", "chain")})
    p, z0, a, ad, w = _problem("cshPLRNN", 2, 5, 9, 6, 40, seed=7)
    ad = ad.detach()  # data targets: no gradient wanted
    fast = gtf_rollout_triton(p, z0, a, ad, block_l=block_l)
    ref = gtf_rollout_shallow(p, z0, a, ad)
    _close(fast, ref, "output")
    inputs = [z0] + list(p.values())
    for name, gf, gr in zip(["z0"] + list(p), torch.autograd.grad((fast * w).sum(), inputs),
                            torch.autograd.grad((ref * w).sum(), inputs)):
        _close(gf, gr, name)


def test_unsupported_calls_fall_back_to_twin():
    p, z0, a, ad, _ = _problem("cshPLRNN", 1, 2, 4, 3, 5)
    s = torch.randn(1, 2, 4, 2, device=DEVICE)
    assert not gtf_triton.supported(p, z0, a, s)  # external inputs
    p64 = {k: v.detach().double() for k, v in p.items()}
    assert not gtf_triton.supported(p64, z0.double(), a.double())  # float64
    out = gtf_rollout_triton(p64, z0.detach().double(), a.double(), ad.detach().double())
    torch.testing.assert_close(out, gtf_rollout_shallow(p64, z0.detach().double(), a.double(),
                                                        ad.detach().double()))


def test_dispatch(monkeypatch):
    p, z0, a, ad, _ = _problem("cshPLRNN", 1, 2, 4, 3, 5)
    calls = []
    real = gtf_triton.gtf_rollout_triton
    monkeypatch.setattr(gtf_triton, "gtf_rollout_triton", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    out = gtf_rollout(None, z0, a, ad, None, "cshPLRNN", p)
    assert len(calls) == (1 if DEVICE == "cuda" else 0)  # the kernel only on CUDA
    monkeypatch.setenv("DSR_DISABLE_TRITON", "1")
    assert gtf_mod._triton_kernel() is None
    twin = gtf_rollout(None, z0, a, ad, None, "cshPLRNN", p)
    assert len(calls) == (1 if DEVICE == "cuda" else 0)
    _close(out, twin, "dispatch")


def test_tile_choice():
    assert gtf_triton.fits_one_tile(16, 50) and gtf_triton.fits_one_tile(3, 50) and gtf_triton.fits_one_tile(1, 1)
    assert not gtf_triton.fits_one_tile(100, 1000) and not gtf_triton.fits_one_tile(16, 200)
    assert gtf_triton._blocks(100, 1000, None) == (128, 32, 32)
    with pytest.raises(ValueError, match="block_l"):
        gtf_triton._blocks(100, 1000, 128)


@pytest.mark.parametrize("block_l", [None, 16])
@pytest.mark.parametrize("kind", ["cshPLRNN", "shPLRNN"])
def test_kernel_matches_twin_forced_outputs(kind, block_l):
    """``forced`` per fit (loss_states "forced" for some fits of a stack): outputs and every gradient,
    dL/d ad included, equal the twin's; fits with 0 equal the plain call."""
    S = 3
    p, z0, a, ad, w = _problem(kind, S, 17, 6, 5, 40, seed=11)
    forced = torch.tensor([1.0, 0.0, 1.0], device=DEVICE)
    clipped = kind == "cshPLRNN"
    fast = gtf_rollout_triton(p, z0, a, ad, clipped=clipped, block_l=block_l, forced=forced)
    ref = gtf_rollout_shallow(p, z0, a, ad, clipped=clipped, forced=forced)
    plain = gtf_rollout_shallow(p, z0, a, ad, clipped=clipped)
    _close(fast, ref, "output")
    _close(fast[1], plain[1], "free fit")
    assert not torch.allclose(fast[0], plain[0])  # the forced fits return other states
    inputs = [z0, ad] + list(p.values())
    for name, gf, gr in zip(["z0", "ad"] + list(p), torch.autograd.grad((fast * w).sum(), inputs),
                            torch.autograd.grad((ref * w).sum(), inputs)):
        _close(gf, gr, name)


# relative tolerance (of the largest reference entry) per matmul precision, (M, L) = (16, 50), 40 steps:
# three TF32 products carry about float32 accuracy; one TF32 product keeps 10 mantissa bits
# tf32 (10-bit mantissa products) measured on an H200: gradients off by up to 8 % of their largest entry
PRECISION_RTOL = {"tf32x3": 1e-5, "tf32": 0.15}


@pytest.mark.parametrize("prec", sorted(PRECISION_RTOL))
def test_kernel_precision_variants(prec, monkeypatch):
    """DSR_GTF_PRECISION picks the kernels' matmul precision; outputs and gradients stay within its
    tolerance of the float32 twin (the interpreter computes float32 products for every setting)."""
    monkeypatch.setenv("DSR_GTF_PRECISION", prec)
    assert gtf_triton.precision() == prec
    p, z0, a, ad, w = _problem("cshPLRNN", 2, 16, 40, 16, 50, seed=11)
    fast = gtf_rollout_triton(p, z0, a, ad)
    ref = gtf_rollout_shallow(p, z0, a, ad)
    tol = PRECISION_RTOL[prec]
    inputs = [z0, ad] + list(p.values())
    pairs = [("output", fast, ref)] + list(zip(["z0", "ad"] + list(p), torch.autograd.grad((fast * w).sum(), inputs),
                                               torch.autograd.grad((ref * w).sum(), inputs)))
    for name, got, want in pairs:
        scale = want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * max(scale, 1e-6), msg=lambda m: f"{name}: {m}")
    monkeypatch.setenv("DSR_GTF_PRECISION", "fp16")
    with pytest.raises(ValueError, match="DSR_GTF_PRECISION"):
        gtf_triton.precision()


def _weak_matches_twin(p, z0, d, alpha, forced, w, label=""):
    """The weak-forcing kernel's output and gradients (of sum(out · w)) against the twin's."""
    from dsr.ops.gtf import gtf_rollout_weak_ref
    from dsr.ops.gtf_triton import gtf_rollout_triton_weak

    fast = gtf_rollout_triton_weak(p, z0, d, alpha, forced=forced)
    ref = gtf_rollout_weak_ref(p, z0, d, alpha, forced=forced)
    _close(fast, ref, "output")
    inputs = [z0] + list(p.values())
    for name, gf, gr in zip(["z0"] + list(p), torch.autograd.grad((fast * w).sum(), inputs),
                            torch.autograd.grad((ref * w).sum(), inputs)):
        _close(gf, gr, f"{label}{name}")


# (S, B, T̃+1, M, N, L): N < M forced units, B over one block, the LEMON-like size
@pytest.mark.parametrize("S,B,T1,M,N,L", [(1, 1, 3, 2, 1, 5), (2, 17, 6, 5, 3, 20), (2, 16, 12, 16, 16, 50)])
@pytest.mark.parametrize("mix", [False, True])
def test_weak_forcing_from_targets_matches_twin(S, B, T1, M, N, L, mix):
    """The kernel making the weak-forcing weights from d and α itself equals forcing_weights + the twin."""
    from dsr.ops.gtf_triton import supported_weak

    gen = torch.Generator().manual_seed(S + B + T1 + M)
    p = {k: v.to(DEVICE).requires_grad_(True) for k, v in
         latent.init_params("cshPLRNN", S, M, L, gen, dtype=torch.float32).items()}
    d = torch.randn(S, B, T1, N, generator=gen)  # (S, B, T̃+1, N)
    d[0, 0, T1 // 2] = float("nan")
    d[-1, -1, :, 0] = float("nan")
    d, alpha = d.to(DEVICE), torch.linspace(0.1, 0.4, S).to(DEVICE)
    z0 = torch.randn(S, B, M, generator=gen).to(DEVICE).requires_grad_(True)
    forced = torch.tensor([float(i % 2) for i in range(S)]).to(DEVICE) if mix else None
    w = torch.randn(S, B, T1 - 1, M, generator=gen).to(DEVICE)
    assert supported_weak(p, z0, d, alpha)
    _weak_matches_twin(p, z0, d, alpha, forced, w)


@pytest.mark.parametrize("block_l", [None, 2])
def test_kernel_matches_twin_reference_gradient(block_l):
    """loss_states "reference" (forced = 1, grad_mix = 0) beside "forced" and "free" fits in one stack:
    the kernel's outputs and gradients (dL/d ad included) equal the twin's."""
    p, z0, a, ad, w = _problem("cshPLRNN", 3, 17, 6, 5, 40, seed=12)
    forced = torch.tensor([1.0, 1.0, 0.0], device=DEVICE)
    grad_mix = torch.tensor([0.0, 1.0, 0.0], device=DEVICE)
    fast = gtf_rollout_triton(p, z0, a, ad, block_l=block_l, forced=forced, grad_mix=grad_mix)
    ref = gtf_rollout_shallow(p, z0, a, ad, forced=forced, grad_mix=grad_mix)
    _close(fast, ref, "output")
    inputs = [z0, ad] + list(p.values())
    for name, gf, gr in zip(["z0", "ad"] + list(p), torch.autograd.grad((fast * w).sum(), inputs),
                            torch.autograd.grad((ref * w).sum(), inputs)):
        _close(gf, gr, name)


# (S, B, T̃+1, M, L): one block and over one block of 16 sequences, a stack whose weight-gradient kernel
# sums partials over programs (few fits) and one where each fit is one program (the partials are the sums)
BACKWARD_SIZES = [(2, 3, 6, 3, 7), (2, 17, 6, 5, 50), (1, 16, 12, 16, 50), (9, 2, 3, 4, 20)]


@pytest.mark.parametrize("bwd", gtf_triton.BACKWARDS)
@pytest.mark.parametrize("kind", ["cshPLRNN", "shPLRNN"])
@pytest.mark.parametrize("size", BACKWARD_SIZES, ids=lambda s: "S{}-B{}-T{}-M{}-L{}".format(*s))
def test_backward_kinds_match_twin(bwd, kind, size, monkeypatch):
    """DSR_GTF_BACKWARD: the split backward (slopes stored or recomputed) and the fused one give the twin's
    gradients, dL/d ad included, with per-fit forced outputs and the reference gradient in one stack."""
    monkeypatch.setenv("DSR_GTF_BACKWARD", bwd)
    S, B, T1, M, L = size
    p, z0, a, ad, w = _problem(kind, S, B, T1, M, L, seed=sum(size) + 1)
    clipped = kind == "cshPLRNN"
    forced = torch.tensor([float(i % 2) for i in range(S)], device=DEVICE)
    grad_mix = torch.tensor([float(i % 3 != 1) for i in range(S)], device=DEVICE)
    for f, gm in [(None, None), (forced, grad_mix)]:
        fast = gtf_rollout_triton(p, z0, a, ad, clipped=clipped, forced=f, grad_mix=gm)
        ref = gtf_rollout_shallow(p, z0, a, ad, clipped=clipped, forced=f, grad_mix=gm)
        _close(fast, ref, "output")
        inputs = [z0, ad] + list(p.values())
        for name, gf, gr in zip(["z0", "ad"] + list(p), torch.autograd.grad((fast * w).sum(), inputs),
                                torch.autograd.grad((ref * w).sum(), inputs)):
            _close(gf, gr, f"{bwd} {name}")
            assert gf.is_contiguous(), name  # the optimiser's flat gradient takes them without copies


@pytest.mark.parametrize("bwd", gtf_triton.BACKWARDS)
@pytest.mark.parametrize("S,B,T1,N", [(2, 17, 7, 3), (3, 5, 9, 16)])
def test_backward_kinds_weak_forcing_from_targets(bwd, S, B, T1, N, monkeypatch):
    """The weak-forcing kernels (weights made from d and α) under each backward equal the twin."""
    monkeypatch.setenv("DSR_GTF_BACKWARD", bwd)
    M, L = 16, 50
    gen = torch.Generator().manual_seed(S * B + T1)
    p = {k: v.to(DEVICE).requires_grad_(True) for k, v in
         latent.init_params("cshPLRNN", S, M, L, gen, dtype=torch.float32).items()}
    d = torch.randn(S, B, T1, N, generator=gen)  # (S, B, T̃+1, N)
    d[0, 1, 2] = float("nan")
    d, alpha = d.to(DEVICE), torch.linspace(0.1, 0.4, S).to(DEVICE)
    z0 = torch.randn(S, B, M, generator=gen).to(DEVICE).requires_grad_(True)
    forced = torch.tensor([float(i % 2) for i in range(S)]).to(DEVICE)
    w = torch.randn(S, B, T1 - 1, M, generator=gen).to(DEVICE)
    _weak_matches_twin(p, z0, d, alpha, forced, w, f"{bwd} ")


def test_backward_kind_setting(monkeypatch):
    """The default ("auto") is the split backward, except with float32-FMA products beyond one wave of
    programs (the fused one); the setting is read at every forward; a bad value names the variable."""
    monkeypatch.delenv("DSR_GTF_BACKWARD", raising=False)
    monkeypatch.delenv("DSR_GTF_PRECISION", raising=False)
    assert gtf_triton.precision() == "tf32x3" and gtf_triton.backward_kind(133, 132) == "split"
    monkeypatch.setenv("DSR_GTF_PRECISION", "ieee")
    assert gtf_triton.backward_kind() == "split"
    assert gtf_triton.backward_kind(132, 132) == "split" and gtf_triton.backward_kind(133, 132) == "fused"
    p, z0, a, ad, w = _problem("cshPLRNN", 2, 3, 5, 4, 40, seed=5)  # block_l=16: L in 3 chunks
    out = gtf_rollout_triton(p, z0, a, ad)
    assert out.grad_fn.meta[-1] == "split"  # 2 programs, 4 "multiprocessors" under the interpreter
    many = _problem("cshPLRNN", 5, 3, 5, 4, 40, seed=5)  # 5 programs: beyond one wave under the interpreter
    assert gtf_rollout_triton(*many[:4]).grad_fn.meta[-1] == ("fused" if DEVICE == "cpu" else "split")
    monkeypatch.setenv("DSR_GTF_BACKWARD", "fused")
    assert gtf_rollout_triton(p, z0, a, ad).grad_fn.meta[-1] == "fused"
    assert gtf_rollout_triton(p, z0, a, ad, block_l=16).grad_fn.meta[-1] == "fused"  # L tiled: its own backward
    monkeypatch.setenv("DSR_GTF_BACKWARD", "split")
    assert gtf_rollout_triton(p, z0, a, ad, block_l=16).grad_fn.meta[-1] == "fused"
    monkeypatch.setenv("DSR_GTF_BACKWARD", "splt")
    with pytest.raises(ValueError, match="DSR_GTF_BACKWARD"):
        gtf_rollout_triton(p, z0, a, ad)


def test_default_precision_needs_tf32_tensor_cores(monkeypatch):
    """tf32x3 by default; a GPU before Ampere (compute capability < 8, no TF32) gets float32 FMA instead;
    an explicit DSR_GTF_PRECISION wins."""
    monkeypatch.delenv("DSR_GTF_PRECISION", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, want in (((7, 5), "ieee"), ((8, 0), "tf32x3"), ((9, 0), "tf32x3")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, c=capability: c)
        assert gtf_triton.precision() == want
    monkeypatch.setenv("DSR_GTF_PRECISION", "tf32x3")
    assert gtf_triton.precision() == "tf32x3"


def _grads_close(fast, ref, w, z0, ad, p, tol):
    """dL/d(z0, ad, params) of the weighted outputs: kernel against twin, within tol(name) relative to each
    gradient's largest entry."""
    inputs = [z0, ad] + list(p.values())
    for name, got, want in zip(["z0", "ad"] + list(p), torch.autograd.grad((fast * w).sum(), inputs),
                               torch.autograd.grad((ref * w).sum(), inputs)):
        t = tol(name)
        torch.testing.assert_close(got, want, rtol=t, atol=t * max(want.abs().max().item(), 1e-6),
                                   msg=lambda m: f"{name}: {m}")


# the weight-gradient kernel's products alone on the tensor cores: no error travels through the recurrence
WEIGHTS_RTOL = {"tf32x3": 1e-5, "tf32": 0.25}  # plain TF32: dL/dW2 off by 17 % of its largest entry on an H200


@pytest.mark.parametrize("prec", sorted(WEIGHTS_RTOL))
def test_split_backward_weights_precision(prec, monkeypatch):
    """DSR_GTF_WEIGHTS_PRECISION sets only the split backward's weight-gradient kernel; outputs, dL/dz0 and
    dL/d ad stay float32-exact, the weight gradients within the setting's tolerance of the twin."""
    monkeypatch.setenv("DSR_GTF_BACKWARD", "split")
    monkeypatch.setenv("DSR_GTF_WEIGHTS_PRECISION", prec)
    monkeypatch.setenv("DSR_GTF_PRECISION", "ieee")
    assert gtf_triton.weights_precision() == prec and gtf_triton.precision() == "ieee"
    p, z0, a, ad, w = _problem("cshPLRNN", 2, 16, 30, 16, 50, seed=13)
    fast = gtf_rollout_triton(p, z0, a, ad)
    ref = gtf_rollout_shallow(p, z0, a, ad)
    _close(fast, ref, "output")
    _grads_close(fast, ref, w, z0, ad, p, lambda name: RTOL if name in ("z0", "ad", "A", "h1") else WEIGHTS_RTOL[prec])
    monkeypatch.delenv("DSR_GTF_WEIGHTS_PRECISION")
    monkeypatch.setenv("DSR_GTF_PRECISION", "tf32x3")
    assert gtf_triton.weights_precision() == "tf32x3"  # follows the other kernels by default
    monkeypatch.setenv("DSR_GTF_WEIGHTS_PRECISION", "bf16")
    with pytest.raises(ValueError, match="DSR_GTF_WEIGHTS_PRECISION"):
        gtf_triton.weights_precision()


@pytest.mark.parametrize("split,per_sm,block_r", [(1, 2, 16), (1, 16, 32), (0, 16, 16)])
def test_split_backward_weights_launch_variants(split, per_sm, block_r, monkeypatch):
    """The split backward's variants (operands split once for the three TF32 products, in the forward, the
    chain loop and the weight-gradient kernel; several weight programs per fit whose partial sums are added;
    wider row blocks) give the twin's outputs and gradients."""
    monkeypatch.setenv("DSR_GTF_BACKWARD", "split")
    monkeypatch.setenv("DSR_GTF_PRECISION", "tf32x3")
    monkeypatch.setattr(gtf_triton, "TUNING", {"weights": {"SPLIT": split, "PROGRAMS_PER_SM": per_sm,
                                                           "BLOCK_R": block_r},
                                               "fwd": {"SPLIT": split}, "chain": {"SPLIT": split}})
    p, z0, a, ad, w = _problem("cshPLRNN", 3, 5, 40, 16, 50, seed=17)
    fast = gtf_rollout_triton(p, z0, a, ad)
    ref = gtf_rollout_shallow(p, z0, a, ad)
    _close(fast, ref, "output")
    _grads_close(fast, ref, w, z0, ad, p, lambda name: 1e-5)

"""Compare launch variants of the fused GTF kernel on one GPU, forward and backward timed apart (issue 6).

    python benchmarks/gtf_kernel_tune.py [--sizes 16x50 3x50] [--subjects 1 1024] [--out FILE]
                                         [--profile-loop 1 1024]

Variants: load prefetch on/off, warps per program, a register cap (``maxnreg``: more programs resident
per multiprocessor, so 1024 subjects × 1 block of 16 sequences fit in fewer waves). Each variant's
output and gradients are checked against the default launch first. Timing: median of
``triton.testing.do_bench`` (CUDA events) for the forward alone and for the backward alone (autograd
of the kernel's output with a fixed upstream gradient, targets without gradient as in training).
``--profile-loop S ...`` adds a torch.profiler table of dsr's own training loop (CUDA graph) at S fits.
Writes JSON (default ``benchmarks/results/gtf_kernel_tune.json``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.models import latent  # noqa: E402
from dsr.ops import gtf_triton  # noqa: E402
from dsr.ops.gtf import forcing_weights  # noqa: E402

FWD = [dict(PREFETCH=p, num_warps=w, **({"maxnreg": r} if r else {}))
       for p, w, r in itertools.product([False, True], [1, 2, 4], [None, 64]) if not (r and w < 4)]
BWD = [dict(PREFETCH=p, num_warps=w, **({"maxnreg": r} if r else {}))
       for p, w, r in itertools.product([False, True], [2, 4, 8], [None, 128, 96]) if not (r and w == 8)]
# the tensor-core matmuls (session 6, issue 18): prefetching launches with each warp count
FWD += [dict(PREFETCH=True, num_warps=w, PRECISION=q) for q in ("tf32x3", "tf32") for w in (1, 2, 4)]
BWD += [dict(PREFETCH=True, num_warps=w, PRECISION=q) for q in ("tf32x3", "tf32") for w in (2, 4, 8)]


def problem(S, M, L, B=16, T1=201, seed=0):
    """Parameters, z0, forcing and an upstream gradient on the GPU."""
    gen = torch.Generator().manual_seed(seed)
    p = {k: v.cuda().requires_grad_(True) for k, v in latent.init_params("cshPLRNN", S, M, L, gen).items()}
    d = torch.randn(S, B, T1, M, generator=gen).cuda()  # (S, B, T̃+1, M)
    a, ad = forcing_weights(d, torch.full((S,), 0.1, device="cuda"), M, "weak")
    z0 = torch.randn(S, B, M, generator=gen).cuda().requires_grad_(True)
    gout = torch.randn(S, B, T1 - 1, M, generator=gen).cuda()  # (S, B, T̃, M)
    return p, z0, a, ad, gout


def run_variant(which, opts, prob):
    """(forward ms, backward ms, outputs and gradients) with ``opts`` for one kernel, defaults for the other."""
    from triton.testing import do_bench

    p, z0, a, ad, gout = prob
    gtf_triton.TUNING = {"fwd": {}, "bwd": {}, which: opts}
    inputs = [z0] + list(p.values())
    out = gtf_triton.gtf_rollout_triton(p, z0, a, ad)
    grads = torch.autograd.grad(out, inputs, gout, retain_graph=True)
    with torch.no_grad():
        fwd = do_bench(lambda: gtf_triton.gtf_rollout_triton(p, z0, a, ad), warmup=50, rep=300,
                       return_mode="median")
    bwd = do_bench(lambda: torch.autograd.grad(out, inputs, gout, retain_graph=True), warmup=50, rep=300,
                   return_mode="median")
    return fwd, bwd, [out.detach()] + [g.detach() for g in grads]


def rel(x, y):
    return float((x - y).norm() / y.norm().clamp_min(1e-30))


def profile_loop(S, M=16, L=50):
    """Top device kernels of dsr's training loop at S stacked fits (20 steps after warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_step import time_training_loop

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        ms, _, _ = time_training_loop(S, M, L, 200, 16, 17, torch.device("cuda"), kernel=True, epochs=4,
                                      batches=10)
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=60)
    return ms, table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["16x50", "3x50"])
    ap.add_argument("--subjects", nargs="+", type=int, default=[1, 1024])
    ap.add_argument("--profile-loop", nargs="*", type=int, default=[])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gtf_kernel_tune.json")
    args = ap.parse_args(argv)
    rows = []
    for size, S in itertools.product(args.sizes, args.subjects):
        M, L = map(int, size.split("x"))
        prob = problem(S, M, L)
        _, _, ref = run_variant("fwd", {"PREFETCH": False}, prob)
        for which, variants in (("fwd", FWD), ("bwd", BWD)):
            for opts in variants:
                try:
                    f, b, res = run_variant(which, opts, prob)
                    err = max(rel(x, y) for x, y in zip(res, ref))
                except Exception as e:  # a variant that does not compile (e.g. too few registers)
                    f, b, err = float("nan"), float("nan"), repr(e)[:120]
                row = dict(M=M, L=L, S=S, kernel=which, opts=opts, ms=f if which == "fwd" else b, max_rel_err=err)
                rows.append(row)
                print(json.dumps(row), flush=True)
        del prob
        torch.cuda.empty_cache()
    gtf_triton.TUNING = {"fwd": {}, "bwd": {}}
    profiles = {}
    for S in args.profile_loop:
        ms, table = profile_loop(S)
        profiles[S] = {"loop_ms_per_step_under_profiler": ms, "table": table}
        print(f"## dsr loop S={S}: {ms:.2f} ms/step under the profiler\n{table}", flush=True)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    import triton

    meta["triton"] = triton.__version__
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "profiles": profiles}, indent=1))
    print("\n| M×L | S | kernel | best opts | ms | default ms |")
    print("|---|---|---|---|---|---|")
    for (M, L, S, which), grp in itertools.groupby(rows, key=lambda r: (r["M"], r["L"], r["S"], r["kernel"])):
        grp = [r for r in grp if r["ms"] == r["ms"]]
        best = min(grp, key=lambda r: r["ms"])
        base = next(r for r in grp if r["opts"] == {"PREFETCH": False, "num_warps": 4})
        print(f"| {M}×{L} | {S} | {which} | {best['opts']} | {best['ms']:.3f} | {base['ms']:.3f} |")


if __name__ == "__main__":
    main()

"""Static instruction counts of the fused GTF kernels per launch variant, compiled ahead of time (no GPU needed).

    python benchmarks/gtf_kernel_sass.py [--arch 90] [--out benchmarks/results/gtf_kernel_sass.json]

Compiles the kernels of :mod:`dsr.ops.gtf_triton_kernels` and :mod:`dsr.ops.gtf_triton_split` at
(M, L) = (16, 50) (BLOCK_M 16, BLOCK_L 64, one tile; weak forcing made from the targets, as in training)
for a CUDA target with Triton's bundled ptxas, disassembles the cubin with its nvdisasm and counts the SASS
instructions per opcode: ``total`` over the whole kernel, ``loop`` inside its time loop (the body between
the loop's label and its backward branch: one recurrence step, or for the weight-gradient kernel one block
of ``BLOCK_R`` rows). Kernels: ``fwd`` (session 6 forward), ``fwd_slope`` / ``fwd_pre`` (the forward also
storing the int8 slopes or the float32 pre-activations for the split backward), ``bwd`` (session 6's fused
backward), ``chain`` / ``chain_pre`` / ``chain_recompute`` (the split backward's time loop, reading slopes,
reading p_t or recomputing p_t) and ``weights`` (its weight-gradient kernel).
Counts are per warp; ``per_program`` multiplies by the warps: a proxy for the issue-bound cost of a step,
not a timing (``step_limit.py`` times the paths on a GPU). Do not set ``TRITON_INTERPRET``.
"""
from __future__ import annotations

import argparse
import collections
import inspect
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from dsr.ops import gtf_triton_kernels as kernels  # noqa: E402
from dsr.ops import gtf_triton_split as split  # noqa: E402

KEYS = ("FFMA", "HMMA", "BAR", "LDS", "STS", "SHFL", "LDG", "STG")
_LOOP = dict(CLIPPED=True, BLOCK_B=16, BLOCK_M=16, BLOCK_L=64, PREFETCH=True, MIX=False, FROM_D=True)
# kernel, argument types in order (constexprs left out), constexprs
ARGS = {"fwd": (kernels._gtf_fwd_kernel, ["*fp32"] * 11 + ["*i8"] + ["i32"] * 5,
                dict(_LOOP, N_LC=1, STORE_SLOPE=0)),
        "fwd_slope": (kernels._gtf_fwd_kernel, ["*fp32"] * 11 + ["*i8"] + ["i32"] * 5,
                      dict(_LOOP, N_LC=1, STORE_SLOPE=1)),
        "fwd_pre": (kernels._gtf_fwd_kernel, ["*fp32"] * 12 + ["i32"] * 5, dict(_LOOP, N_LC=1, STORE_SLOPE=2)),
        "bwd": (kernels._gtf_bwd_kernel, ["*fp32"] * 17 + ["i32"] * 6, dict(_LOOP, N_LC=1, NEED_GAD=False)),
        "chain": (split._gtf_bwd_chain_kernel, ["*fp32", "*i8"] + ["*fp32"] * 11 + ["i32"] * 5,
                  dict(_LOOP, NEED_GAD=False, SLOPE=1)),
        "chain_pre": (split._gtf_bwd_chain_kernel, ["*fp32"] * 13 + ["i32"] * 5, dict(_LOOP, NEED_GAD=False, SLOPE=2)),
        "chain_recompute": (split._gtf_bwd_chain_kernel, ["*fp32", "*i8"] + ["*fp32"] * 11 + ["i32"] * 5,
                            dict(_LOOP, NEED_GAD=False, SLOPE=0)),
        "weights": (split._gtf_bwd_weights_kernel, ["*fp32"] * 6 + ["i32"] * 5,
                    dict(CLIPPED=True, BLOCK_R=16, BLOCK_M=16, BLOCK_L=64))}
# integer arguments at the LEMON settings (B = 16, T̃ = 60, M = N = 16, L = 50; rows B·T̃ per fit)
INTS = dict(B=16, T1=61, M=16, L=50, CIN=16, NB=1, R=960, ROWS=960, PSIZE=2 * 16 * 50 + 50 + 2 * 16)
WARPS = {"fwd": (1, 2, 4), "fwd_slope": (1, 2, 4), "fwd_pre": (1, 2, 4), "bwd": (1, 2, 4), "chain": (1, 2, 4),
         "chain_pre": (1, 2, 4), "chain_recompute": (1, 2, 4), "weights": (2, 4)}


def _loop_body(lines: list[str]) -> list[str]:
    """The lines of the kernel's loop: from a label to the branch back to it (the longest such span; the
    one-line self-branch that ends every kernel is not a loop)."""
    labels, body = {}, []
    for i, line in enumerate(lines):
        if m := re.match(r"^(\.L_x_\d+):", line):
            labels[m.group(1)] = i
        elif (m := re.search(r"BRA\s+`\((\.L_x_\d+)\)", line)) and m.group(1) in labels:
            if i - labels[m.group(1)] > len(body):
                body = lines[labels[m.group(1)]:i + 1]
    return body


def _count(lines) -> collections.Counter:
    ops = collections.Counter()
    for line in lines:
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", line)
        if m:
            ops[m.group(2).split(".")[0]] += 1
    return ops


def sass_counts(which: str, precision: str, num_warps: int, arch: int, maxnreg: int | None = None) -> dict:
    """Opcode counts of one compiled kernel variant: whole kernel and loop body."""
    fn, types, ce = ARGS[which]
    ce = dict(ce, PRECISION=precision)
    if "SPLIT" in inspect.signature(fn.fn).parameters:  # as the launcher: operands split once with tf32x3
        ce.setdefault("SPLIT", int(precision == "tf32x3"))
    it = iter(types)
    sig = {p: ("constexpr" if p in ce else next(it)) for p in inspect.signature(fn.fn).parameters}
    # the launcher's specialisation: pointers (torch allocations) and integers divisible by 16 are marked so
    attrs = {(i,): [["tt.divisibility", 16]] for i, (p, t) in enumerate(sig.items())
             if t.startswith("*") or (t == "i32" and INTS.get(p, 1) % 16 == 0)}
    options = {"num_warps": num_warps, **({"maxnreg": maxnreg} if maxnreg else {})}
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=ce, attrs=attrs),
                       target=GPUTarget("cuda", arch, 32), options=options)
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(k.asm["cubin"])
    try:
        text = subprocess.run([str(tools / "nvdisasm"), "-c", f.name], capture_output=True, text=True,
                              check=True).stdout
        usage = subprocess.run([str(tools / "cuobjdump"), "--dump-resource-usage", f.name], capture_output=True,
                               text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    res = {key.lower(): int(v) for key, v in re.findall(r"\b(REG|SHARED|LOCAL):(\d+)", usage)}
    lines = text.splitlines()
    ops, loop = _count(lines), _count(_loop_body(lines))
    return {"total": sum(ops.values()), "loop": sum(loop.values()), **{key: loop.get(key, 0) for key in KEYS},
            "regs": res.get("reg"), "shared": res.get("shared"), "local": res.get("local"),
            "programs_per_sm": programs_per_sm(res.get("reg", 255), res.get("shared", 0), num_warps)}


def programs_per_sm(regs: int, shared: int, num_warps: int) -> int:
    """Resident programs per Hopper multiprocessor: 64 K registers (allocated per warp in units of 256),
    228 KB shared memory (1 KB reserved per block), 64 warps, 32 blocks."""
    per_warp = -(-regs * 32 // 256) * 256
    by_regs = 65536 // (per_warp * num_warps)
    by_smem = 233472 // (shared + 1024)
    return min(by_regs, by_smem, 64 // num_warps, 32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability ×10 (90: H100 / H200)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gtf_kernel_sass.json")
    ap.add_argument("--kernels", nargs="+", default=list(ARGS), choices=list(ARGS))
    ap.add_argument("--precisions", nargs="+", default=["ieee", "tf32x3", "tf32"])
    args = ap.parse_args(argv)
    rows = []
    for which, prec in itertools.product(args.kernels, args.precisions):
        for nw in WARPS[which]:
            row = {"kernel": which, "precision": prec, "num_warps": nw, **sass_counts(which, prec, nw, args.arch)}
            row["per_program"] = row["loop"] * nw  # warp-instructions per program and step (or row block)
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": {"arch": args.arch, "triton": triton.__version__}, "rows": rows},
                                   indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

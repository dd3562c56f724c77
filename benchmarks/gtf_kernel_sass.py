"""Static instruction counts of the fused GTF kernels per launch variant, compiled ahead of time (no GPU needed).

    python benchmarks/gtf_kernel_sass.py [--arch 90] [--out benchmarks/results/gtf_kernel_sass.json]

Compiles the forward and backward kernels of :mod:`dsr.ops.gtf_triton_kernels` at (M, L) = (16, 50)
(BLOCK_M 16, BLOCK_L 64, one tile; weak forcing made from the targets, as in training) for a CUDA target
with Triton's bundled ptxas, disassembles the cubin with its nvdisasm and counts the SASS instructions
per opcode. The time loop is not unrolled, so the counts are per recurrence step (plus a fixed prologue)
and per warp: a proxy for the issue-bound cost of a step, not a timing (``gtf_kernel_tune.py`` times the
variants on a GPU). Do not set ``TRITON_INTERPRET``.
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

KEYS = ("FFMA", "HMMA", "BAR", "LDS", "STS", "SHFL", "LDG", "STG")
ARGS = {"fwd": (kernels._fwd_kernel, ["*fp32"] * 11 + ["i32"] * 5),
        "bwd": (kernels._bwd_kernel, ["*fp32"] * 17 + ["i32"] * 6)}


def sass_counts(which: str, precision: str, num_warps: int, arch: int) -> dict:
    """Opcode counts of one compiled kernel variant."""
    fn, types = ARGS[which]
    ce = dict(CLIPPED=True, BLOCK_B=16, BLOCK_M=16, BLOCK_L=64, N_LC=1, PREFETCH=True, MIX=False,
              PRECISION=precision, FROM_D=True)
    if which == "bwd":
        ce["NEED_GAD"] = False
    it = iter(types)
    sig = {p: ("constexpr" if p in ce else next(it)) for p in inspect.signature(fn.fn).parameters}
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=ce), target=GPUTarget("cuda", arch, 32),
                       options={"num_warps": num_warps})
    nvdisasm = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "nvdisasm"
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(k.asm["cubin"])
    try:
        text = subprocess.run([str(nvdisasm), "-c", f.name], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    ops = collections.Counter()
    for line in text.splitlines():
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", line)
        if m:
            ops[m.group(2).split(".")[0]] += 1
    return {"total": sum(ops.values()), **{key: ops.get(key, 0) for key in KEYS}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability ×10 (90: H100 / H200)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gtf_kernel_sass.json")
    args = ap.parse_args(argv)
    rows = []
    for which, prec, nw in itertools.product(("fwd", "bwd"), ("ieee", "tf32x3", "tf32"), (1, 2, 4)):
        row = {"kernel": which, "precision": prec, "num_warps": nw, **sass_counts(which, prec, nw, args.arch)}
        row["per_program"] = row["total"] * nw  # warp-instructions per program and step
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": {"arch": args.arch, "triton": triton.__version__}, "rows": rows},
                                   indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Forward + backward time of the shallow PLRNN's plain-PyTorch forced rollout (``dsr.ops.gtf_shallow``).

    python benchmarks/shallow_twin.py --device cpu --cases 30,8,50 30,16,50 3,16,50 \
        [--compare OLD_gtf_shallow.py] [--threads 1] [--out FILE]

Each case S,M,L: S stacked fits, latent M, hidden L, B = 16 sequences of T̃ = 60 steps (the ``rest_fmri``
preset's), weak forcing α 0.1, float32, a weighted sum of the outputs as loss. ``--compare`` loads another
version of the module from a file (e.g. an older commit's ``git show REV:dsr/ops/gtf_shallow.py``) and times
it in the same run, alternating, so both see the same machine state; ``max_grad_diff`` is the largest
relative difference of their gradients. Prints and writes a JSON of milliseconds (the median over
``--rounds`` timings, each the mean of ``--reps`` calls).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dsr.models import latent  # noqa: E402
from dsr.ops.gtf import forcing_weights  # noqa: E402
from dsr.ops.gtf_shallow import gtf_rollout_shallow  # noqa: E402


def _load(path: str):
    spec = importlib.util.spec_from_file_location("gtf_shallow_compare", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.gtf_rollout_shallow


def _problem(S, M, L, device, B=16, T1=61, seed=0):
    gen = torch.Generator().manual_seed(seed)
    p = {k: v.to(device).requires_grad_(True) for k, v in latent.init_params("cshPLRNN", S, M, L, gen).items()}
    d = torch.randn(S, B, T1, M, generator=gen).to(device)
    a, ad = forcing_weights(d, torch.full((S,), 0.1, device=device), M, "weak")
    z0 = torch.randn(S, B, M, generator=gen).to(device).requires_grad_(True)
    w = torch.randn(S, B, T1 - 1, M, generator=gen).to(device)
    return p, z0, a, ad, w


def _run(fn, prob):
    p, z0, a, ad, w = prob
    out = fn(p, z0, a, ad)  # (S, B, T̃, M)
    return torch.autograd.grad((out * w).sum(), [z0] + list(p.values()))


def _time(fn, prob, device, reps):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        _run(fn, prob)
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        _run(fn, prob)
    sync()
    return (time.perf_counter() - t) / reps * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", nargs="+", default=["30,8,50", "30,16,50", "3,16,50"])
    ap.add_argument("--compare", default=None, help="another gtf_shallow.py to time beside this one")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10, help="calls per timing")
    ap.add_argument("--rounds", type=int, default=5, help="alternating timings per version (median)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fns = {"current": gtf_rollout_shallow}
    if args.compare:
        fns["compare"] = _load(args.compare)
    rows = []
    for case in args.cases:
        S, M, L = (int(v) for v in case.split(","))
        prob = _problem(S, M, L, device)
        times = {k: [] for k in fns}
        for _ in range(args.rounds):
            for k, fn in fns.items():
                times[k].append(_time(fn, prob, device, args.reps))
        row = {"S": S, "M": M, "L": L, **{f"{k}_ms": round(statistics.median(v), 3) for k, v in times.items()}}
        if "compare" in fns:
            ga, gb = _run(fns["current"], prob), _run(fns["compare"], prob)
            row["max_grad_diff"] = max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-30))
                                       for x, y in zip(ga, gb))
            row["speedup"] = round(row["compare_ms"] / row["current_ms"], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "threads": args.threads, "compare": args.compare}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

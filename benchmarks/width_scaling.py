"""Does a learning rate tuned at width 64 transfer to widths 256 and 1024? (issue 19)

    python benchmarks/width_scaling.py [--models s4d selective lru] [--widths 64 256 1024]
                                       [--scalings spectral standard] [--steps 100] [--seeds 0 1]
                                       [--device cpu] [--out benchmarks/results/width_scaling]

Task: next-step prediction of an 8-region Lorenz-96 series (forcing 8, sampled every 2 s; z-scored),
trained by :func:`dsr.training.sequence.train_sequence_model` on the first 1500 steps (``--steps`` Adam
steps, batches of 8 windows of 32 steps, learning rate decaying to a tenth) and scored by the
teacher-forced next-step MSE on the held-out last 300 steps. Every (model, scaling, width, seed) is
trained over a grid of learning rates spaced by factors of 2; the best learning rate per (model,
scaling, width) minimises the seed-mean held-out MSE (diverged runs count as +inf). The check passes for a
(model, scaling) when the best learning rate at every width is within a factor of 2 of the best at
width 64 (``base_width`` = 64 for the spectral rule). Writes ``runs.tsv`` (one row per run, resumable),
``summary.json`` and ``table.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.io.atomic import atomic_write_text, write_json  # noqa: E402
from dsr.models.baselines import make_baseline  # noqa: E402
from dsr.simulate.dynamics import lorenz96  # noqa: E402
from dsr.training.sequence import SequenceTrainConfig, train_sequence_model  # noqa: E402

LRS = [1e-3 * 2.0 ** k for k in range(-2, 8)]  # 2.5e-4 … 1.28e-1
N_TRAIN, N_TEST = 1500, 300
ARCH = {"s4d": {"state": 16, "layers": 2}, "selective": {"state": 8, "layers": 1}, "lru": {"state": 16, "layers": 2}}


def task_series() -> np.ndarray:
    """The z-scored Lorenz-96 series (N_TRAIN + N_TEST, 8)."""
    x = lorenz96(8, 8.0, (N_TRAIN + N_TEST) * 2.0, 2.0, rng=np.random.default_rng(0))
    return (x - x[:N_TRAIN].mean(0)) / x[:N_TRAIN].std(0)


def run_one(x: np.ndarray, model: str, scaling: str, width: int, lr: float, seed: int, steps: int,
            device: str = "cpu") -> dict:
    m = make_baseline(model, hidden=width, width_scaling=scaling, base_width=64, **ARCH[model])
    cfg = SequenceTrainConfig(steps=steps, batch_size=8, seq_len=32, lr=lr, lr_end=lr / 10, device=device)
    t0 = time.perf_counter()
    p = train_sequence_model(m, x[:N_TRAIN], cfg, seed=seed)
    with torch.no_grad():
        xt = torch.as_tensor(x[N_TRAIN - 1:], dtype=torch.float32)[None]  # (1, N_TEST + 1, 8)
        pred = m.forward(p, xt[:, :-1])  # (1, N_TEST, 8)
        mse = float((pred - xt[:, 1:]).pow(2).mean())
    return {"model": model, "scaling": scaling, "width": width, "lr": lr, "seed": seed, "steps": steps,
            "test_mse": mse if np.isfinite(mse) else float("inf"), "seconds": time.perf_counter() - t0}


def summarise(runs: pd.DataFrame) -> dict:
    """Best learning rate per (model, scaling, width) and the transfer verdict per (model, scaling)."""
    out = {}
    for (model, scaling), g in runs.groupby(["model", "scaling"]):
        mean = g.groupby(["width", "lr"]).test_mse.mean().unstack("lr")  # (widths, lrs)
        best = {int(w): float(mean.loc[w].idxmin()) for w in mean.index}
        base = best.get(64)
        ratio = {w: b / base for w, b in best.items()} if base else {}
        out[f"{model}/{scaling}"] = {
            "best_lr": best, "best_lr_over_width64": ratio,
            "best_test_mse": {int(w): float(mean.loc[w].min()) for w in mean.index},
            "mse_at_width64_lr": {int(w): float(mean.loc[w, base]) for w in mean.index} if base else {},
            "transfers_within_2x": bool(ratio) and all(0.5 <= r <= 2.0 for r in ratio.values()),
            "grid": {int(w): {f"{lr:.3g}": float(v) for lr, v in mean.loc[w].items()} for w in mean.index}}
    return out


def table(summary: dict) -> str:
    lines = ["| model / scaling | best LR per width | best LR / best LR at 64 | MSE at best LR "
             "| MSE with width-64 LR | transfers (≤ 2×) |", "|---|---|---|---|---|---|"]
    for key, s in summary.items():
        fmt = lambda d, f: ", ".join(f"{w}: {f(v)}" for w, v in d.items())  # noqa: E731
        lines.append(f"| {key} | {fmt(s['best_lr'], lambda v: f'{v:.3g}')} | "
                     f"{fmt(s['best_lr_over_width64'], lambda v: f'{v:.3g}')} | "
                     f"{fmt(s['best_test_mse'], lambda v: f'{v:.3f}')} | "
                     f"{fmt(s['mse_at_width64_lr'], lambda v: f'{v:.3g}')} | "
                     f"{'yes' if s['transfers_within_2x'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["s4d", "selective", "lru"], choices=sorted(ARCH))
    ap.add_argument("--widths", nargs="+", type=int, default=[64, 256, 1024])
    ap.add_argument("--scalings", nargs="+", default=["spectral", "standard"])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--summarise-only", action="store_true", help="no new runs: summarise runs.tsv")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "width_scaling")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "runs.tsv"
    runs = pd.read_csv(path, sep="\t") if path.is_file() else pd.DataFrame()
    done = set() if runs.empty else set(zip(runs.model, runs.scaling, runs.width, runs.lr.round(10), runs.seed,
                                            runs.steps))
    x = task_series()
    rows = runs.to_dict("records")
    for scaling in args.scalings:
        for model in args.models:
            for width in args.widths:
                for lr in LRS:
                    for seed in args.seeds:
                        if args.summarise_only or (model, scaling, width, round(lr, 10), seed, args.steps) in done:
                            continue
                        rows.append(run_one(x, model, scaling, width, lr, seed, args.steps, args.device))
                        r = rows[-1]
                        print(f"{model} {scaling} H={width} lr={lr:.3g} seed={seed}: test MSE {r['test_mse']:.4f} "
                              f"({r['seconds']:.1f} s)", flush=True)
                        atomic_write_text(path, pd.DataFrame(rows).to_csv(sep="\t", index=False))
    runs = pd.DataFrame(rows)
    runs = runs[runs.model.isin(args.models) & runs.scaling.isin(args.scalings) & runs.width.isin(args.widths)
                & runs.seed.isin(args.seeds) & (runs.steps == args.steps)]
    summary = summarise(runs)
    cmd = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--summarise-only"]
    write_json(args.out / "summary.json", {"command": "python benchmarks/width_scaling.py " + " ".join(cmd),
                                           "lrs": LRS, "arch": ARCH, "run_wall_seconds": float(runs.seconds.sum()),
                                           "results": summary})
    atomic_write_text(args.out / "table.md", table(summary))
    print(table(summary))
    print(json.dumps({k: v["transfers_within_2x"] for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

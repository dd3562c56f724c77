"""Held-out metrics of the stochastic against the deterministic generator on ALN BOLD with added noise.

Fits the first ``--subjects`` recordings of ``../shared/data/aln/bold`` stacked (preset ``aln``,
``--epochs`` epochs) after adding white noise of SD ``--noise`` × each channel's SD, and writes per fit
the held-out ``dstsp_test`` / ``dh_test`` of the stochastic generator (observation noise estimated from
the training residuals, :mod:`dsr.analysis.noise`) beside the deterministic ones (``*_det``), D_H also at
σ = 1, the estimated noise SD, and lag-1 autocorrelation / SD of data and generated series.

    PYTHONPATH=$PWD python benchmarks/stochastic_generation.py --epochs 150 --noise 0.7
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.analysis.evaluate import evaluate  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.pipelines.fit_array import fit_many  # noqa: E402


def lag1(a: np.ndarray) -> float:
    """Mean over columns of the lag-1 autocorrelation of a (T, N) series."""
    return float(np.mean([np.corrcoef(a[1:, i], a[:-1, i])[0, 1] for i in range(a.shape[1])]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "aln" / "bold")
    p.add_argument("--subjects", type=int, default=6)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--noise", type=float, default=0.7, help="added white noise, × each channel's SD")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stochastic_generation.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    files = sorted(args.data.glob("sub-*.npy"))[:args.subjects]
    if not files:
        sys.exit(f"{args.data}: no sub-*.npy recordings (give --data)")
    xs = [np.load(f) for f in files]
    xs = [x + args.noise * x.std(0) * rng.standard_normal(x.shape) for x in xs]
    cfg = load_config("aln", train={"epochs": args.epochs})
    t0 = time.perf_counter()
    fits = fit_many(xs, 0.5, [cfg.replace(seed=s) for s in range(len(xs))], device=args.device)
    seconds = time.perf_counter() - t0
    rows = []
    for r in fits:
        m = r.metrics
        xg = (r.x_gen - r.data.mean) / r.data.std  # standardised, as the data
        ev = dataclasses.replace(cfg.eval, spectrum_smoothing=1.0, lyap_steps=10, lyap_transient=0, lyap_orbits=1)
        rec = evaluate(r.model, [r.data], ev, [r.config.seed])[0][0]  # D_H at σ 1, same rollouts
        rows.append({"dstsp_test": m["dstsp_test"], "dstsp_test_det": m["dstsp_test_det"],
                     "dh_test": m["dh_test"], "dh_test_det": m["dh_test_det"],
                     "dh_test_sigma1": rec.dh_test, "dh_test_sigma1_det": rec.deterministic.dh_test,
                     "obs_noise_sd_mean": float(np.mean(m["obs_noise_sd"])), "lag1_data": lag1(r.data.x),
                     "lag1_generated": lag1(xg), "sd_generated": float(xg.std(0).mean())})
        print({k: round(v, 3) for k, v in rows[-1].items()}, flush=True)
    median = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    wins = {k: int(sum(r[k] < r[k + "_det"] for r in rows)) for k in ("dstsp_test", "dh_test", "dh_test_sigma1")}
    print("median", {k: round(v, 3) for k, v in median.items()}, "stochastic lower in", wins, f"of {len(rows)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "seconds": seconds,
                                    "fits": rows, "median": median, "stochastic_lower": wins}, indent=1))


if __name__ == "__main__":
    main()

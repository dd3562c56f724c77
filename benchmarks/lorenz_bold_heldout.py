"""Observation-space D_stsp of saved Lorenz fits against a clean (noise-free) held-out BOLD stretch (issue 2).

The other reading of "measured against a long held-out part of the clean trajectory": the generated
BOLD (latents through the model's filter) against the noise-free HRF-convolved Lorenz trajectory of the
held-out steps, binned (30 per dim). The floor is the same measure for the clean stretch just before
the held-out one (the same length where the recording leaves room):

    python benchmarks/lorenz_bold_heldout.py --tag _snap_e5000 --length 6667
    python benchmarks/lorenz_bold_heldout.py --tag _gpu_T50000_e5000 --length 50000 --truth-start 50161

Reads ``benchmarks/results/lorenz<tag>_models.safetensors`` (from ``reference_results.py lorenz``),
writes ``benchmarks/results/lorenz<tag>_bold_heldout.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.analysis.dstsp import dstsp_bins  # noqa: E402
from dsr.analysis.evaluate import initial_states  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import ConvSSM  # noqa: E402
from dsr.signal.convolution import convolve_np  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from reference_results import lorenz_recording  # noqa: E402

SHARED = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "results"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tag", required=True)
    p.add_argument("--length", type=int, required=True, help="recording length the fits were trained on")
    p.add_argument("--truth-start", type=int, default=10000)
    p.add_argument("--truth-end", type=int, default=100000)
    p.add_argument("--rollouts", type=int, default=10)
    args = p.parse_args()
    L = np.load(SHARED / "lorenz63.npy")  # (100000, 3)
    x, h = lorenz_recording(L, args.length)  # (T, 3)
    K = len(h)
    sd = prepare_subject(x, h, load_config("lorenz63"), standardise=False)
    clean = convolve_np(L[args.truth_start - K:args.truth_end], h)[K:]  # (T_truth, 3) noise-free BOLD
    before = convolve_np(L[:args.truth_start], h)[K:]  # clean BOLD before the held-out stretch
    before = before[-min(len(clean), len(before)):]
    model = ConvSSM.load(OUT / f"lorenz{args.tag}_models.safetensors")
    per_fit = []
    for i in range(model.n_subjects):
        one = model.subject(i)
        z0 = initial_states(one, sd, args.rollouts, 0.01, torch.Generator().manual_seed(i))  # (1, R, M)
        with torch.no_grad():
            X = one.observe(one.generate(z0, len(clean) + K - 1))[0].double().numpy()  # (R, T_truth, 3)
        per_fit.append(float(np.mean([dstsp_bins(clean, xr) for xr in X])))
        print(i, round(per_fit[-1], 3), flush=True)
    res = {"setup": vars(args), "dstsp_bold_vs_clean_heldout": per_fit,
           "median": float(np.median(per_fit)), "floor_clean_stretch": float(dstsp_bins(clean, before)),
           "floor_length": len(before)}
    (OUT / f"lorenz{args.tag}_bold_heldout.json").write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "dstsp_bold_vs_clean_heldout"}))


if __name__ == "__main__":
    main()

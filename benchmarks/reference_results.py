"""Reproduce the published Lorenz-63 and ALN results (issue 2's acceptance numbers).

    python benchmarks/reference_results.py lorenz [--seeds 5] [--epochs 1000]
    python benchmarks/reference_results.py aln [--subjects 20] [--epochs 1000]

Seeds/subjects are trained together as independent fits stacked on the
leading subject axis (results equal fitting each alone). Writes
``benchmarks/results/<name>.json`` with per-seed metrics, medians and run times.

Lorenz-63: the shared trajectory convolved with the SPM HRF at TR 0.2 s plus
observation noise σ = 0.01; the first 3000 steps are the recording (3:1 split);
D_stsp and D_H in latent space are measured against steps 50000–70000 of the clean
trajectory (held out, never seen in training). λ_max reference: 0.9056 per Lorenz
time unit = 0.009056 per step (dt = 0.01).

ALN: BOLD at TR 0.5 s (500 × 16), the first 375 steps train; the convSSM
against the same model without the convolution decoder (filter [1], targets =
the data), both with the same seeds, D_stsp in latent space against the
simulation's latent activity.
"""
from __future__ import annotations

import argparse
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
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.signal.convolution import convolve_np  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from dsr.training.loop import log_progress, train  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "results"
KEYS = ("dstsp", "dh", "dstsp_latent", "dh_latent", "pe_train", "pe_test", "lyapunov_max", "diverged_rollouts")


def fit_stack(xs, hs, cfg, seeds, standardise, truths, tag):
    """Train len(xs) fits stacked, then evaluate each alone; returns per-fit metric dicts."""
    subjects = [prepare_subject(x, h, cfg, standardise=standardise) for x, h in zip(xs, hs)]
    spec = ConvSSMSpec(cfg.model.latent_model, cfg.model.latent_dim, cfg.model.hidden_dim, cfg.model.observation,
                       n_obs=xs[0].shape[1], tr=cfg_tr[tag])
    K = max(len(h) for h in hs)
    filt = torch.stack([torch.nn.functional.pad(torch.as_tensor(h), (0, K - len(h))) for h in hs])  # (S, K)
    model = ConvSSM.initialise(spec, filt, seeds)
    t0 = time.perf_counter()
    outcome = train(model, subjects, cfg.train, seeds, progress=log_progress(every=50))
    train_s = time.perf_counter() - t0
    model.save(OUT / f"{tag}_models.safetensors")
    rows = []
    for i, sd in enumerate(subjects):
        t1 = time.perf_counter()
        met, _, _ = evaluate(model.subject(i), sd, cfg.eval, latent_truth=truths[i], seed=seeds[i])
        row = {k: met.get(k) for k in KEYS}
        row.update(seed=seeds[i], status=outcome.status[i], eval_seconds=time.perf_counter() - t1)
        rows.append(row)
        print(tag, i, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows, train_s


cfg_tr = {}


def lorenz(args):
    L = np.load(SHARED / "lorenz63.npy")  # (100000, 3), dt = 0.01
    h = spm_hrf(0.2)
    n = args.length + len(h)
    rng = np.random.default_rng(1234)
    x = convolve_np(L[:n], h)[len(h):] + 0.01 * rng.standard_normal((args.length, 3))  # (T, 3) BOLD-like
    truth = L[50000:70000]
    cfg = load_config("lorenz63", train={"epochs": args.epochs}, eval={"n_rollouts": args.rollouts})
    seeds = list(range(args.seeds))
    cfg_tr["lorenz"] = 0.2
    rows, train_s = fit_stack([x] * len(seeds), [h] * len(seeds), cfg, seeds, False, [truth] * len(seeds), "lorenz")
    lam = np.array([r["lyapunov_max"] for r in rows])
    summary = {"median_dstsp_latent": float(np.median([r["dstsp_latent"] for r in rows])),
               "median_dh_latent": float(np.median([r["dh_latent"] for r in rows])),
               "median_dstsp_obs": float(np.median([r["dstsp"] for r in rows])),
               "median_lyapunov_max_per_step": float(np.median(lam)),
               "median_lyapunov_max_per_lorenz_time": float(np.median(lam) / 0.01),
               "lyapunov_rel_error": float(abs(np.median(lam) / 0.01 - 0.9056) / 0.9056),
               "train_seconds_all_seeds": train_s}
    return {"setup": vars(args), "config": cfg.to_dict(), "fits": rows, "summary": summary}


def aln(args):
    ids = sorted(p.stem for p in (SHARED / "aln" / "bold").glob("sub-*.npy"))[:args.subjects]
    xs = [np.load(SHARED / "aln" / "bold" / f"{s}.npy")[:500] for s in ids]
    truths = [np.load(SHARED / "aln" / "latent" / f"{s}.npy") for s in ids]
    h = spm_hrf(0.5)
    cfg = load_config("aln", train={"epochs": args.epochs, "train_fraction": 0.75},
                      eval={"n_rollouts": args.rollouts})
    seeds = list(range(len(ids)))
    cfg_tr["aln_conv"] = cfg_tr["aln_noconv"] = 0.5
    out = {"setup": vars(args), "config": cfg.to_dict(), "subjects": ids}
    conv, t_conv = fit_stack(xs, [h] * len(ids), cfg, seeds, True, truths, "aln_conv")
    plain, t_plain = fit_stack(xs, [np.array([1.0])] * len(ids), cfg, seeds, True, truths, "aln_noconv")
    wins = [c["dstsp_latent"] < p["dstsp_latent"] for c, p in zip(conv, plain)]
    out.update(conv=conv, noconv=plain, summary={
        "conv_wins_fraction": float(np.mean(wins)), "n_subjects": len(ids),
        "median_dstsp_latent_conv": float(np.median([c["dstsp_latent"] for c in conv])),
        "median_dstsp_latent_noconv": float(np.median([p["dstsp_latent"] for p in plain])),
        "train_seconds_conv": t_conv, "train_seconds_noconv": t_plain})
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("which", choices=["lorenz", "aln"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--subjects", type=int, default=20)
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--length", type=int, default=3000, help="Lorenz recording length (steps)")
    p.add_argument("--rollouts", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = lorenz(args) if args.which == "lorenz" else aln(args)
    res["wall_seconds"] = time.perf_counter() - t0
    res["torch"] = torch.__version__
    (OUT / f"{args.which}.json").write_text(json.dumps(res, indent=2, default=float))
    print(json.dumps(res["summary"], indent=2))


if __name__ == "__main__":
    main()

"""The LEMON-scale protocol of issue 6, end to end on one GPU: 51 subjects × 20 seeds stacked.

    python benchmarks/lemon_scale.py [--subjects 51] [--seeds 20] [--epochs 1000] [--device cuda]
                                     [--budget 540] [--eval gpu|cpu] [--eval-fits 51] [--eval-workers 14]

Data: 51 generated subjects (Lorenz-96 region dynamics with subject-specific forcing F, SPM HRF,
observation noise), 16 regions, T = 652 at TR 1.4 s, like LEMON rest fMRI. Protocol: the
``rest_fmri`` preset (cshPLRNN M = N = 16, L = 50, α = 0.1, 3:1 split), 1000 epochs of 50 batches of
16 sequences, all 1020 fits in one stack on the device (fused GTF kernel, batches drawn on the GPU).

Timing is end to end: data preparation (deconvolution), training, and evaluation (100 rollouts per
fit). ``--eval gpu`` (default) evaluates all fits at once on the training device
(:func:`dsr.analysis.evaluate.evaluate`); the medians then cover every fit, and
``selected`` reports the best seed per subject (lowest ``dstsp_test``) and medians over those fits.
``--eval cpu`` evaluates the first ``--eval-fits`` fits (one seed per subject by default) with
:func:`dsr.analysis.evaluate.evaluate` in parallel CPU processes. If a short
timing run (epochs 3–4 of a probe, after compilation and graph capture) projects training past
``--budget`` seconds, the epochs are cut to fit and the JSON says so.
Writes ``benchmarks/results/lemon_scale.json``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.analysis.evaluate import evaluate  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.simulate.dynamics import simulate  # noqa: E402
from dsr.simulate.hemodynamics import hrf_bold  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from dsr.training.loop import train  # noqa: E402

TR, T, N = 1.4, 652, 16
KEYS = ("dstsp", "dstsp_test", "dh", "dh_test", "pe_test", "lyapunov_max")


def make_subjects(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[float]]:
    """n BOLD-like recordings (T, N) from Lorenz-96 with forcing F ∈ [4, 12], and their F."""
    rng = np.random.default_rng(seed)
    xs, fs = [], []
    for _ in range(n):
        f = float(rng.uniform(4.0, 12.0))
        neural = simulate("lorenz96", N, f, T * TR, TR, rng=rng)  # (T, N)
        bold = hrf_bold(neural, TR)
        xs.append(bold + 0.1 * bold.std(0) * rng.standard_normal(bold.shape))
        fs.append(f)
    return xs, fs


def _eval_one(job):
    path, i, sd, eval_cfg, seed = job
    torch.set_num_threads(1)
    met, _, _ = evaluate(ConvSSM.load(path).subject(i), [sd], eval_cfg, [seed])[0]
    return {k: met.to_json().get(k) for k in KEYS}


def _median(metrics: list[dict], key: str) -> float:
    v = np.array([m[key] for m in metrics], dtype=float)
    return float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")


def _summaries(metrics: list[dict], forcing: np.ndarray) -> dict:
    """Medians of the metrics, the fraction of positive λ_max and its rank correlation with the forcing F."""
    from scipy.stats import spearmanr

    lam = np.array([m["lyapunov_max"] for m in metrics], dtype=float)
    return {"median": {k: _median(metrics, k) for k in KEYS},
            "fraction_lyapunov_positive": float(np.mean(lam > 0)),
            "spearman_lyapunov_vs_forcing": float(spearmanr(lam, forcing, nan_policy="omit").statistic)}


def best_seed_per_subject(metrics: list[dict], n_subjects: int) -> list[int]:
    """Index of the fit with the lowest ``dstsp_test`` of each subject (fit j belongs to subject j mod n)."""
    out = []
    for s in range(n_subjects):
        fits = list(range(s, len(metrics), n_subjects))
        v = np.array([metrics[j]["dstsp_test"] for j in fits], dtype=float)
        v = np.where(np.isnan(v), np.inf, v)
        out.append(fits[int(np.argmin(v))])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=51)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget", type=float, default=540.0, help="seconds of training the run may take")
    p.add_argument("--eval", choices=("gpu", "cpu"), default="gpu",
                   help="gpu: all fits with the metric engine on the device; cpu: --eval-fits fits in CPU processes")
    p.add_argument("--eval-fits", type=int, default=51)
    p.add_argument("--eval-workers", type=int, default=14)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lemon_scale.json")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    xs, forcing = make_subjects(args.subjects)
    h = spm_hrf(TR)
    cfg = load_config("rest_fmri", train={"epochs": args.epochs})
    subjects = [prepare_subject(x, h, cfg) for x in xs]
    S = args.subjects * args.seeds
    stack = [subjects[i % args.subjects] for i in range(S)]  # fit j: subject j mod n, seed j
    seeds = list(range(S))
    spec = ConvSSMSpec("cshPLRNN", 16, 50, "identity", n_obs=N, tr=TR)
    t_prep = time.perf_counter() - t_start

    # a short timing run (its own model) decides whether the full protocol fits the budget
    probe = ConvSSM.initialise(spec, torch.as_tensor(h), seeds).to(args.device)
    marks = {}
    train(probe, stack, cfg.train.__class__(**{**cfg.train.__dict__, "epochs": 4}), seeds,
          progress=lambda e, n, info: marks.__setitem__(e, info["seconds"]))
    per_epoch = (marks[4] - marks[2]) / 2  # after the first epochs, which compile kernels and capture the graph
    epochs = min(args.epochs, int(args.budget / per_epoch))
    del probe
    cfg = cfg.replace(train={"epochs": epochs})
    print(f"{S} fits; {per_epoch:.3f} s/epoch in the probe (after warm-up); training {epochs} epochs", flush=True)

    model = ConvSSM.initialise(spec, torch.as_tensor(h), seeds).to(args.device)
    t0 = time.perf_counter()
    out = train(model, stack, cfg.train, seeds,
                progress=lambda e, n, info: print(f"epoch {e}/{n} loss {info['loss']:.4f} "
                                                  f"({info['seconds']:.0f} s)", flush=True) if e % 100 == 0 else None)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_train = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None
    path = args.out.with_name(args.out.stem + "_models.safetensors")
    model.save(path)  # CPU copies; the model stays on the device for --eval gpu

    t0 = time.perf_counter()
    selected = None
    if args.eval == "gpu":
        metrics = [{k: m.to_json().get(k) for k in KEYS} for m, _, _ in evaluate(model, stack, cfg.eval, seeds)]
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
    else:
        model.to("cpu")
        jobs = [(str(path), i, stack[i], cfg.eval, seeds[i]) for i in range(min(args.eval_fits, S))]
        with ProcessPoolExecutor(args.eval_workers, mp_context=mp.get_context("spawn")) as pool:
            metrics = list(pool.map(_eval_one, jobs))
    t_eval = time.perf_counter() - t0
    total = time.perf_counter() - t_start
    f_eval = np.array([forcing[i % args.subjects] for i in range(len(metrics))])
    if args.eval == "gpu":
        best = best_seed_per_subject(metrics, args.subjects)
        selected = {"by": "lowest dstsp_test per subject", "fits": best,
                    **_summaries([metrics[j] for j in best], f_eval[best])}

    res = {"fits": S, "subjects": args.subjects, "seeds": args.seeds, "epochs_requested": args.epochs,
           "epochs_run": epochs, "steps_per_epoch": cfg.train.batches_per_epoch,
           "seconds": {"prepare": t_prep, "train": t_train, "evaluate": t_eval, "end_to_end": total,
                       "probe_per_epoch": per_epoch},
           "ms_per_step": 1e3 * t_train / max(epochs * cfg.train.batches_per_epoch, 1),
           "peak_gpu_mib": peak, "status_counts": {s: out.status.count(s) for s in set(out.status)},
           "final_loss_median": float(np.median([r["loss"] for r in out.curve[-S:]])),
           "eval": args.eval, "evaluated_fits": len(metrics), **_summaries(metrics, f_eval), "selected": selected,
           "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
           "torch": torch.__version__, "config": cfg.to_dict()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "config"}, indent=1))


if __name__ == "__main__":
    main()

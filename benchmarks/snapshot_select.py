"""Score the training snapshots of a ``reference_results.py --snapshot-every`` run (issue 2).

Each fit's parameters were saved every k epochs. This script scores every snapshot of every fit
with data-only criteria (observation-space D_stsp / D_H on the recording, its held-out part, PE)
and with the latent ground truth, so that checkpoint-selection rules that never look at the truth
can be compared against "take the last epoch":

    python benchmarks/snapshot_select.py lorenz --tag _snap_e5000 [--rollouts 4]
    python benchmarks/snapshot_select.py aln --tag _snap [--rollouts 10]

Writes ``benchmarks/results/<name><tag>_scan.json``: one row per (snapshot, fit).

Lorenz latent D_stsp over the 90000-step held-out truth is computed streaming (histograms filled
10000 steps at a time, two passes: the generated series' own mean/SD first, then the counts), with
the binning of :func:`dsr.analysis.dstsp.dstsp_bins`; both the z-scored comparison (``dstsp_latent``)
and the one in data units standardised with the truth (``dstsp_latent_units``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.analysis.dstsp import LAPLACE_ALPHA  # noqa: E402
from dsr.analysis.evaluate import column_scale, evaluate  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from reference_results import lorenz_recording  # noqa: E402

SHARED = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "results"
OBS_KEYS = ("dstsp", "dstsp_train", "dstsp_test", "dh", "dh_train", "dh_test", "pe_train", "pe_test",
            "diverged_rollouts")


def snapshot_stack(path: Path, spec: ConvSSMSpec, h: np.ndarray) -> tuple[ConvSSM, np.ndarray, int]:
    """All snapshots of all fits as one stack (index = snapshot * S + fit); returns (model, epochs, S)."""
    t = load_file(str(path))
    epochs = t.pop("epoch").numpy()
    n, S = next(iter(t.values())).shape[:2]
    params = {k: v.reshape(n * S, *v.shape[2:]).float() for k, v in t.items()}  # (n*S, ...)
    filt = torch.as_tensor(h, dtype=torch.float32).expand(n * S, -1).contiguous()  # (n*S, K)
    return ConvSSM(spec, params, filt), epochs, S


def observation_scores(model: ConvSSM, subjects, seeds, cfg, rollouts: int, truths=None, scaling=None) -> list[dict]:
    """Data-only metrics (and latent ones if truths are given) of every fit, few rollouts, no long Lyapunov run.

    ``cfg`` is the preset's EvalConfig; rollouts, Lyapunov length and (optionally) the GMM σ² are overridden.
    """
    cfg = dataclasses.replace(cfg, n_rollouts=rollouts, lyap_steps=50, lyap_transient=10, lyap_orbits=1,
                              **({} if scaling is None else {"dstsp_scaling": scaling}))
    res = evaluate(model, subjects, cfg, seeds, latent_truths=truths)
    keys = OBS_KEYS + (("dstsp_latent", "dstsp_latent_units", "dh_latent") if truths is not None else ())
    return [{k: float(m.to_json().get(k, np.nan)) for k in keys} for m, _, _ in res]


def _bin_edges(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The binned volume of :func:`dsr.analysis.dstsp.dstsp_bins`: [min − 0.1σ, max + 0.1σ] per dim."""
    sigma = truth.std(axis=0, ddof=1)
    return truth.min(axis=0) - 0.1 * sigma, truth.max(axis=0) + 0.1 * sigma


def _flat_bins(v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Flat cell index of v (..., N) in the n_bins^N grid over [lo, hi); −1 outside."""
    idx = torch.floor((v - lo) / (hi - lo) * n_bins).long()  # (..., N)
    inside = ((idx >= 0) & (idx < n_bins)).all(-1)
    flat = torch.zeros(idx.shape[:-1], dtype=torch.long)
    for d in range(idx.shape[-1]):
        flat = flat * n_bins + idx[..., d]
    return torch.where(inside, flat, torch.full_like(flat, -1))


def _kl_counts(p_counts: np.ndarray, q_counts: np.ndarray) -> np.ndarray:
    """KL of Laplace-smoothed pmfs: p (C,) against each row of q (B, C) -> (B,)."""
    a = LAPLACE_ALPHA
    C = p_counts.size
    p = (p_counts + a) / (p_counts.sum() + a * C)  # (C,)
    q = (q_counts + a) / (q_counts.sum(1, keepdims=True) + a * C)  # (B, C)
    kl = (p * (np.log(p) - np.log(q))).sum(1)  # (B,)
    kl[q_counts.sum(1) == 0] = np.inf
    return kl


@torch.no_grad()
def lorenz_latent_scan(model: ConvSSM, z0: torch.Tensor, truth: np.ndarray, data_mean: np.ndarray,
                       data_std: np.ndarray, n_bins: int = 30, block: int = 10000) -> dict[str, np.ndarray]:
    """Latent D_stsp of rollouts from z0 (S, R, M) over len(truth) steps; returns (S,) mean over rollouts."""
    S, R, M = z0.shape
    T, N = truth.shape
    mu_t, sd_t = column_scale(truth)
    tz = (truth - mu_t) / sd_t  # z-scored truth
    lo, hi = _bin_edges(tz)
    lo_t, hi_t = torch.as_tensor(lo), torch.as_tensor(hi)
    C = n_bins ** N
    p_counts = np.bincount(_flat_bins(torch.as_tensor(tz), lo_t, hi_t, n_bins).numpy().clip(-1) + 1,
                           minlength=C + 1)[1:].astype(np.float64)

    def blocks():
        z = z0
        done = 0
        while done < T:
            n = min(block, T - done) + (1 if done else 0)
            traj = model.generate(z, n)  # (S, R, n, M)
            yield (traj if done == 0 else traj[:, :, 1:])[..., :N].double()
            z = traj[:, :, -1]
            done += n - (1 if done else 0)

    s1 = torch.zeros(S, R, N, dtype=torch.float64)
    s2 = torch.zeros(S, R, N, dtype=torch.float64)
    finite = torch.ones(S, R, dtype=torch.bool)
    for b in blocks():
        finite &= torch.isfinite(b).all(-1).all(-1)
        b = torch.nan_to_num(b, nan=0.0, posinf=0.0, neginf=0.0)
        s1 += b.sum(2)
        s2 += (b * b).sum(2)
    mean = s1 / T
    std = ((s2 / T - mean ** 2).clamp_min(0) * T / (T - 1)).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # (S, R, N)
    dm, ds = torch.as_tensor(data_mean[:N]), torch.as_tensor(data_std[:N])
    mu, sd = torch.as_tensor(mu_t), torch.as_tensor(sd_t)
    counts = {k: torch.zeros(S * R, C + 1, dtype=torch.int32) for k in ("z", "units")}
    ones = None
    for b in blocks():
        b = torch.nan_to_num(b, nan=1e30, posinf=1e30, neginf=-1e30)
        views = {"z": (b - mean[:, :, None]) / std[:, :, None], "units": (b * ds + dm - mu) / sd}
        for k, v in views.items():
            flat = _flat_bins(v, lo_t, hi_t, n_bins).reshape(S * R, -1) + 1  # (S*R, n), 0 = outside
            if ones is None or ones.shape != flat.shape:
                ones = torch.ones(flat.shape, dtype=torch.int32)
            counts[k].scatter_add_(1, flat, ones)
    out = {}
    fin = finite.reshape(-1).numpy()
    for k, name in (("z", "dstsp_latent"), ("units", "dstsp_latent_units")):
        kl = _kl_counts(p_counts, counts[k][:, 1:].double().numpy())  # (S*R,)
        kl[~fin] = np.inf
        out[name] = kl.reshape(S, R).mean(1)
    return out


def lorenz(args) -> list[dict]:
    L = np.load(SHARED / "lorenz63.npy")
    x, h = lorenz_recording(L, args.length)  # (T, 3)
    truth = L[args.truth_start:args.truth_end]
    cfg = load_config("lorenz63")
    sd = prepare_subject(x, h, cfg, standardise=False)
    spec = ConvSSMSpec(cfg.model.latent_model, cfg.model.latent_dim, cfg.model.hidden_dim, cfg.model.observation,
                       n_obs=3, tr=0.2)
    model, epochs, S = snapshot_stack(OUT / f"lorenz{args.tag}_snapshots.safetensors", spec, h)
    F = model.n_subjects
    seeds = [i % S for i in range(F)]
    t0 = time.perf_counter()
    obs = observation_scores(model, [sd] * F, seeds, cfg.eval, args.rollouts)
    print(f"observation scores: {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    t_first = int(np.flatnonzero(np.isfinite(sd.d[:, 0]))[0])
    d0 = model.targets(torch.as_tensor(sd.d[t_first], dtype=torch.float32).expand(F, 1, 1, -1))[:, :, 0]
    z0 = model.init_state(d0).expand(F, args.latent_rollouts, -1).clone()  # (F, R, M)
    z0[:, 1:] += 0.01 * torch.randn(z0[:, 1:].shape, generator=g)
    lat = lorenz_latent_scan(model, z0, truth, sd.mean, sd.std)
    print(f"latent scan: {time.perf_counter() - t0:.0f} s", flush=True)
    return [dict(obs[i], epoch=int(epochs[i // S]), fit=i % S, **{k: float(v[i]) for k, v in lat.items()})
            for i in range(F)]


def aln(args) -> list[dict]:
    ids = sorted(p.stem for p in (SHARED / "aln" / "bold").glob("sub-*.npy"))[:args.subjects]
    cfg = load_config("aln")
    rows = []
    for variant in ("conv", "noconv"):
        h = spm_hrf(0.5) if variant == "conv" else np.array([1.0])
        path = OUT / f"aln_{variant}{args.tag}_snapshots.safetensors"
        spec = ConvSSMSpec(cfg.model.latent_model, cfg.model.latent_dim, cfg.model.hidden_dim,
                           cfg.model.observation, n_obs=16, tr=0.5)
        model, epochs, S = snapshot_stack(path, spec, h)
        R = S // len(ids)
        subs = [prepare_subject(np.load(SHARED / "aln" / "bold" / f"{s}.npy")[:500], h, cfg, standardise=True)
                for s in ids]
        truths = [np.load(SHARED / "aln" / "latent" / f"{s}.npy") for s in ids]
        fit_seeds = [i + 1000 * r for r in range(R) for i in range(len(ids))]
        F = model.n_subjects
        t0 = time.perf_counter()
        res = observation_scores(model, [subs[i % S % len(ids)] for i in range(F)], [fit_seeds[i % S] for i in range(F)],
                                 cfg.eval, args.rollouts, truths=[truths[i % S % len(ids)] for i in range(F)],
                                 scaling=args.dstsp_scaling)
        print(f"{variant}: {time.perf_counter() - t0:.0f} s", flush=True)
        rows += [dict(res[i], variant=variant, epoch=int(epochs[i // S]), fit=i % S,
                      subject=ids[i % S % len(ids)], seed=fit_seeds[i % S]) for i in range(F)]
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("which", choices=["lorenz", "aln"])
    p.add_argument("--tag", required=True)
    p.add_argument("--rollouts", type=int, default=10, help="rollouts per snapshot for the data-only scores")
    p.add_argument("--latent-rollouts", type=int, default=4, help="Lorenz: rollouts of the latent scan")
    p.add_argument("--length", type=int, default=6667)
    p.add_argument("--truth-start", type=int, default=10000)
    p.add_argument("--truth-end", type=int, default=100000)
    p.add_argument("--subjects", type=int, default=20)
    p.add_argument("--dstsp-scaling", type=float, default=None)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = lorenz(args) if args.which == "lorenz" else aln(args)
    name = f"{args.which}{args.tag}_scan.json"
    (OUT / name).write_text(json.dumps({"setup": vars(args), "rows": rows}, default=float))
    print("wrote", OUT / name)


if __name__ == "__main__":
    main()

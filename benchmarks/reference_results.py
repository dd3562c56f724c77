"""Reproduce the published Lorenz-63 and ALN results (issue 2's acceptance numbers).

    python benchmarks/reference_results.py lorenz [--seeds 5] [--epochs 1000]
    python benchmarks/reference_results.py aln --variant conv|noconv [--subjects 20] [--epochs 1000] [--device cuda]
    python benchmarks/reference_results.py aln-compare

Seeds/subjects are trained together as independent fits stacked on the
leading subject axis (results equal fitting each alone). Writes
``benchmarks/results/<name>.json`` with per-seed metrics, medians and run times.

Lorenz-63: the shared trajectory convolved with the SPM HRF at TR 0.2 s plus
observation noise σ = 0.01; the first 3000 steps are the recording (3:1 split);
D_stsp and D_H in latent space are measured against a held-out segment of the clean
trajectory (default steps 10000–100000, never part of the recording); generated
rollouts have the same length. ``dstsp_true_trajectory_same_length`` is the floor:
the binned D_stsp of another stretch of the true trajectory of that length. λ_max reference: 0.9056 per Lorenz
time unit = 0.009056 per step (dt = 0.01).

ALN: BOLD at TR 0.5 s (500 × 16), the first 375 steps train; the convSSM
against the same model without the convolution decoder (filter [1], targets =
the data), both with the same seeds, D_stsp in latent space against the
simulation's latent activity.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.analysis.checkpoint_score import selection_scorers  # noqa: E402
from dsr.analysis.dstsp import dstsp_bins  # noqa: E402
from dsr.analysis.evaluate import evaluate  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.signal.convolution import convolve_np  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from dsr.training.loop import log_progress, train  # noqa: E402

SHARED = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "results"
KEYS = ("dstsp", "dh", "dstsp_test", "dh_test", "dstsp_latent", "dh_latent", "dstsp_latent_units", "pe_train",
        "pe_test", "lyapunov_max", "diverged_rollouts")


def fit_stack(xs, hs, cfg, seeds, standardise, truths, tag, device="cpu", eval_only=False, alphas=None,
              loss_states=None):
    """Train len(xs) fits stacked, then evaluate each alone (on the CPU); returns per-fit metric dicts.

    With ``eval_only`` the models saved by an earlier run under the same tag are evaluated again.
    With ``SNAPSHOT_EVERY`` > 0 the parameters of every fit are also saved every that many epochs
    (``<tag>_snapshots.safetensors``, each tensor (n_snapshots, S, ...), plus ``epoch``); with
    ``TRAIN_ONLY`` nothing is evaluated (rows hold seed, status and alpha only). ``loss_states``: per-fit
    ``train.loss_states`` (default: the config's for all).
    """
    states = loss_states or [cfg.train.loss_states] * len(seeds)
    prepared: dict = {}  # the same recording and filter (several seeds) is prepared once
    for x, h in zip(xs, hs):
        if (id(x), id(h)) not in prepared:
            prepared[(id(x), id(h))] = prepare_subject(x, h, cfg, standardise=standardise)
    subjects = [prepared[(id(x), id(h))] for x, h in zip(xs, hs)]
    path = OUT / f"{tag}_models.safetensors"
    if eval_only:
        model, train_s = ConvSSM.load(path), float("nan")
        status = model.spec.meta.get("status") or ["ok"] * len(seeds)
    else:
        spec = ConvSSMSpec(cfg.model.latent_model, cfg.model.latent_dim, cfg.model.hidden_dim,
                           cfg.model.observation, n_obs=xs[0].shape[1], tr=cfg_tr[tag])
        K = max(len(h) for h in hs)
        filt = torch.stack([torch.nn.functional.pad(torch.as_tensor(h), (0, K - len(h))) for h in hs])  # (S, K)
        model = ConvSSM.initialise(spec, filt, seeds).to(device)
        snaps: list[tuple[int, dict]] = []
        log = log_progress(every=50)

        def progress(epoch, total, info):
            log(epoch, total, info)
            if SNAPSHOT_EVERY and (epoch % SNAPSHOT_EVERY == 0 or epoch == total):
                snaps.append((epoch, {k: v.detach().to("cpu", copy=True) for k, v in model.params.items()}))

        t0 = time.perf_counter()
        # the preset's checkpoint selection (lorenz63, aln), scored as the product scores it
        scorer, rescorer = selection_scorers(subjects, seeds, cfg.train, cfg.eval)
        outcome = train(model, subjects, cfg.train, seeds, progress=progress, alphas=alphas, loss_states=states,
                        scorer=scorer, rescorer=rescorer)
        train_s, status = time.perf_counter() - t0, outcome.status
        model.to("cpu")
        model.spec.meta.update(status=status, selected_epoch=outcome.selected_epoch)  # read back by eval_only
        model.save(path)
        if snaps:
            from safetensors.torch import save_file
            tensors = {k: torch.stack([p[k] for _, p in snaps]).contiguous() for k in snaps[0][1]}  # (n, S, ...)
            tensors["epoch"] = torch.tensor([e for e, _ in snaps])
            save_file(tensors, str(OUT / f"{tag}_snapshots.safetensors"))
    picked = model.spec.meta.get("selected_epoch") or [None] * len(seeds)  # None: no checkpoint selection
    if TRAIN_ONLY:
        rows = [{"seed": sd, "status": st, "alpha": cfg.train.alpha if alphas is None else alphas[i],
                 "loss_states": states[i], "selected_epoch": picked[i]}
                for i, (sd, st) in enumerate(zip(seeds, status))]
        return rows, train_s
    jobs = [(str(path), i, sd, cfg.eval, truths[i], seeds[i]) for i, sd in enumerate(subjects)]
    if EVAL_DEVICE is not None:  # every fit at once with the metric engine on that device
        t1 = time.perf_counter()
        res = evaluate(ConvSSM.load(path).to(EVAL_DEVICE), subjects, cfg.eval, list(seeds), latent_truths=truths)
        secs = (time.perf_counter() - t1) / len(res)
        results = [(met.to_json(), secs) for met, _, _ in res]
    elif EVAL_WORKERS > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(EVAL_WORKERS, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_evaluate_one, jobs))
    else:
        results = [_evaluate_one(job) for job in jobs]
    rows = []
    for i, (met, secs) in enumerate(results):
        row = {k: met.get(k) for k in KEYS}
        row.update(seed=seeds[i], status=status[i], eval_seconds=secs, selected_epoch=picked[i],
                   alpha=cfg.train.alpha if alphas is None else alphas[i], loss_states=states[i])
        rows.append(row)
        print(tag, i, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows, train_s


cfg_tr = {}
EVAL_WORKERS = 1
SNAPSHOT_EVERY = 0
TRAIN_ONLY = False
EVAL_DEVICE = None


def _evaluate_one(job):
    """Evaluate fit i of the saved stack alone, single-threaded (a process-pool entry)."""
    path, i, sd, eval_cfg, truth, seed = job
    torch.set_num_threads(1)
    t1 = time.perf_counter()
    met, _, _ = evaluate(ConvSSM.load(path).subject(i), [sd], eval_cfg, [seed], latent_truths=[truth])[0]
    return met.to_json(), time.perf_counter() - t1


def _train_overrides(args) -> dict:
    out = {"epochs": args.epochs}
    if args.alpha is not None:
        out["alpha"] = args.alpha
    if args.forcing is not None:
        out["forcing"] = args.forcing
    if args.lr_start is not None:
        out["lr_start"] = args.lr_start
    if args.lr_end is not None:
        out["lr_end"] = args.lr_end
    if args.seq_len is not None:
        out["sequence_length"] = args.seq_len
    if args.batches is not None:
        out["batches_per_epoch"] = args.batches
    return out


def lorenz_recording(L: np.ndarray, length: int, noise_sd: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """The benchmark recording: ``length`` steps of L through the SPM HRF at TR 0.2 s plus noise
    σ = ``noise_sd`` (seed 1234); returns (x (length, 3), h).

    Sample t of x is the filtered latent L[K + t] (K = len(h): every sample has a full filter
    history), so ``length`` ≤ len(L) − K; the matching clean latent is L[K:K + length].
    """
    h = spm_hrf(0.2)
    if length + len(h) > len(L):
        raise ValueError(f"a {length}-step recording needs {length + len(h)} latent steps, the series has {len(L)}")
    noise = noise_sd * np.random.default_rng(1234).standard_normal((length, 3))
    return convolve_np(L[:length + len(h)], h)[len(h):] + noise, h  # (T, 3) BOLD-like


LORENZ_SIGMA, LORENZ_RHO, LORENZ_BETA = 10.0, 28.0, 8.0 / 3.0


def lorenz_rhs(s, sigma: float = LORENZ_SIGMA, rho: float = LORENZ_RHO, beta: float = LORENZ_BETA):
    """Lorenz-63 vector field (default σ 10, ρ 28, β 8/3) of a NumPy array or a tensor, (..., 3) -> (..., 3)."""
    x, y, z = s[..., 0], s[..., 1], s[..., 2]
    stack = torch.stack if isinstance(s, torch.Tensor) else np.stack
    return stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], -1)


def lorenz_rk4_step(s, dt: float = 0.01, **params):
    """One RK4 step of :func:`lorenz_rhs` (dt 0.01: the shared series' sampling; ``params``: its σ, ρ, β),
    (..., 3) -> (..., 3)."""
    k1 = lorenz_rhs(s, **params)
    k2 = lorenz_rhs(s + 0.5 * dt * k1, **params)
    k3 = lorenz_rhs(s + 0.5 * dt * k2, **params)
    k4 = lorenz_rhs(s + dt * k3, **params)
    return s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def lorenz63_simulate(n_steps: int, n_traj: int, seed: int = 0, dt: float = 0.01, transient: int = 5000,
                      params: dict | None = None):
    """Independent Lorenz-63 trajectories (σ 10, ρ 28, β 8/3 unless ``params`` says otherwise; RK4 at dt 0.01,
    the shared series' sampling), each standardised by its own mean and SD like ``lorenz63.npy``:
    (n_traj, n_steps, 3).

    The floor of a D_stsp between series of length n: two of these never share a step. (The shared
    series' own disjoint pieces are used where it is long enough.)
    """
    s = np.random.default_rng(seed).normal(0.0, 1.0, (n_traj, 3)) + np.array([1.0, 1.0, 20.0])  # (J, 3)
    out = np.empty((n_steps, n_traj, 3))
    for i in range(-transient, n_steps):
        s = lorenz_rk4_step(s, dt, **(params or {}))
        if i >= 0:
            out[i] = s
    out = out.transpose(1, 0, 2)  # (J, n, 3)
    return (out - out.mean(1, keepdims=True)) / out.std(1, keepdims=True)


def lorenz_floors(L: np.ndarray, lengths, n_traj: int = 6, sim_steps: int = 100000, seed: int = 0) -> dict:
    """30-bin D_stsp between independent stretches of the true system, per length n.

    ``shared_disjoint``: consecutive disjoint pieces of the shared series L (pairs (0,1), (2,3), …),
    as long as two fit; ``simulated``: every pair of ``n_traj`` independent simulated trajectories
    (:func:`lorenz63_simulate`), first n steps; ``shared_vs_simulated``: L[:n] against each.
    Returns per length the values and their median, min and max.
    """
    sims = lorenz63_simulate(max(sim_steps, max(lengths)), n_traj, seed)  # (J, n, 3)
    out = {}
    for n in lengths:
        row = {}
        pieces = [L[i * n:(i + 1) * n] for i in range(len(L) // n)]
        row["shared_disjoint"] = [dstsp_bins(pieces[i], pieces[i + 1]) for i in range(0, len(pieces) - 1, 2)]
        row["simulated"] = [dstsp_bins(sims[i, :n], sims[j, :n]) for i in range(n_traj) for j in range(n_traj)
                            if i != j]
        row["shared_vs_simulated"] = [dstsp_bins(L[:n], sims[j, :n]) for j in range(n_traj)] if n <= len(L) else []
        for k in list(row):
            v = row[k]
            row[k + "_summary"] = ({"median": float(np.median(v)), "min": float(np.min(v)),
                                    "max": float(np.max(v)), "n": len(v)} if v else None)
        out[str(n)] = row
    return out


def lorenz(args):
    """Lorenz-63 fits: ``--variant conv`` through the SPM HRF at TR 0.2 s (the benchmark), ``--variant
    latent`` on the noisy trajectory itself (filter [1]; a diagnostic of training alone). With several
    ``--alphas`` every seed is fitted once per α in one stack."""
    L = np.load(SHARED / "lorenz63.npy")  # (100000, 3), dt = 0.01
    if args.variant == "conv":
        x, h = lorenz_recording(L, args.length)
    else:
        h = np.array([1.0])
        x = L[:args.length] + 0.01 * np.random.default_rng(1234).standard_normal((args.length, 3))  # (T, 3)
    truth = L[args.truth_start:args.truth_end]  # held out when length + K <= truth_start
    over = {"filter": {"kind": "none"}} if args.variant == "latent" else {}
    cfg = load_config("lorenz63", train=_train_overrides(args), eval={"n_rollouts": args.rollouts}, **over)
    alpha_grid = args.alphas or [cfg.train.alpha]
    seeds = [s for _ in alpha_grid for s in range(args.seeds)]
    alphas = [a for a in alpha_grid for _ in range(args.seeds)] if args.alphas else None
    tag = f"lorenz{'' if args.variant == 'conv' else '_' + args.variant}{args.tag}"
    cfg_tr[tag] = 0.2
    rows, train_s = fit_stack([x] * len(seeds), [h] * len(seeds), cfg, seeds, False, [truth] * len(seeds),
                              tag, args.device, eval_only=args.eval_only, alphas=alphas)
    other = L[args.length + len(h):args.length + len(h) + len(truth)]  # unseen stretch of the same length
    floor = dstsp_bins(truth, other) if len(other) == len(truth) else float("nan")
    summary = {"train_seconds_all_fits": train_s, "dstsp_true_trajectory_same_length": float(floor),
               "dstsp_training_part_vs_truth": float(dstsp_bins(truth, L[:int(0.75 * args.length)]))}
    for a in alpha_grid if not TRAIN_ONLY else []:
        sel = [r for r in rows if r["alpha"] == a]
        lam = np.array([r["lyapunov_max"] for r in sel])
        key = "" if len(alpha_grid) == 1 else f"_alpha{a:g}"
        summary.update({
            f"median_dstsp_latent{key}": float(np.median([r["dstsp_latent"] for r in sel])),
            f"median_dstsp_latent_units{key}": float(np.median([r["dstsp_latent_units"] for r in sel])),
            f"median_dh_latent{key}": float(np.median([r["dh_latent"] for r in sel])),
            f"median_dstsp_obs{key}": float(np.median([r["dstsp"] for r in sel])),
            f"median_lyapunov_max_per_step{key}": float(np.median(lam)),
            f"median_lyapunov_max_per_lorenz_time{key}": float(np.median(lam) / 0.01),
            f"lyapunov_rel_error{key}": float(abs(np.median(lam) / 0.01 - 0.9056) / 0.9056)})
    return {"setup": vars(args), "config": cfg.to_dict(), "fits": rows, "summary": summary}


def aln(args):
    ids = sorted(p.stem for p in (SHARED / "aln" / "bold").glob("sub-*.npy"))[:args.subjects]
    first = args.first
    ids = ids[first:first + args.count] if args.count else ids[first:]
    R = args.seeds_per_subject
    grid = args.loss_states or [None]  # every (subject, seed) once per loss_states, all in one stack
    xs = [np.load(SHARED / "aln" / "bold" / f"{s}.npy")[:500] for s in ids] * R * len(grid)
    truths = [np.load(SHARED / "aln" / "latent" / f"{s}.npy") for s in ids] * R * len(grid)
    ev = {"n_rollouts": args.rollouts} | ({} if args.dstsp_scaling is None else {"dstsp_scaling": args.dstsp_scaling})
    if args.lyap_steps is not None:
        ev.update(lyap_steps=args.lyap_steps, lyap_transient=min(1000, args.lyap_steps // 5))
    cfg = load_config("aln", train=dict(_train_overrides(args), train_fraction=0.75), eval=ev)
    # seed = subject index (+ 1000 per extra seed): chunking never changes a fit
    seeds = [first + i + 1000 * r for _ in grid for r in range(R) for i in range(len(ids))]
    states = None if args.loss_states is None else [ls for ls in grid for _ in range(R * len(ids))]
    h = spm_hrf(0.5) if args.variant == "conv" else np.array([1.0])
    tag = f"aln_{args.variant}{args.tag}"
    cfg_tr[tag] = 0.5
    rows, t = fit_stack(xs, [h] * len(xs), cfg, seeds, True, truths, tag, args.device, loss_states=states)
    for row, sub in zip(rows, ids * R * len(grid)):
        row["subject"] = sub
    summary = {"train_seconds": t, "n_subjects": len(ids), "seeds_per_subject": R}
    if not TRAIN_ONLY:
        for ls in sorted({r["loss_states"] for r in rows}):
            sel = [r for r in rows if r["loss_states"] == ls]
            key = "" if len(grid) == 1 else f"_{ls}"
            summary.update({f"{name}{key}": float(np.median([r[k] for r in sel])) for name, k in (
                ("median_dstsp_latent", "dstsp_latent"), ("median_dstsp_latent_units", "dstsp_latent_units"),
                ("median_dstsp_obs", "dstsp"), ("median_dh_latent", "dh_latent"))})
    return {"setup": vars(args), "config": cfg.to_dict(), "subjects": ids * R * len(grid), "fits": rows,
            "summary": summary}


def aln_compare(folder: Path):
    """Merge the aln_conv_*.json and aln_noconv_*.json chunks in ``folder``: how often the convSSM wins.

    Fits are compared within one ``train.loss_states`` (rows without the field count as "free"); with
    both present the result holds one comparison per loss_states under ``by_loss_states`` and the
    top level is the "free" one.
    """
    def load(variant):
        fits: list[dict] = []
        for path in sorted(p for p in folder.glob(f"aln_{variant}_*.json") if "models" not in p.name):
            res = json.loads(path.read_text())
            fits += [dict(fit, subject=sub) for sub, fit in zip(res["subjects"], res["fits"])]
        return fits

    conv_all, plain_all = load("conv"), load("noconv")
    states = sorted({f.get("loss_states", "free") for f in conv_all} & {f.get("loss_states", "free") for f in plain_all})
    out = {ls: _aln_compare_rows([f for f in conv_all if f.get("loss_states", "free") == ls],
                                 [f for f in plain_all if f.get("loss_states", "free") == ls]) for ls in states}
    main = out.get("free") or next(iter(out.values()))
    if len(out) > 1:
        main = dict(main, by_loss_states=out)  # every subject's medians per loss_states
        main["summary"] = dict(main["summary"], by_loss_states={ls: {
            k: r["summary"][k] for k in ("conv_wins_fraction", "conv_better_fraction_other_metrics",
                                         "median_dstsp_latent_units_conv", "median_dstsp_latent_units_noconv",
                                         "median_dh_latent_conv", "median_dh_latent_noconv")} for ls, r in out.items()})
    return main


def _aln_compare_rows(conv_fits: list[dict], plain_fits: list[dict]) -> dict:
    """The comparison of :func:`aln_compare` for one set of fits of each variant."""
    def rows(fits_list):
        """Per subject, each metric's median over that subject's seeds."""
        fits: dict[str, list[dict]] = {}
        for fit in fits_list:
            fits.setdefault(fit["subject"], []).append(fit)
        return {sub: {k: float(np.median([np.nan if f.get(k) is None else f.get(k) for f in fs])) for k in KEYS}
                | {"n_seeds": len(fs)} for sub, fs in fits.items()}

    conv, plain = rows(conv_fits), rows(plain_fits)
    subs = sorted(set(conv) & set(plain))
    wins = [conv[s]["dstsp_latent"] < plain[s]["dstsp_latent"] for s in subs]
    other = {key: float(np.mean([conv[s][key] < plain[s][key] for s in subs]))
             for key in ("dstsp_latent_units", "dh_latent", "dstsp", "dh", "pe_test")}
    return {"subjects": subs, "conv": [conv[s] for s in subs], "noconv": [plain[s] for s in subs],
            "summary": {"conv_wins_fraction": float(np.mean(wins)), "n_subjects": len(wins),
                        "median_dstsp_latent_conv": float(np.median([conv[s]["dstsp_latent"] for s in subs])),
                        "median_dstsp_latent_noconv": float(np.median([plain[s]["dstsp_latent"] for s in subs])),
                        "median_dstsp_latent_units_conv": float(np.median([conv[s]["dstsp_latent_units"] for s in subs])),
                        "median_dstsp_latent_units_noconv": float(np.median(
                            [plain[s]["dstsp_latent_units"] for s in subs])),
                        "conv_wins_fraction_latent_units": float(np.mean(
                            [conv[s]["dstsp_latent_units"] < plain[s]["dstsp_latent_units"] for s in subs])),
                        "median_dh_latent_conv": float(np.median([conv[s]["dh_latent"] for s in subs])),
                        "median_dh_latent_noconv": float(np.median([plain[s]["dh_latent"] for s in subs])),
                        "conv_better_fraction_other_metrics": other,
                        "wins": dict(zip(subs, wins))}}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("which", choices=["lorenz", "aln", "aln-compare", "floors"])
    p.add_argument("--variant", choices=["conv", "noconv", "latent"], default="conv",
                   help="ALN: conv or noconv; Lorenz: conv (through the HRF) or latent (no filter, diagnostic)")
    p.add_argument("--loss-states", nargs="+", default=None, choices=["free", "forced", "reference"],
                   help="ALN: fit every (subject, seed) once per train.loss_states, all in one stack")
    p.add_argument("--alphas", type=float, nargs="+", default=None,
                   help="Lorenz: fit every seed once per α, all in one stack")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tag", default="", help="suffix of the results file name")
    p.add_argument("--eval-only", action="store_true", help="evaluate the models saved under this tag again")
    p.add_argument("--truth-start", type=int, default=10000, help="Lorenz: held-out truth segment start")
    p.add_argument("--truth-end", type=int, default=100000, help="Lorenz: held-out truth segment end")
    p.add_argument("--out-tag", default="", help="extra suffix of the results file (e.g. for --eval-only)")
    p.add_argument("--dir", default=None, help="aln-compare: folder holding the chunk results (default: --out)")
    p.add_argument("--out", default=None, help="folder of the results and the saved models (default: benchmarks/results)")
    p.add_argument("--alpha", type=float, default=None, help="override the forcing strength")
    p.add_argument("--forcing", default=None, help="override the forcing kind (weak, sparse, adaptive, none)")
    p.add_argument("--lr-start", type=float, default=None, help="override the initial learning rate")
    p.add_argument("--lr-end", type=float, default=None, help="override the final learning rate")
    p.add_argument("--seq-len", type=int, default=None, help="override the training sequence length")
    p.add_argument("--batches", type=int, default=None, help="override the batches per epoch")
    p.add_argument("--lyap-steps", type=int, default=None, help="ALN: override the Lyapunov orbit length")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--subjects", type=int, default=20)
    p.add_argument("--seeds-per-subject", type=int, default=1, help="ALN: fits per subject (medians compared)")
    p.add_argument("--first", type=int, default=0, help="ALN: index of the first subject of this chunk")
    p.add_argument("--count", type=int, default=0, help="ALN: subjects in this chunk (0: all)")
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--length", type=int, default=3000, help="Lorenz recording length (steps)")
    p.add_argument("--rollouts", type=int, default=100)
    p.add_argument("--dstsp-scaling", type=float, default=None, help="ALN: GMM component variance (preset: 1.0)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--floor-lengths", type=int, nargs="+", default=[2250, 5000, 20000, 50000, 90000, 99840],
                   help="floors: lengths of the compared stretches")
    p.add_argument("--snapshot-every", type=int, default=0, help="also save all fits' parameters every N epochs")
    p.add_argument("--train-only", action="store_true", help="train and save, evaluate nothing")
    p.add_argument("--eval-device", default=None,
                   help="evaluate all fits at once with the metric engine on this device (default: one by one on the CPU)")
    p.add_argument("--eval-workers", type=int, default=1, help="processes evaluating fits in parallel")
    args = p.parse_args()
    global EVAL_WORKERS, SNAPSHOT_EVERY, TRAIN_ONLY, EVAL_DEVICE, OUT
    OUT = Path(args.out) if args.out else OUT
    args.dir = args.dir or str(OUT)
    EVAL_WORKERS, SNAPSHOT_EVERY, TRAIN_ONLY = args.eval_workers, args.snapshot_every, args.train_only
    EVAL_DEVICE = args.eval_device
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.which == "aln-compare":
        res = aln_compare(Path(args.dir))
        name = "aln_compare"
    elif args.which == "floors":
        res = {"floors": lorenz_floors(np.load(SHARED / "lorenz63.npy"), args.floor_lengths)}
        res["summary"] = {n: {k: v for k, v in row.items() if k.endswith("_summary")}
                          for n, row in res["floors"].items()}
        name = "lorenz_floors"
    else:
        res = lorenz(args) if args.which == "lorenz" else aln(args)
        name = f"aln_{args.variant}" if args.which == "aln" else (
            "lorenz" if args.variant == "conv" else f"lorenz_{args.variant}")
    res["wall_seconds"] = time.perf_counter() - t0
    res["torch"] = torch.__version__
    res["device"] = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    out_dir = Path(args.dir) if args.which == "aln-compare" else OUT
    (out_dir / f"{name}{args.tag}{args.out_tag}.json").write_text(json.dumps(res, indent=2, default=float))
    print(json.dumps(res["summary"], indent=2))


if __name__ == "__main__":
    main()

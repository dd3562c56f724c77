"""Rank the convSSM against the comparison baselines on the same data, split and metrics (issue 5).

    python benchmarks/baselines.py [--datasets lorenz_tr0.2 lorenz_tr1.2 aln] [--seeds 0 1 2]
                                   [--models convssm ssm_noconv convssm_nogtf s4d ... mindy]
                                   [--epochs 1000] [--steps 2000] [--subjects 20] [--device cpu]
                                   [--seq-device cpu] [--stack-seq ssm2d] [--eval-workers 4]
                                   [--shard i/n] [--tag NAME] [--out benchmarks/results/baselines]
    python benchmarks/baselines.py --merge DIR [DIR ...] [--out DIR]

Every (model, dataset, recording, seed) is fitted on the training part (3:1 split) and generates closed
loop as many steps as the whole recording (convSSM family: from the state at the first valid target,
as :func:`dsr.analysis.evaluate.evaluate` does; sequence baselines: from their own state after a 50-step
teacher-forced prefix ending at the end of the training part). Every series is standardised with the
mean and standard deviation of its training part. D_stsp and D_H compare the generation with the whole
observed series; where the dataset has ground-truth latents, D_stsp_latent compares the generated latents
with them (each z-scored; for sequence baselines the generated observations stand in for their latents;
MINDy is fitted to the Wiener-deconvolved series and its output is filtered back through the HRF). PE_n
is the n-step prediction error on the test part (n = the preset's ``eval.pe_steps``; MINDy: in the
deconvolved space) and λ_max the largest Lyapunov exponent per step (convSSM: QR along the latent orbit;
sequence baselines: two-trajectory estimate on their whole recurrent state).

convSSM-family fits of one dataset (recordings × seeds) are trained stacked in one ``train()`` call
(``--device cuda`` puts them on the GPU) and evaluated one at a time on the CPU. Sequence baselines
run one fit at a time, except those named in ``--stack-seq``: all recordings × seeds of a dataset are
trained at once with ``torch.func.vmap`` (:func:`train_sequence_stack`, same per-fit result as
``train_sequence_model``; worth it on the GPU) and evaluated by ``--eval-workers`` processes. ``--shard i/n`` keeps the i-th of n cost-balanced parts of their fits, so
independent processes can share the work. Every process writes ``rows-<tag>.tsv`` (rewritten
atomically after every fit); ``--merge`` collects the ``rows-*.tsv`` of the folders given into
``results.tsv`` (one row per fit), ``table.md`` (median and IQR per model × dataset) and ``dstsp.png``.
A run without ``--shard``/``--tag`` merges its own rows at the end.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.analysis.dstsp import dstsp  # noqa: E402
from dsr.analysis.evaluate import evaluate, zscore  # noqa: E402
from dsr.analysis.spectrum import dh  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.baselines import make_baseline  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.pipelines.fit_array import build_filter, resolve_device  # noqa: E402
from dsr.signal.convolution import convolve_np  # noqa: E402
from dsr.signal.deconvolution import wiener_deconvolve  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from dsr.training.loop import log_progress, train  # noqa: E402
from dsr.training.sequence import SequenceTrainConfig, _windows, closed_loop, train_sequence_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines_table import merge, summarise, write_tsv_atomic  # noqa: E402

SHARED = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
CONV_MODELS = {"convssm": {}, "ssm_noconv": {"filter": {"kind": "none"}},
               "convssm_nogtf": {"train": {"forcing": "none"}}}
SEQ_MODELS = {"s4d": {}, "s4d_real_inv": {"complex": False, "init": "inv"}, "selective": {}, "lru": {},
              "ssm2d": {}, "mindy": {}}
EVAL = {"n_rollouts": 2, "lyap_steps": 200, "lyap_transient": 50, "lyap_orbits": 1}
WARMUP = 50  # teacher-forced prefix of every sequence-baseline generation
TRAIN_FRACTION = 0.75
KEYS = ["dataset", "recording", "model", "seed", "status", "device", "stack", "train_seconds", "eval_seconds",
        "seconds", "dstsp", "dh", "dstsp_latent", "pe", "pe_steps", "lyap_max"]
# ms per optimiser step at one CPU thread (measured on the dev machine), used only to balance shards
STEP_MS = {"s4d": (7, 9), "s4d_real_inv": (6, 6), "selective": (34, 27), "lru": (7.4, 7.1), "ssm2d": (41, 520),
           "mindy": (1, 1), "conv": (30, 30)}


def datasets(names, n_subjects):
    """Yield (dataset, recording id, x (T, N), TR, latent truth (T, n) or None, preset)."""
    for name in names:
        if name.startswith("lorenz"):
            L = np.load(SHARED / "lorenz63.npy")  # (100000, 3), dt = 0.01
            tr = float(name.split("_tr")[1])
            h = spm_hrf(tr)
            T = 3000
            noise = 0.01 * np.random.default_rng(1234).standard_normal((T, 3))
            x = convolve_np(L[:T + len(h)], h)[len(h):] + noise  # (T, 3)
            yield name, "lorenz", x, tr, L[len(h):T + len(h)], "lorenz63"
        elif name == "aln":
            for sub in sorted(p.stem for p in (SHARED / "aln" / "bold").glob("sub-*.npy"))[:n_subjects]:
                yield (name, sub, np.load(SHARED / "aln" / "bold" / f"{sub}.npy"), 0.5,
                       np.load(SHARED / "aln" / "latent" / f"{sub}.npy"), "aln")
        else:
            raise SystemExit(f"unknown dataset {name!r}")


def standardise_train(x: np.ndarray, n_train: int) -> np.ndarray:
    """(T, N) standardised with the mean and std of its first n_train rows (as the convSSM's data prep)."""
    sd = x[:n_train].std(0)
    return (x - x[:n_train].mean(0)) / np.where(sd > 0, sd, 1.0)


def conv_config(model: str, preset: str, epochs: int):
    """The preset with the model's overrides, ``epochs`` and the benchmark's cheap evaluation settings."""
    over = {k: dict(v) for k, v in CONV_MODELS[model].items()}
    over.setdefault("train", {}).update(epochs=epochs, train_fraction=TRAIN_FRACTION)
    over["eval"] = dict(EVAL)
    return load_config(preset, **over)


def conv_stack(model: str, recs: list, seeds: list[int], epochs: int, device: str):
    """Train every (recording, seed) of one dataset as one stacked convSSM-family model; evaluate each alone.

    Parameters
    ----------
    recs : list of (dataset, recording, x (T, N), TR, truth, preset)
        The recordings of one dataset (one TR, one preset).

    Yields
    ------
    dict
        One result per fit (recording-major, then seed), with its standardised generation.
    """
    preset, tr = recs[0][5], recs[0][3]
    cfg = conv_config(model, preset, epochs)
    h = build_filter(cfg, tr)  # (K,)
    fits = [(r, s) for r in recs for s in seeds]
    subjects = [prepare_subject(r[2], h, cfg, standardise=True) for r, _ in fits]
    spec = ConvSSMSpec(cfg.model.latent_model, cfg.model.latent_dim, cfg.model.hidden_dim, cfg.model.observation,
                       n_obs=recs[0][2].shape[1], tr=float(tr))
    filt = torch.as_tensor(h)[None].expand(len(fits), -1).contiguous()  # (S, K)
    net = ConvSSM.initialise(spec, filt, [s for _, s in fits]).to(resolve_device(device))
    t0 = time.perf_counter()
    outcome = train(net, subjects, cfg.train, [s for _, s in fits], progress=log_progress(every=max(epochs // 5, 1)))
    train_s = time.perf_counter() - t0
    net.to("cpu")
    for i, ((ds, rec, x, _, truth, _), seed) in enumerate(fits):
        t1 = time.perf_counter()
        sd = subjects[i]
        met, xg, zg = evaluate(net.subject(i), [sd], cfg.eval, [seed])[0]  # xg (T, N) std units, zg (T+K-1, M)
        lat = zg[len(h) - 1:, :truth.shape[1]] if truth is not None else None  # latent at observation times
        yield {"dataset": ds, "recording": rec, "model": model, "seed": seed, "x": sd.x, "gen": xg,
               "lat": lat, "truth": truth, "pe": met.pe_test, "pe_steps": cfg.eval.pe_steps,
               "lyap_max": met.lyapunov_max, "status": outcome.status[i], "device": device,
               "stack": len(fits), "train_seconds": train_s / len(fits), "eval_seconds": time.perf_counter() - t1}


def seq_prediction_error(model, params, xs: np.ndarray, n_train: int, n: int) -> float:
    """PE_n on the test part: from every time t (50-step teacher-forced prefix ending at t) predict t + n."""
    t = np.arange(max(n_train - n, WARMUP - 1), len(xs) - n)  # last prefix step of each prediction
    prefixes = xs[t[:, None] + np.arange(-WARMUP + 1, 1)]  # (I, WARMUP, N)
    pred = closed_loop(model, params, prefixes, n)[:, -1]  # (I, N) predictions of xs[t + n]
    return float(np.mean((pred - xs[t + n]) ** 2))


def _perturbed(v: torch.Tensor, d: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Row 1 of a batch-2 tensor moved to row 0 + scale · d."""
    return torch.stack([v[0], v[0] + scale * d])


def seq_lyapunov(model, params, prefix: np.ndarray, n_steps: int, transient: int, seed: int,
                 eps: float = 1e-7) -> float:
    """Largest Lyapunov exponent per step of the closed-loop map on (output, recurrent state), float64.

    Two trajectories, the second renormalised to distance ``eps`` after every step (Benettin).
    """
    p64 = {k: v.double() for k, v in params.items()}
    xp = torch.as_tensor(prefix, dtype=torch.float64)[None].expand(2, -1, -1)  # (2, T0, N)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        state, y = model.init_state(p64, 2), None
        for t in range(xp.shape[1]):
            y, state = model.step(p64, state, xp[:, t])  # y (2, N)
        for _ in range(transient):
            y, state = model.step(p64, state, y)
        parts = [y] + list(state)
        dirs = [torch.randn(v[0].shape, generator=gen, dtype=v.dtype) for v in parts]
        norm = torch.sqrt(sum(d.abs().pow(2).sum() for d in dirs))
        parts = [_perturbed(v, d, eps / norm) for v, d in zip(parts, dirs)]
        total = 0.0
        for _ in range(n_steps):
            y, state = model.step(p64, parts[1:], parts[0])
            parts = [y] + list(state)
            diff = [v[1] - v[0] for v in parts]
            dist = torch.sqrt(sum(d.abs().pow(2).sum() for d in diff))
            if not torch.isfinite(dist) or dist == 0:
                return float("nan")
            total += float(torch.log(dist / eps))
            parts = [_perturbed(v, d, eps / dist) for v, d in zip(parts, diff)]
    return total / n_steps


def seq_fit(rec: tuple, model: str, seed: int, steps: int, device: str) -> dict:
    """Fit one sequence baseline to one recording and evaluate it (generation, PE_n, λ_max)."""
    ds, name, x, tr, truth, preset = rec
    n_train = int(TRAIN_FRACTION * len(x))
    xs = standardise_train(x, n_train)  # (T, N)
    pe_steps = load_config(preset).eval.pe_steps
    m = make_baseline(model.split("_")[0], **SEQ_MODELS[model])
    cfg = SequenceTrainConfig(steps=steps, device=device)
    t0 = time.perf_counter()
    if model == "mindy":  # MINDy is fitted to deconvolved data; its output is filtered back for D_stsp
        h = spm_hrf(tr)
        d = wiener_deconvolve(xs[:n_train], h)  # (n_train, N), NaN edges
        d = d[np.isfinite(d).all(1)]
        params = train_sequence_model(m, d, cfg, seed=seed)
        train_s, t1 = time.perf_counter() - t0, time.perf_counter()
        lat = closed_loop(m, params, d[-WARMUP:], len(x))  # (T, N)
        gen = convolve_np(lat, h)
        d_all = wiener_deconvolve(xs, h)  # PE_n in the deconvolved space
        ok = np.flatnonzero(np.isfinite(d_all).all(1))
        d_all, n_tr = d_all[ok[0]:ok[-1] + 1], int(np.sum(ok < n_train))
        pe = seq_prediction_error(m, params, d_all, n_tr, pe_steps)
        lyap = seq_lyapunov(m, params, d[-WARMUP:], EVAL["lyap_steps"], EVAL["lyap_transient"], seed)
    else:
        params = train_sequence_model(m, xs[:n_train], cfg, seed=seed)
        return seq_evaluate(rec, model, seed, params, time.perf_counter() - t0, device, 1)
    return {"dataset": ds, "recording": name, "model": model, "seed": seed, "x": xs, "gen": gen, "lat": lat,
            "truth": truth, "pe": pe, "pe_steps": pe_steps, "lyap_max": lyap,
            "status": "ok" if np.isfinite(gen).all() else "diverged", "device": device, "stack": 1,
            "train_seconds": train_s, "eval_seconds": time.perf_counter() - t1}


def seq_evaluate(rec: tuple, model: str, seed: int, params: dict, train_s: float, device: str, stack: int) -> dict:
    """Generation, PE_n and λ_max of one fitted sequence baseline (not MINDy) on its recording."""
    ds, name, x, tr, truth, preset = rec
    t1 = time.perf_counter()
    n_train = int(TRAIN_FRACTION * len(x))
    xs = standardise_train(x, n_train)  # (T, N)
    pe_steps = load_config(preset).eval.pe_steps
    m = make_baseline(model.split("_")[0], **SEQ_MODELS[model])
    gen = closed_loop(m, params, xs[n_train - WARMUP:n_train], len(x))  # (T, N)
    pe = seq_prediction_error(m, params, xs, n_train, pe_steps)
    lyap = seq_lyapunov(m, params, xs[n_train - WARMUP:n_train], EVAL["lyap_steps"], EVAL["lyap_transient"], seed)
    return {"dataset": ds, "recording": name, "model": model, "seed": seed, "x": xs, "gen": gen, "lat": gen,
            "truth": truth, "pe": pe, "pe_steps": pe_steps, "lyap_max": lyap,
            "status": "ok" if np.isfinite(gen).all() else "diverged", "device": device, "stack": stack,
            "train_seconds": train_s, "eval_seconds": time.perf_counter() - t1}


def train_sequence_stack(model, series: list[np.ndarray], seeds: list[int], cfg: SequenceTrainConfig
                         ) -> list[dict[str, torch.Tensor]]:
    """Train len(series) independent fits of one sequence baseline at once (``torch.func.vmap``).

    Fit i is what ``train_sequence_model(model, series[i], cfg, seed=seeds[i])`` does: parameters
    from its seed, windows from ``default_rng(seed)``, Adam (element-wise, so one optimiser over the
    stacked tensors updates each fit on its own), the same learning-rate decay, and gradient
    clipping by each fit's own gradient norm. Returns one detached CPU parameter dict per fit.
    """
    if cfg.optimizer != "adam" or cfg.input_noise > 0 or cfg.burn_in or cfg.time_limit_s is not None:
        raise SystemExit("train_sequence_stack supports the default SequenceTrainConfig only")
    dtype, dev = getattr(torch, cfg.dtype), torch.device(cfg.device)
    inits = [model.init_params(x.shape[1], s) for x, s in zip(series, seeds)]
    p = {k: torch.stack([q[k] for q in inits]).to(dev, dtype).requires_grad_(True) for k in inits[0]}  # (S, ...)
    opt = torch.optim.Adam(list(p.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, (cfg.lr_end / cfg.lr) ** (1 / max(cfg.steps - 1, 1)))
    rngs = [np.random.default_rng(s) for s in seeds]

    def loss_one(params, w):  # one fit: params of one fit, windows (B, L+1, N)
        pred = model.forward(params, w[:, :-1])  # (B, L, N)
        return (pred - w[:, 1:]).pow(2).mean() + model.regularisation(params)

    loss_all = torch.func.vmap(loss_one)
    for _ in range(cfg.steps):
        w = np.stack([_windows(x, r, cfg.batch_size, cfg.seq_len) for x, r in zip(series, rngs)])  # (S, B, L+1, N)
        loss = loss_all(p, torch.as_tensor(w, dtype=dtype, device=dev))  # (S,)
        opt.zero_grad()
        loss.sum().backward()
        if cfg.grad_clip > 0:  # per-fit global norm, as clip_grad_norm_ on one fit
            norms = torch.sqrt(sum(v.grad.pow(2).flatten(1).sum(1) for v in p.values()))  # (S,)
            scale = (cfg.grad_clip / (norms + 1e-6)).clamp(max=1.0)  # (S,)
            for v in p.values():
                v.grad.mul_(scale.view(-1, *[1] * (v.ndim - 1)))
        opt.step()
        sched.step()
    return [{k: v[i].detach().cpu() for k, v in p.items()} for i in range(len(series))]


def seq_stack(model: str, recs: list, seeds: list[int], steps: int, device: str, eval_workers: int = 1):
    """Train every (recording, seed) of one dataset stacked (:func:`train_sequence_stack`); yield each evaluated."""
    if model == "mindy":
        raise SystemExit("--stack-seq: MINDy trains on deconvolved series; run it per fit")
    fits = [(r, s) for r in recs for s in seeds]
    series = [standardise_train(r[2], int(TRAIN_FRACTION * len(r[2])))[:int(TRAIN_FRACTION * len(r[2]))]
              for r, _ in fits]
    m = make_baseline(model.split("_")[0], **SEQ_MODELS[model])
    t0 = time.perf_counter()
    params = train_sequence_stack(m, series, [s for _, s in fits], SequenceTrainConfig(steps=steps, device=device))
    train_s = (time.perf_counter() - t0) / len(fits)
    print(f"{model} stack of {len(fits)} trained in {train_s * len(fits):.1f} s", flush=True)
    jobs_ = [(r, model, s, p, train_s, device, len(fits)) for (r, s), p in zip(fits, params)]
    if eval_workers <= 1:
        for job in jobs_:
            yield seq_evaluate(*job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(eval_workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield from ex.map(_seq_evaluate_job, jobs_)  # in order, as each finishes


def _seq_evaluate_job(job: tuple) -> dict:
    """:func:`seq_evaluate` in a worker process (one thread)."""
    torch.set_num_threads(1)
    return seq_evaluate(*job)


def score(fit: dict) -> dict:
    """One results row: D_stsp, D_H (observation space) and D_stsp_latent of one fit."""
    t0 = time.perf_counter()
    xs, gen, lat, truth, seed = fit["x"], fit["gen"], fit["lat"], fit["truth"], fit["seed"]
    ok = np.isfinite(gen).all()
    row = {k: v for k, v in fit.items() if k in KEYS}
    row["dstsp"] = dstsp(xs, gen, seed=seed) if ok else np.inf
    row["dh"] = dh(xs, gen) if ok else 1.0
    row["dstsp_latent"] = np.nan
    if truth is not None and lat is not None:
        n = min(len(truth), len(lat))
        row["dstsp_latent"] = (dstsp(zscore(truth[:n]), zscore(lat[:n]), seed=seed)
                               if np.isfinite(lat[:n]).all() else np.inf)
    row["eval_seconds"] += time.perf_counter() - t0
    row["seconds"] = row["train_seconds"] + row["eval_seconds"]
    return {k: row.get(k) for k in KEYS}


def jobs(args) -> list[tuple]:
    """Every unit of work: ("conv", model, dataset, None, None) stacks and ("seq", model, dataset, rec, seed)."""
    recs = {}
    for rec in datasets(args.datasets, args.subjects):
        recs.setdefault(rec[0], []).append(rec)
    out = []
    for ds in args.datasets:
        for model in args.models:
            if model in CONV_MODELS:
                out.append(("conv", model, ds, recs[ds], None))
            elif model in SEQ_MODELS and model in args.stack_seq:
                out.append(("seqstack", model, ds, recs[ds], None))
            elif model in SEQ_MODELS:
                out += [("seq", model, ds, r, s) for r in recs[ds] for s in args.seeds]
            else:
                raise SystemExit(f"unknown model {model!r}")
    return out


def job_cost(job, args) -> float:
    """Rough single-thread seconds of one job (only used to balance shards)."""
    kind, model, ds, recs, _ = job
    ms = STEP_MS["conv" if kind == "conv" else model][ds == "aln"]
    if kind in ("conv", "seqstack"):
        steps = args.epochs * 50 if kind == "conv" else args.steps
        return len(recs) * len(args.seeds) * (steps * ms / 1e3 + 2)
    return args.steps * ms / 1e3 + 2


def shard(all_jobs: list, spec: str | None, args) -> list:
    """The jobs of shard ``i/n``: longest-processing-time-first assignment to n balanced parts."""
    if not spec:
        return all_jobs
    i, n = (int(v) for v in spec.split("/"))
    if not 0 <= i < n:
        raise SystemExit(f"--shard {spec}: need 0 <= i < n")
    load = [0.0] * n
    mine = []
    order = sorted(range(len(all_jobs)), key=lambda j: -job_cost(all_jobs[j], args))  # stable: ties by index
    for j in order:
        k = int(np.argmin(load))
        load[k] += job_cost(all_jobs[j], args)
        if k == i:
            mine.append(all_jobs[j])
    return mine


def run(args) -> Path:
    """Run this process's jobs, rewriting ``rows-<tag>.tsv`` after every fit; returns its path."""
    todo = shard(jobs(args), args.shard, args)
    tag = args.tag or (f"shard{args.shard.replace('/', 'of')}" if args.shard else "all")
    path = args.out / f"rows-{tag}.tsv"
    rows = []
    print(f"{tag}: {len(todo)} jobs, ~{sum(job_cost(j, args) for j in todo):.0f} s at 1 thread", flush=True)
    for kind, model, ds, rec, seed in todo:
        if kind == "conv":
            fits = conv_stack(model, rec, args.seeds, args.epochs, args.device)
        elif kind == "seqstack":
            fits = seq_stack(model, rec, args.seeds, args.steps, args.seq_device, args.eval_workers)
        else:
            fits = [seq_fit(rec, model, seed, args.steps, args.seq_device)]
        for fit in fits:  # stacks yield their fits one by one as they are evaluated
            rows.append(score(fit))
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
            write_tsv_atomic(pd.DataFrame(rows, columns=KEYS), path)
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["lorenz_tr0.2", "lorenz_tr1.2", "aln"])
    p.add_argument("--models", nargs="+", default=list(CONV_MODELS) + list(SEQ_MODELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=1000, help="convSSM-family epochs (50 optimiser steps each)")
    p.add_argument("--steps", type=int, default=2000, help="sequence-baseline optimiser steps")
    p.add_argument("--subjects", type=int, default=20, help="ALN subjects (the first ones by name)")
    p.add_argument("--device", default="cpu", help="where the stacked convSSM-family fits train (cpu, cuda)")
    p.add_argument("--seq-device", default="cpu", help="where the sequence baselines train")
    p.add_argument("--stack-seq", nargs="*", default=[], help="sequence models trained stacked per dataset "
                   "(all recordings x seeds at once, torch.func.vmap; for the GPU)")
    p.add_argument("--eval-workers", type=int, default=1, help="processes evaluating a --stack-seq stack")
    p.add_argument("--shard", default=None, help="i/n: run the i-th of n cost-balanced parts of the jobs")
    p.add_argument("--tag", default=None, help="name of this process's rows file (rows-<tag>.tsv)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="only merge the rows-*.tsv of these folders")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "baselines")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.merge:
        print(summarise(merge(args.merge, args.out)))
        return
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    run(args)
    if not args.shard and not args.tag:
        print(summarise(merge([args.out], args.out)))


if __name__ == "__main__":
    main()

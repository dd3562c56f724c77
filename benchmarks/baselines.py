"""Rank the convSSM against the comparison baselines on the same data, split and metrics (issue 5).

    python benchmarks/baselines.py [--datasets lorenz_tr0.2 lorenz_tr1.2 aln] [--seeds 0 1 2]
                                   [--models convssm ssm_noconv convssm_nogtf s4d ... mindy]
                                   [--epochs 1000] [--steps 2000] [--subjects 20] [--device cpu]
                                   [--seq-device cpu] [--stack-seq ssm2d] [--eval-workers 4]
                                   [--shard i/n] [--tag NAME] [--out benchmarks/results/baselines]
    python benchmarks/baselines.py --merge DIR [DIR ...] [--out DIR]

Every (model, dataset, recording, seed) is fitted on the training part (3:1 split) and generates closed
loop as many steps as the whole recording, deterministically (convSSM family: from the state at the first
valid target, as :func:`dsr.analysis.evaluate.evaluate` does; sequence baselines: from their own state
after a 50-step teacher-forced warm-up ending at the end of the training part). Every series is
standardised with the mean and standard deviation of its training part. D_stsp and D_H compare the
generation with the whole observed series; where the dataset has ground-truth latents, D_stsp_latent
compares the generated latents with them (each z-scored; for sequence baselines the generated
observations stand in for their latents; MINDy is fitted to the Wiener-deconvolved series and its
latent output is filtered back through the HRF). PE_n is the n-step prediction error on the test part
(n = the preset's ``eval.pe_steps``; MINDy: in the deconvolved space) and λ_max the largest Lyapunov
exponent per step (convSSM: QR along the latent orbit; sequence baselines: two-trajectory estimate on
their whole recurrent state). The sequence baselines are fitted and evaluated by the library
(:func:`dsr.training.baselines_fit.fit_baselines`, :func:`dsr.analysis.baseline_metrics.evaluate_baselines`);
this script only chooses the data, the budget and the table.

convSSM-family fits of one dataset (recordings × seeds) are trained stacked in one ``train()`` call
(``--device cuda`` puts them on the GPU) and evaluated one at a time on the CPU. Sequence baselines
run one fit at a time, except those named in ``--stack-seq``: all recordings × seeds of a dataset are
trained at once with ``torch.func.vmap`` (``fit_baselines(..., stack=True)``, same per-fit result as one
at a time; worth it on the GPU) and evaluated by ``--eval-workers`` processes. ``--shard i/n`` keeps the
i-th of n cost-balanced parts of their fits, so
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

from dsr.analysis.baseline_metrics import evaluate_baselines  # noqa: E402
from dsr.analysis.dstsp import dstsp  # noqa: E402
from dsr.analysis.evaluate import evaluate, zscore  # noqa: E402
from dsr.analysis.spectrum import dh  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.baselines.fitted import FittedBaseline  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.pipelines.fit_array import build_filter, resolve_device  # noqa: E402
from dsr.signal.convolution import convolve_np  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from dsr.training.loop import log_progress, train  # noqa: E402
from dsr.training.baselines_fit import WARMUP, fit_baselines  # noqa: E402
from dsr.training.sequence import SequenceTrainConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines_table import merge, summarise, write_tsv_atomic  # noqa: E402

SHARED = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
CONV_MODELS = {"convssm": {}, "ssm_noconv": {"filter": {"kind": "none"}},
               "convssm_nogtf": {"train": {"forcing": "none"}}}
SEQ_MODELS = {"s4d": {}, "s4d_real_inv": {"complex": False, "init": "inv"}, "selective": {}, "lru": {},
              "ssm2d": {}, "mindy": {}}
EVAL = {"n_rollouts": 2, "lyap_steps": 200, "lyap_transient": 50, "lyap_orbits": 1}
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


def seq_family(model: str) -> tuple[str, dict]:
    """The baseline family and its config overrides of a benchmark model name."""
    return model.split("_")[0], SEQ_MODELS[model]


def seq_train_config(steps: int, device: str) -> SequenceTrainConfig:
    return SequenceTrainConfig(steps=steps, device=device)


def seq_result(rec: tuple, model: str, seed: int, fit: FittedBaseline, train_s: float, device: str,
               stack: int) -> dict:
    """Generation (deterministic, from the end of the training part), PE_n and λ_max of one fit (S = 1)."""
    ds, name, x, tr, truth, preset = rec
    t1 = time.perf_counter()
    n_train = int(TRAIN_FRACTION * len(x))
    ev = evaluate_baselines(fit, [x], n_train, load_config(preset).eval.pe_steps, [seed], EVAL["lyap_steps"],
                            EVAL["lyap_transient"])[0]
    return {"dataset": ds, "recording": name, "model": model, "seed": seed, "x": ev.x, "gen": ev.x_gen,
            "lat": ev.z_gen, "truth": truth, "pe": ev.pe, "pe_steps": ev.pe_steps, "lyap_max": ev.lyapunov_max,
            "status": ev.status, "device": device, "stack": stack, "train_seconds": train_s,
            "eval_seconds": time.perf_counter() - t1}


def seq_fit(rec: tuple, model: str, seed: int, steps: int, device: str) -> dict:
    """Fit one sequence baseline to one recording's training part through the library and evaluate it."""
    x, tr = rec[2], rec[3]
    family, options = seq_family(model)
    fit = fit_baselines(family, [x[:int(TRAIN_FRACTION * len(x))]], [seed], options=options,
                        cfg=seq_train_config(steps, device), tr=tr, warmup=WARMUP)
    return seq_result(rec, model, seed, fit, fit.spec.meta["train_seconds"], device, 1)


def seq_stack(model: str, recs: list, seeds: list[int], steps: int, device: str, eval_workers: int = 1):
    """Train every (recording, seed) of one dataset in one stacked library fit; yield each evaluated."""
    fits = [(r, s) for r in recs for s in seeds]
    family, options = seq_family(model)
    fit = fit_baselines(family, [r[2][:int(TRAIN_FRACTION * len(r[2]))] for r, _ in fits], [s for _, s in fits],
                        options=options, cfg=seq_train_config(steps, device), tr=recs[0][3], warmup=WARMUP,
                        stack=True)
    train_s = fit.spec.meta["train_seconds"] / len(fits)
    print(f"{model} stack of {len(fits)} trained in {train_s * len(fits):.1f} s", flush=True)
    jobs_ = [(r, model, s, fit.subject(i), train_s, device, len(fits)) for i, (r, s) in enumerate(fits)]
    if eval_workers <= 1:
        for job in jobs_:
            yield seq_result(*job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(eval_workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield from ex.map(_seq_result_job, jobs_)  # in order, as each finishes


def _seq_result_job(job: tuple) -> dict:
    """:func:`seq_result` in a worker process (one thread)."""
    torch.set_num_threads(1)
    return seq_result(*job)


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

"""Sequence baselines beside the linear references on held-out real rest fMRI (issue 14, item 2).

Split-half protocol of ``real_rest.py`` / ``real_rest_linear.py``: each subject's series is cut into two
halves; a model is fitted on the first 75 % of one half and its samples (as long as a half) are scored
against the other half with D_stsp (GMM, σ² 1) and D_H (σ 1), everything standardised by the held-out
half (:func:`dsr.analysis.heldout.score_model`). Every model goes through the library: the baselines
by :func:`dsr.training.baselines_fit.fit_baselines` (all 2 × subjects fits of one kind in one call),
the linear references by :mod:`dsr.models.linear`. Baselines are scored with their stochastic generator
(innovations from the training residuals; 20 samples) and with the deterministic one (``*_det``).

    python benchmarks/baselines_heldout.py /tmp/hcp16 [--kinds s4d lru selective mindy ssm2d] [--steps 600]
                                           [--device cpu] [--stack] [--samples 20] [--band 0.01 0.1]
                                           [--out benchmarks/results/baselines_heldout]
    python benchmarks/baselines_heldout.py --smoke      (two simulated subjects, seconds)

Writes ``rows.tsv`` (one row per model × fit) and ``table.md`` (medians, and per baseline how many fits
beat VAR(1)) to ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_rest import band_pass, load_folder, smoke_data  # noqa: E402

from dsr.analysis.heldout import score_model, score_samples  # noqa: E402
from dsr.models.linear import fit_gaussian, fit_lgssm, fit_var1  # noqa: E402
from dsr.signal.filters import make_filter  # noqa: E402
from dsr.training.baselines_fit import fit_baselines  # noqa: E402
from dsr.training.sequence import SequenceTrainConfig  # noqa: E402

TRAIN_FRACTION = 0.75


def halves_of(xs, tr, band):
    """(subject index, half index, training part, other half, own half) of every split-half fit."""
    out = []
    for s, x in enumerate(xs):
        T2 = len(x) // 2
        halves = [x[:T2], x[T2:2 * T2]]
        if band:
            halves = [band_pass(a, tr, band) for a in halves]
        for i in (0, 1):
            out.append((s, i, halves[i][:int(TRAIN_FRACTION * T2)], halves[1 - i], halves[i]))
    return out


def run(names, xs, tr, args) -> pd.DataFrame:
    fits = halves_of(xs, tr, args.band)
    train, other = [f[2] for f in fits], [f[3] for f in fits]
    rows = []

    def add(model, scores, seconds, **extra):
        for (s, i, *_), sc in zip(fits, scores):
            rows.append({"subject": names[s], "half": i, "model": model, "dstsp": sc["dstsp"], "dh": sc["dh"],
                         "seconds": seconds / len(fits), **extra})

    h = make_filter("spm", tr)
    for name, fitter in (("var1", lambda: fit_var1(train, tr)), ("gaussian", lambda: fit_gaussian(train, tr)),
                         ("lgssm", lambda: fit_lgssm(train, h, tr))):
        t0 = time.perf_counter()
        add(name, score_model(fitter(), other, args.samples, args.seed), time.perf_counter() - t0)
    add("other_half_floor", [score_samples(f[3], [f[4]], seed=args.seed) for f in fits], 0.0)  # the data's floor
    cfg = SequenceTrainConfig(steps=args.steps, device=args.device)
    for kind in args.kinds:
        t0 = time.perf_counter()
        fit = fit_baselines(kind, train, [args.seed] * len(train), cfg=cfg, tr=tr, stack=args.stack)
        train_s = time.perf_counter() - t0
        add(kind, score_model(fit, other, args.samples, args.seed), train_s)
        T2 = max(len(o) for o in other)
        det = fit.generate(T2, noise=False)  # (S, 1, T2, N)
        add(f"{kind}_det", [score_samples(o, d, seed=args.seed) for o, d in zip(other, det)], 0.0)
        print(f"{kind}: {len(train)} fits in {train_s:.0f} s", flush=True)
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> str:
    """Markdown: median D_stsp / D_H per model and the fits where a model beats VAR(1) on each."""
    var = df[df.model == "var1"].set_index(["subject", "half"])
    lines = ["| model | fits | D_stsp median | D_H median | beats VAR(1) on D_stsp | on D_H | s / fit |",
             "|---|---|---|---|---|---|---|"]
    for model, g in df.groupby("model", sort=False):
        g = g.set_index(["subject", "half"])
        n = len(g)
        wins = "" if model == "var1" else f"{int((g.dstsp < var.dstsp.loc[g.index]).sum())} / {n}"
        wins_h = "" if model == "var1" else f"{int((g.dh < var.dh.loc[g.index]).sum())} / {n}"
        lines.append(f"| {model} | {n} | {g.dstsp.median():.3g} | {g.dh.median():.3g} | {wins} | {wins_h} | "
                     f"{g.seconds.median():.3g} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", nargs="?", type=Path, help="folder of sub-*.npy (T, N) series with regions.json")
    p.add_argument("--smoke", action="store_true", help="two simulated subjects instead of a folder")
    p.add_argument("--kinds", nargs="+", default=["s4d", "lru", "selective", "mindy"])
    p.add_argument("--steps", type=int, default=600, help="optimiser steps per baseline fit")
    p.add_argument("--device", default="cpu")
    p.add_argument("--stack", action="store_true", help="train all fits of a kind at once (torch.func.vmap)")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--band", type=float, nargs=2, default=None, help="band-pass each half (Hz)")
    p.add_argument("--subjects", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "baselines_heldout")
    return p.parse_args(argv)


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        names, xs, tr = smoke_data()
    elif args.folder is None:
        raise SystemExit("give a folder of sub-*.npy series or --smoke")
    else:
        names, xs, tr = load_folder(args.folder, None, args.subjects)
    df = run(names, xs, tr, args)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "rows.tsv", sep="\t", index=False)
    text = table(df)
    (args.out / "table.md").write_text(text)
    print(text)
    return df


if __name__ == "__main__":
    main()

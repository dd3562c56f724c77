"""Rank the convSSM against the comparison baselines on the same data, split and metrics (issue 5).

    python benchmarks/baselines.py [--datasets lorenz_tr0.2 lorenz_tr1.2 aln] [--seeds 0 1 2]
                                   [--models convssm ssm_noconv convssm_nogtf s4d ... mindy]
                                   [--epochs 1000] [--steps 2000] [--subjects 20] [--out benchmarks/results/baselines]

Every (model, dataset, recording, seed) is fitted on the training part (3:1 split) and generates closed
loop, from its own state at the end of the training part, as many steps as the whole recording; D_stsp
and D_H compare that with the whole observed series (standardised) and, where the dataset has ground-truth
latents, D_stsp_latent compares the generated series with the latents (z-scored; for sequence baselines the
generated observations stand in for their latents; MINDy is fitted to the Wiener-deconvolved series and
its output is filtered back through the HRF). Writes ``results.tsv`` (one row per fit),
``table.md`` (median and IQR per model × dataset) and ``dstsp.png``.
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
from dsr.analysis.evaluate import zscore  # noqa: E402
from dsr.analysis.spectrum import dh  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.baselines import make_baseline  # noqa: E402
from dsr.pipelines.fit_array import fit  # noqa: E402
from dsr.signal.convolution import convolve_np  # noqa: E402
from dsr.signal.deconvolution import wiener_deconvolve  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.sequence import SequenceTrainConfig, closed_loop, train_sequence_model  # noqa: E402

SHARED = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
CONV_MODELS = {"convssm": {}, "ssm_noconv": {"filter": {"kind": "none"}},
               "convssm_nogtf": {"train": {"forcing": "none"}}}
SEQ_MODELS = {"s4d": {}, "s4d_real_inv": {"complex": False, "init": "inv"}, "selective": {}, "lru": {},
              "ssm2d": {}, "mindy": {}}


def datasets(names, n_subjects):
    """Yield (dataset, recording id, x (T, N), TR, latent truth or None, preset)."""
    for name in names:
        if name.startswith("lorenz"):
            L = np.load(SHARED / "lorenz63.npy")
            tr = float(name.split("_tr")[1])
            h = spm_hrf(tr)
            T = 3000
            x = convolve_np(L[:T + len(h)], h)[len(h):] + 0.01 * np.random.default_rng(1234).standard_normal((T, 3))
            yield name, "lorenz", x, tr, L[len(h):T + len(h)], "lorenz63"
        elif name == "aln":
            for sub in sorted(p.stem for p in (SHARED / "aln" / "bold").glob("sub-*.npy"))[:n_subjects]:
                yield (name, sub, np.load(SHARED / "aln" / "bold" / f"{sub}.npy"), 0.5,
                       np.load(SHARED / "aln" / "latent" / f"{sub}.npy"), "aln")


def run_one(model, x, tr, truth, preset, seed, args):
    """Fit one model to one recording; returns (observed-space generation (T, N), latent-like (T', n), seconds)."""
    t0 = time.perf_counter()
    if model in CONV_MODELS:
        over = {k: dict(v) for k, v in CONV_MODELS[model].items()}
        over.setdefault("train", {})["epochs"] = args.epochs
        over["eval"] = {"n_rollouts": 2, "lyap_steps": 200, "lyap_transient": 50, "lyap_orbits": 1}
        res = fit(x, tr, load_config(preset, **over), seed=seed, standardise=True)
        gen = (res.x_gen - res.data.mean) / res.data.std
        return gen, res.z_gen[:, :x.shape[1]], time.perf_counter() - t0
    n_train = int(0.75 * len(x))
    xs = zscore(x)
    m = make_baseline(model.split("_")[0], **SEQ_MODELS[model])
    if model == "mindy":  # MINDy is fitted to deconvolved data; its output is filtered back for D_stsp
        h = spm_hrf(tr)
        d = wiener_deconvolve(xs[:n_train], h)
        d = d[np.isfinite(d).all(1)]
        params = train_sequence_model(m, d, SequenceTrainConfig(steps=args.steps), seed=seed)
        lat = closed_loop(m, params, d[-50:], len(x))
        return convolve_np(lat, h), lat, time.perf_counter() - t0
    params = train_sequence_model(m, xs[:n_train], SequenceTrainConfig(steps=args.steps), seed=seed)
    gen = closed_loop(m, params, xs[n_train - 50:n_train], len(x))
    return gen, gen, time.perf_counter() - t0


def summarise(df: pd.DataFrame) -> str:
    rows = ["| dataset | model | n | D_stsp | D_H | D_stsp latent | fit s |", "|---|---|---|---|---|---|---|"]
    for (ds, model), g in df.groupby(["dataset", "model"], sort=True):
        def cell(col):
            v = g[col].to_numpy(float)
            v = v[np.isfinite(v)]
            if not v.size:
                return "n/a"
            q1, med, q3 = np.percentile(v, [25, 50, 75])
            return f"{med:.3g} [{q1:.3g}, {q3:.3g}]"
        rows.append(f"| {ds} | {model} | {len(g)} | {cell('dstsp')} | {cell('dh')} | {cell('dstsp_latent')} | "
                    f"{cell('seconds')} |")
    return "\n".join(rows) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", nargs="+", default=["lorenz_tr0.2", "lorenz_tr1.2", "aln"])
    p.add_argument("--models", nargs="+", default=list(CONV_MODELS) + list(SEQ_MODELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=1000, help="convSSM-family epochs")
    p.add_argument("--steps", type=int, default=2000, help="sequence-baseline optimiser steps")
    p.add_argument("--subjects", type=int, default=20)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "baselines")
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for ds, rec, x, tr, truth, preset in datasets(args.datasets, args.subjects):
        xz = zscore(x)
        for model in args.models:
            for seed in args.seeds:
                gen, lat, secs = run_one(model, x, tr, truth, preset, seed, args)
                ok = np.isfinite(gen).all()
                n = min(len(truth), len(lat)) if truth is not None else 0
                row = {"dataset": ds, "recording": rec, "model": model, "seed": seed, "seconds": secs,
                       "dstsp": dstsp(xz, gen, seed=seed) if ok else np.inf,
                       "dh": dh(xz, gen) if ok else 1.0,
                       "dstsp_latent": (dstsp(zscore(truth[:n]), zscore(lat[:n]), seed=seed)
                                        if truth is not None and np.isfinite(lat).all() else np.nan)}
                rows.append(row)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
                pd.DataFrame(rows).to_csv(args.out / "results.tsv", sep="\t", index=False)
    df = pd.DataFrame(rows)
    (args.out / "table.md").write_text(summarise(df))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, df["dataset"].nunique(), figsize=(5 * df["dataset"].nunique(), 4), squeeze=False)
    for ax, (ds, g) in zip(axes[0], df.groupby("dataset")):
        models = sorted(g["model"].unique())
        ax.boxplot([g[g["model"] == m]["dstsp"].replace(np.inf, np.nan).dropna() for m in models])
        ax.set_xticks(range(1, len(models) + 1), models, rotation=60, fontsize=7)
        ax.set_title(ds)
        ax.set_ylabel("D_stsp")
    fig.tight_layout()
    fig.savefig(args.out / "dstsp.png", dpi=90)
    print(summarise(df))


if __name__ == "__main__":
    main()

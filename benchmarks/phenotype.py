"""Phenotype prediction: dynamics features vs connectivity vs end-to-end sequence encoders (issue 19).

    python benchmarks/phenotype.py [--cohorts 50 200] [--seeds 0 1] [--folds 5] [--per-site 40]
                                   [--fit-epochs 30] [--fit-batches 10] [--device cpu] [--enc-steps 150]
                                   [--out benchmarks/results/phenotype]
    python benchmarks/phenotype.py --no-within --start-ablation --out benchmarks/results/phenotype/start_ablation
    python benchmarks/phenotype.py --summarise-only [--out DIR]

Data: :func:`dsr.simulate.sites.simulate_cohort` — 8-region Lorenz-96 dynamics through the HRF, 240 s
per subject; the covariate is the hidden forcing F (uniform 4.5–10, as the ``forcing`` column of a
generated participants.tsv). **Within-site**: one clean site (TR 1 s, noise 0.1), 200 subjects; the
cohort of 50 is its first 50 subjects. K-fold cross-validation over subjects, the folds drawn per seed.
**Cross-site**: 4 sites × ``--per-site`` subjects that differ in TR (0.8–2 s, so 120–300 volumes),
scanner gain, noise and motion (:data:`dsr.simulate.sites.DEFAULT_SITES`); leave one site out.
Every recording is z-scored per region before any predictor sees it.

Predictors:

* ``dynamics`` — a convSSM fitted per subject through the library (the ``quick`` preset's model, GTF
  training for ``--fit-epochs`` × ``--fit-batches`` batches on ``--device``, all subjects of one TR
  stacked in one ``train()`` call; one fit seed), then the features of the fitted model from
  :func:`dsr.analysis.attractor.analyse_model` (λ_max, Σλ, Kaplan–Yorke dimension, attractor kind, latent
  amplitude, peak frequency, autocorrelation time; 300-step orbit) + ridge;
* ``data_spectral`` — the same spectral features of the data itself (per-region peak frequency and
  autocorrelation time, median and spread over regions) + ridge: a model-free reference;
* ``fc`` — functional connectivity, the Fisher-z upper triangle of the correlation matrix + ridge;
* ``enc_selective`` / ``enc_s4d`` / ``enc_s4d_real`` / ``enc_rir`` — the encoders of
  :mod:`dsr.models.baselines.encoders` trained end to end (``--enc-steps`` Adam steps on random
  96-step crops, width 16); cross-site adds ``enc_selective_start`` (START on). ``--start-ablation``
  replaces the cross-site encoders by START variants: always on, token-norm saliency, random tokens.

Ridge: missing values set to the training median, test features clipped to the training range (no
extrapolation: a single diverged fit's features would otherwise dominate a fold), features standardised
on the training subjects, the penalty chosen among 13 values (1e-3 … 1e3) by exact leave-one-out on the
training subjects.
Scores per test fold / held-out site: R² (1 − SSE/SST around the test fold's mean) and Spearman ρ.
Writes ``scores.tsv`` (one row per predictor × fold × seed), ``table.md`` and ``summary.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.analysis.attractor import analyse_model, autocorrelation_time  # noqa: E402
from dsr.analysis.evaluate import initial_states  # noqa: E402
from dsr.analysis.spectrum import peak_frequencies  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.io.atomic import atomic_write_text, write_json  # noqa: E402
from dsr.models.baselines.encoders import make_encoder  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.pipelines.fit_array import build_filter  # noqa: E402
from dsr.simulate.sites import CLEAN_SITE, DEFAULT_SITES, simulate_cohort  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from dsr.training.encoders import EncoderTrainConfig, predict_encoder, train_encoder  # noqa: E402
from dsr.training.loop import train  # noqa: E402

ENCODERS = {"enc_selective": ("selective", {}), "enc_s4d": ("s4d", {}), "enc_s4d_real": ("s4d_real", {}),
            "enc_rir": ("rir", {})}
START = {"enc_selective_start": ("selective", {"start": True})}
#: ``--start-ablation``: START always on, saliency by token norm, and random tokens (the saliency control).
START_ABLATION = {"enc_selective_start_p1": ("selective", {"start": True, "start_prob": 1.0}),
                  "enc_selective_start_norm": ("selective", {"start": True, "start_saliency": "norm"}),
                  "enc_selective_start_random": ("selective", {"start": True, "start_saliency": "random"})}
ALPHAS = np.logspace(-3, 3, 13)


# ---- data --------------------------------------------------------------------------------------------
def zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)


def cohort(n: int, seed: int, sites, cache: Path) -> list[dict]:
    """Simulated cohort (cached as .npz: the generator takes ~0.3 s of CPU per subject)."""
    path = cache / f"cohort_{'-'.join(s.name for s in sites)}_n{n}_seed{seed}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        meta = pd.DataFrame({"subject": z["subject"], "site": z["site"], "param": z["param"], "tr": z["tr"]})
        return [dict(row, series=z[f"x{i}"]) for i, row in enumerate(meta.to_dict("records"))]
    recs = simulate_cohort(n, seed=seed, sites=tuple(sites))
    for r in recs:
        r["series"] = zscore(r["series"])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, subject=[r["subject"] for r in recs], site=[r["site"] for r in recs],
             param=[r["param"] for r in recs], tr=[r["tr"] for r in recs],
             **{f"x{i}": r["series"] for i, r in enumerate(recs)})
    return recs


# ---- features ----------------------------------------------------------------------------------------
def fc_features(x: np.ndarray) -> np.ndarray:
    """Fisher-z upper triangle of the region correlation matrix, (N(N-1)/2,)."""
    c = np.corrcoef(x.T)
    return np.arctanh(np.clip(c[np.triu_indices_from(c, 1)], -0.999999, 0.999999))


def spectral_features(x: np.ndarray, tr: float) -> np.ndarray:
    """Median and IQR over regions of the peak frequency (Hz) and the autocorrelation time (s)."""
    pf, act = peak_frequencies(x, tr), autocorrelation_time(x, tr)
    q = lambda v: [np.nanmedian(v), np.subtract(*np.nanpercentile(v, [75, 25]))]  # noqa: E731
    return np.asarray(q(pf) + q(act))


def dynamics_features(recs: list[dict], epochs: int, batches: int, seed: int,
                      device: str = "cpu") -> tuple[np.ndarray, list[str], float]:
    """Fit a convSSM per subject (one stack per TR, trained on ``device``) and return its features (S, F)."""
    cfg = load_config("quick").replace(train={"epochs": epochs, "batches_per_epoch": batches})
    out: list[dict | None] = [None] * len(recs)
    t0 = time.perf_counter()
    for tr in sorted({r["tr"] for r in recs}):
        idx = [i for i, r in enumerate(recs) if r["tr"] == tr]
        h = build_filter(cfg, tr)
        subs = [prepare_subject(recs[i]["series"], h, cfg) for i in idx]
        spec = ConvSSMSpec(cfg.model.latent_model, cfg.model.latent_dim, cfg.model.hidden_dim, cfg.model.observation,
                           n_obs=recs[idx[0]]["series"].shape[1], tr=float(tr))
        seeds = [seed * 100000 + i for i in idx]
        net = ConvSSM.initialise(spec, torch.as_tensor(h)[None].expand(len(idx), -1).contiguous(), seeds).to(device)
        outcome = train(net, subs, cfg.train, seeds)
        net.to("cpu")
        for j, i in enumerate(idx):
            m = net.subject(j)
            z0 = initial_states(m, subs[j], 1, 0.0, torch.Generator().manual_seed(seed))[0, 0].numpy()
            feats = analyse_model(m, z0, n_steps=300, transient=200, cycles=False).features
            feats["diverged"] = float(outcome.status[j] != "ok")
            out[i] = feats
        print(f"  convSSM stack TR={tr}: {len(idx)} fits, {time.perf_counter() - t0:.0f} s so far", flush=True)
    names = sorted(out[0])
    return np.array([[f[k] for k in names] for f in out], dtype=float), names, time.perf_counter() - t0


# ---- ridge -------------------------------------------------------------------------------------------
def ridge_predict(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray) -> tuple[np.ndarray, float]:
    """Ridge with the penalty chosen by exact leave-one-out on the training rows; (predictions, alpha)."""
    with warnings.catch_warnings():  # an all-NaN feature (e.g. peak frequency at fixed points) becomes 0
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(Xtr, 0)
    med = np.where(np.isfinite(med), med, 0.0)
    Xtr, Xte = np.where(np.isfinite(Xtr), Xtr, med), np.where(np.isfinite(Xte), Xte, med)
    Xte = np.clip(Xte, Xtr.min(0), Xtr.max(0))  # no extrapolation: one diverged fit would dominate
    mu, sd = Xtr.mean(0), Xtr.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    A, B = (Xtr - mu) / sd, (Xte - mu) / sd
    ym = ytr.mean()
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    uty = U.T @ (ytr - ym)
    a = float(ALPHAS[np.argmin(ridge_loo(A, ytr, ALPHAS))])
    w = Vt.T @ (s / (s ** 2 + a) * uty)
    return B @ w + ym, a


def ridge_loo(A: np.ndarray, y: np.ndarray, alphas) -> np.ndarray:
    """Exact leave-one-out MSE of ridge with an unpenalised intercept on centred columns A, per alpha."""
    U, s, _ = np.linalg.svd(A, full_matrices=False)
    uty = U.T @ (y - y.mean())
    out = []
    for a in alphas:
        d = s ** 2 / (s ** 2 + a)
        hdiag = (U ** 2) @ d + 1.0 / len(y)  # leverage, the intercept's included
        out.append(np.mean(((y - y.mean() - U @ (d * uty)) / (1 - hdiag)) ** 2))
    return np.asarray(out)


def scores(y: np.ndarray, pred: np.ndarray) -> dict:
    r2 = 1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    ry, rp = pd.Series(y).rank().to_numpy(), pd.Series(pred).rank().to_numpy()
    rho = float(np.corrcoef(ry, rp)[0, 1]) if np.std(rp) > 0 else float("nan")
    return {"r2": float(r2), "rho": rho}


# ---- evaluation --------------------------------------------------------------------------------------
def run_split(setting: str, label: str, recs: list[dict], feats: dict[str, np.ndarray], encoders: dict,
              train_idx: np.ndarray, test_idx: np.ndarray, seed: int, enc_cfg: EncoderTrainConfig) -> list[dict]:
    """Every predictor on one split: rows of scores."""
    y = np.array([r["param"] for r in recs])
    rows = []
    base = {"setting": setting, "split": label, "seed": seed, "n_train": len(train_idx), "n_test": len(test_idx)}
    for name, X in feats.items():
        t0 = time.perf_counter()
        pred, alpha = ridge_predict(X[train_idx], y[train_idx], X[test_idx])
        rows.append(base | {"predictor": name, "alpha": alpha, "seconds": time.perf_counter() - t0}
                    | scores(y[test_idx], pred))
    for name, (backbone, kw) in encoders.items():
        t0 = time.perf_counter()
        enc = make_encoder(backbone, **kw)
        fit = train_encoder(enc, [recs[i]["series"] for i in train_idx], y[train_idx], enc_cfg, seed=seed)
        pred = predict_encoder(enc, fit, [recs[i]["series"] for i in test_idx])
        rows.append(base | {"predictor": name, "alpha": np.nan, "seconds": time.perf_counter() - t0}
                    | scores(y[test_idx], pred))
    return rows


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["setting", "predictor"], sort=False)
    return pd.DataFrame({"r2_mean": g.r2.mean(), "r2_sd": g.r2.std(), "rho_mean": g.rho.mean(), "rho_sd": g.rho.std(),
                         "n_scores": g.r2.size(), "wall_s": g.seconds.sum()}).reset_index()


def table_md(summary: pd.DataFrame) -> str:
    lines = ["| setting | predictor | R² mean ± sd | Spearman ρ mean ± sd | scores | wall s |",
             "|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.setting} | {r.predictor} | {r.r2_mean:.3f} ± {r.r2_sd:.3f} | {r.rho_mean:.3f} ± "
                     f"{r.rho_sd:.3f} | {r.n_scores} | {r.wall_s:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cohorts", nargs="+", type=int, default=[50, 200])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--per-site", type=int, default=40)
    ap.add_argument("--fit-epochs", type=int, default=30)
    ap.add_argument("--fit-batches", type=int, default=10, help="batches per epoch of the convSSM fits")
    ap.add_argument("--device", default="cpu", help="where the convSSM stacks train (features: CPU)")
    ap.add_argument("--enc-steps", type=int, default=150)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--no-sites", action="store_true")
    ap.add_argument("--no-within", action="store_true")
    ap.add_argument("--start-ablation", action="store_true", help="cross-site: START variants (only)")
    ap.add_argument("--no-encoders", action="store_true", help="only the ridge predictors (e.g. a GPU refit)")
    ap.add_argument("--summarise-only", action="store_true", help="rewrite table.md and summary.json from scores.tsv")
    ap.add_argument("--cache", type=Path, default=ROOT / "out" / "phenotype_cache")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "phenotype")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.summarise_only:
        summary = summarise(pd.read_csv(args.out / "scores.tsv", sep="\t"))
        atomic_write_text(args.out / "table.md", table_md(summary))
        old = json.loads((args.out / "summary.json").read_text())
        write_json(args.out / "summary.json", old | {"summary": summary.to_dict(orient="records")})
        print(table_md(summary))
        return 0
    t_start = time.process_time()
    enc_cfg = EncoderTrainConfig(steps=args.enc_steps, batch_size=16, crop=96, lr=1e-2, lr_end=1e-3)
    rows, timing = [], {}
    encoders = {} if args.no_encoders else ENCODERS
    site_encoders = START_ABLATION if args.start_ablation else encoders | ({} if args.no_encoders else START)
    designs = [] if args.no_within else [("within", max(args.cohorts), (CLEAN_SITE,))]
    if not args.no_sites:
        designs.append(("cross_site", args.per_site, DEFAULT_SITES))
    for design, n, sites in designs:
        t0 = time.perf_counter()
        recs = cohort(n, args.data_seed, sites, args.cache)
        timing[f"{design}_simulate_s"] = time.perf_counter() - t0
        fpath = args.cache / f"dynamics_{design}_n{n}_seed{args.data_seed}_e{args.fit_epochs}x{args.fit_batches}.npz"
        if fpath.is_file():
            z = np.load(fpath, allow_pickle=False)
            dyn, dyn_names, dyn_s = z["features"], [str(v) for v in z["names"]], float(z["seconds"])
        else:
            dyn, dyn_names, dyn_s = dynamics_features(recs, args.fit_epochs, args.fit_batches, seed=0,
                                                      device=args.device)
            np.savez(fpath, features=dyn, names=dyn_names, seconds=dyn_s)
        timing[f"{design}_dynamics_fit_s"] = dyn_s
        print(f"{design}: {len(recs)} subjects; dynamics features {dyn_names}", flush=True)
        feats_all = {"dynamics": dyn,
                     "data_spectral": np.array([spectral_features(r["series"], r["tr"]) for r in recs]),
                     "fc": np.array([fc_features(r["series"]) for r in recs])}
        if design == "within":
            for size in args.cohorts:
                sub = recs[:size]
                feats = {k: v[:size] for k, v in feats_all.items()}
                for seed in args.seeds:
                    order = np.random.default_rng(1000 + seed).permutation(size)
                    for k, test in enumerate(np.array_split(order, args.folds)):
                        train_idx = np.setdiff1d(order, test)
                        rows += run_split(f"within n={size}", f"fold{k}", sub, feats, encoders, train_idx, test,
                                          seed, enc_cfg)
                        print(f"  n={size} seed={seed} fold {k}: " + ", ".join(
                            f"{r['predictor']} {r['r2']:.2f}" for r in rows[-len(feats) - len(encoders):]), flush=True)
        else:
            site = np.array([r["site"] for r in recs])
            for seed in args.seeds:
                for s in sorted(set(site)):
                    test, train_idx = np.flatnonzero(site == s), np.flatnonzero(site != s)
                    rows += run_split(f"leave-one-site-out ({len(set(site))}×{n})", f"site {s}", recs, feats_all,
                                      site_encoders, train_idx, test, seed, enc_cfg)
                    print(f"  LOSO seed={seed} site {s}: " + ", ".join(
                        f"{r['predictor']} {r['r2']:.2f}" for r in rows[-len(feats_all) - len(site_encoders):]),
                          flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        df = pd.DataFrame(rows)
        atomic_write_text(args.out / "scores.tsv", df.to_csv(sep="\t", index=False, float_format="%.6g"))
    df = pd.DataFrame(rows)
    summary = summarise(df)
    atomic_write_text(args.out / "table.md", table_md(summary))
    write_json(args.out / "summary.json", {
        "command": "python benchmarks/phenotype.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "budget": {"fit_epochs": args.fit_epochs, "fit_batches_per_epoch": args.fit_batches, "device": args.device,
                   "fit_seeds": 1, "enc_steps": args.enc_steps, "enc_width": 16, "enc_crop": 96,
                   "folds": args.folds, "seeds": args.seeds},
        "timing_s (wall)": timing, "process_cpu_s": time.process_time() - t_start,
        "summary": summary.to_dict(orient="records")})
    print(table_md(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

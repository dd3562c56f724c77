"""Where the convSSM loses held-out D_H on real rest fMRI: power by frequency band, and coloured observation noise.

    python benchmarks/real_rest_spectra.py FITS_DIR HCP_FOLDER [--seeds 1] [--orders 1 4 8] [--out FILE.json]

Reads the stacked fits that ``real_rest.py --save-fits FITS_DIR`` wrote (preset ``rest_fmri``; the data
preparation is redone from HCP_FOLDER, as ``--rescore`` does), keeps the first ``--seeds`` seeds per half, and
for each half (full process and observation covariances, the preset's generator):

* generates 20 samples of the half's length with the observation noise switched off (latent noise on), then
  adds observation noise three ways: white with the residuals' covariance (the product), and per-region AR(p)
  processes fitted by least squares to the training residuals (innovations with their full covariance), one
  per ``--orders``; prints the held-out D_H (σ 1, against the other half) of each;
* prints the power share of the z-scored, smoothed spectra by frequency band for the other half, the
  convSSM's samples and VAR(1)'s, and the squared Hellinger distance per band (what D_H sums).

Session 8 (``results/s8/real_rest_spectra.json``): the residuals are nearly white (lag-1 autocorrelation median
0.12) and coloured noise moves D_H by < 0.01; the deficit is in the generated signal: too much power at
0.03–0.06 Hz and too little at 0.1–0.2 Hz.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from real_rest import load_folder  # noqa: E402

from dsr.analysis.heldout import score_samples  # noqa: E402
from dsr.analysis.noise import estimate_noise, observation_residuals  # noqa: E402
from dsr.analysis.sampling import generate_samples, stack  # noqa: E402
from dsr.analysis.spectrum import power_spectrum_ref  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import OBS_NOISE, OBS_NOISE_CHOL, ConvSSM  # noqa: E402
from dsr.models.linear import fit_var1  # noqa: E402
from dsr.pipelines.fit_array import prepare_unique  # noqa: E402

BANDS = [(0, 0.01), (0.01, 0.03), (0.03, 0.06), (0.06, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 0.7)]
N_SAMPLES = 20


def ar_noise(res: np.ndarray, order: int, n_samples: int, T: int, rng) -> np.ndarray:
    """(n_samples, T, N) draws of per-region AR(order) processes fitted to res (T_r, N) by least squares, with
    the innovations' full covariance; 200 burn-in steps."""
    T_r, N = res.shape
    coefs, inn = np.zeros((N, order)), np.zeros((T_r - order, N))
    for n in range(N):
        lags = np.stack([res[order - j - 1:T_r - j - 1, n] for j in range(order)], 1)  # (T_r - p, p)
        coefs[n] = np.linalg.lstsq(lags, res[order:, n], rcond=None)[0]
        inn[:, n] = res[order:, n] - lags @ coefs[n]
    chol = np.linalg.cholesky(np.cov(inn.T) + 1e-9 * np.eye(N))
    e = rng.standard_normal((n_samples, T + 200, N)) @ chol.T
    out = np.zeros_like(e)
    for t in range(order, T + 200):
        out[:, t] = e[:, t] + sum(coefs[:, j] * out[:, t - j - 1] for j in range(order))
    return out[:, 200:]


def band_shares(p: np.ndarray, freqs: np.ndarray) -> list[float]:
    return [float(p[(freqs >= a) & (freqs < b)].sum()) for a, b in BANDS]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fits")
    ap.add_argument("data")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per half kept (the first ones)")
    ap.add_argument("--orders", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    names, xs, tr = load_folder(Path(args.data), None, None)
    rec = json.loads((Path(args.fits) / "fits.json").read_text())
    T2 = min(len(x) for x in xs) // 2
    halves = [[x[h * T2:(h + 1) * T2] for h in (0, 1)] for x in xs]
    keep = [i for i, f in enumerate(rec["fits"]) if f[2] < args.seeds]
    fits = [tuple(rec["fits"][i]) for i in keep]
    model = ConvSSM.load(Path(args.fits) / "convssm.safetensors")
    model = ConvSSM(model.spec, {k: v[keep] for k, v in model.params.items()}, model.filter[keep])
    cfg = load_config("rest_fmri")
    xs_f = [halves[s][h] for s, h, _ in fits]
    sds = [p[0] for p in prepare_unique(xs_f, tr, [cfg.replace(seed=sd) for *_, sd in fits], [None] * len(xs_f))]
    m = stack([model])
    estimate_noise(m, sds, latent="targets", obs_covariance="full", latent_covariance="full")
    quiet = stack([m])  # the same fits, observation noise off: the generated signal with latent noise
    quiet.params[OBS_NOISE_CHOL] = torch.zeros_like(quiet.params[OBS_NOISE_CHOL])
    quiet.params[OBS_NOISE] = torch.zeros_like(quiet.params[OBS_NOISE])
    X0, _ = generate_samples(quiet, sds, T2, N_SAMPLES, [1000 + i for i in range(len(fits))])  # (F, R, T, N)
    chol = m.params[OBS_NOISE_CHOL].double().numpy()  # (F, N, N)
    rng = np.random.default_rng(0)
    _, R, T, N = X0.shape
    freqs = np.fft.rfftfreq(T2, d=tr)
    dh: dict = {"white": [], **{f"ar{p}": [] for p in args.orders}}
    lag1, power, hell = [], {"other half": [], "convSSM": [], "VAR(1)": []}, {"convSSM": [], "VAR(1)": []}
    for i, ((s, h, _), sd) in enumerate(zip(fits, sds)):
        res = observation_residuals(m.subject(i), sd)  # (T_r, N) standardised
        lag1 += [float(np.corrcoef(res[1:, n], res[:-1, n])[0, 1]) for n in range(N)]
        other = halves[s][1 - h]
        white = rng.standard_normal((R, T, N)) @ chol[i].T
        noises = {"white": white, **{f"ar{p}": ar_noise(res, p, R, T, rng) for p in args.orders}}
        for name, noise in noises.items():
            dh[name].append(score_samples(other, (X0[i] + noise) * sd.std + sd.mean, seed=0)["dh"])
        var = fit_var1([halves[s][h][:sd.n_train]], tr).generate(T2, seed=0, n_samples=R)[0]  # (R, T, N)
        p_d = power_spectrum_ref(other, smoothing=1.0)  # (F, N)
        gens = {"convSSM": (X0[i] + white) * sd.std + sd.mean, "VAR(1)": var}
        power["other half"].append(p_d.mean(1))
        for name, g in gens.items():
            p = np.mean([power_spectrum_ref(x, smoothing=1.0) for x in g], 0)  # (F, N)
            power[name].append(p.mean(1))
            hell[name].append(((np.sqrt(p) - np.sqrt(p_d)) ** 2).mean(1))
    out = {"fits": len(fits), "residual_lag1": {"median": float(np.median(lag1)), "min": float(np.min(lag1)),
                                               "max": float(np.max(lag1))},
           "heldout_dh": {k: {"median": float(np.median(v)), "mean": float(np.mean(v))} for k, v in dh.items()},
           "bands_hz": BANDS,
           "power_share": {k: band_shares(np.mean(v, 0), freqs) for k, v in power.items()},
           "squared_hellinger": {k: band_shares(np.mean(v, 0), freqs) for k, v in hell.items()}}
    print(f"{len(fits)} fits; residual lag-1 autocorrelation median {out['residual_lag1']['median']:.3f}")
    for k, v in out["heldout_dh"].items():
        print(f"observation noise {k:<6} held-out D_H median {v['median']:.4f} (mean {v['mean']:.4f})")
    print("band (Hz)          " + " ".join(f"{a:g}-{b:g}".rjust(9) for a, b in BANDS))
    for what in ("power_share", "squared_hellinger"):
        for k, v in out[what].items():
            print(f"{what[:5]} {k:<12} " + " ".join(f"{x:9.4f}" for x in v))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

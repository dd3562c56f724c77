"""Evaluate a fitted convSSM the paper's way: many rollouts from perturbed initial states.

Metrics (DESIGN §1): D_stsp and D_H of generated against observed series (whole
series, training part, test part), n-step prediction errors PE_n with the
conv-aware alignment, and Lyapunov exponents along generated orbits; and, when
ground-truth latents are given, D_stsp and D_H in latent space. For
``dstsp_latent`` and ``dh_latent`` generated latents and the truth are each
z-scored per dimension, which compares shapes only. With the identity
observation model the latent scale is identified (the filter sums to 1, so the
read-out latents are in the units of the observed channels): then
``dstsp_latent_units`` also compares the generated latents mapped back to data
units with the truth, both standardised by the truth's mean and SD, so a model
whose latents are too smooth or too small (e.g. one without the decoder, whose
latents are the haemodynamic signal) is scored as such.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.analysis.dstsp import dstsp_many
from dsr.analysis.lyapunov import lyapunov_spectrum
from dsr.analysis.spectrum import dh
from dsr.config import EvalConfig
from dsr.models.convssm import ConvSSM
from dsr.training.data import SubjectData


def _t(a, model):
    return torch.as_tensor(a, dtype=model.filter.dtype, device=model.filter.device)


def column_scale(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD per column of a (T, n) series; a constant column gets SD 1."""
    a = np.asarray(a)
    sd = a.std(0)
    return a.mean(0), np.where(sd > 0, sd, 1.0)


def zscore(a: np.ndarray) -> np.ndarray:
    """Each column to mean 0 and standard deviation 1 (constant columns only centred)."""
    mu, sd = column_scale(a)
    return (a - mu) / sd


def initial_states(model: ConvSSM, sd: SubjectData, n: int, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """n perturbed copies of the state at the first valid target: (1, n, M); row 0 unperturbed."""
    t0 = int(np.flatnonzero(np.isfinite(sd.d[:, 0]))[0])
    rd0 = None if sd.rd is None else _t(sd.rd[t0], model)[None, None, None]
    d0 = model.targets(_t(sd.d[t0], model)[None, None, None], rd0)[:, :, 0]  # (1, 1, Mf)
    z0 = model.init_state(d0).expand(1, n, -1).clone()  # (1, n, M)
    noise = torch.randn(z0.shape, generator=gen, dtype=z0.dtype).to(z0.device) * sigma
    noise[:, 0] = 0
    return z0 + noise


def generate_observations(model: ConvSSM, z0: torch.Tensor, n_obs: int, sd: SubjectData | None = None):
    """Latent rollouts and their observations: (1, R, n_obs+K−1, M) and (1, R, n_obs, N).

    Nuisance regressors are left out: generated observations are the model's dynamics part.
    """
    K = model.kernel_size
    inputs = None
    if sd is not None and sd.s is not None:
        s = np.zeros((n_obs + K - 1, sd.s.shape[1]))
        m = min(len(s), len(sd.s))
        s[:m] = sd.s[:m]
        inputs = _t(s, model)[None, None].expand(1, z0.shape[1], -1, -1)
    with torch.no_grad():
        Z = model.generate(z0, n_obs + K - 1, inputs)  # (1, R, n_obs+K-1, M)
        X = model.observe(Z)  # (1, R, n_obs, N)
    return Z, X


def clean_observations(model: ConvSSM, sd: SubjectData) -> np.ndarray:
    """Observed series with the fitted nuisance part J r removed (standardised units), (T, N)."""
    if sd.r is None or "obs.J" not in model.params:
        return sd.x
    J = model.params["obs.J"][0].detach().cpu().double().numpy()  # (N, P)
    return sd.x - sd.r @ J.T


def prediction_errors(model: ConvSSM, sd: SubjectData, n: int) -> tuple[float, float]:
    """PE_n on the training and test parts (MSE in standardised units), conv-aware alignment.

    From every valid deconvolved state d_t the model runs n steps; the n-step predictions,
    ordered by the time they predict, are filtered and decoded and compared with the data.
    """
    K = model.kernel_size
    x = clean_observations(model, sd)
    out = []
    for d, lo, hi in ((sd.d, 0, sd.n_train), (sd.d_full, sd.n_train, len(sd.x))):
        idx = np.flatnonzero(np.isfinite(d[:, 0]))
        if idx.size == 0:
            out.append(float("nan"))
            continue
        idx = np.arange(idx[0], idx[-1] + 1)
        pred_t = idx + n  # times predicted
        keep = pred_t < len(sd.x)
        idx, pred_t = idx[keep], pred_t[keep]
        rd = None if sd.rd is None else _t(np.nan_to_num(sd.rd[idx]), model)[None, None]
        with torch.no_grad():
            z = model.init_state(model.targets(_t(d[idx], model)[None, None], rd)[:, 0])  # (1, I, M)
            for _ in range(n):
                z = model.step(z)
            xhat = model.observe(z[:, None]).squeeze(1)[0].cpu().double().numpy()  # (I-K+1, N)
        times = pred_t[K - 1:]  # time of each filtered prediction
        sel = (times >= lo) & (times < hi)
        if not sel.any():
            out.append(float("nan"))
            continue
        out.append(float(np.mean((xhat[sel] - x[times[sel]]) ** 2)))
    return out[0], out[1]


def lyapunov(model: ConvSSM, sd: SubjectData, cfg: EvalConfig, gen: torch.Generator) -> np.ndarray:
    """Lyapunov spectrum per step (median over ``cfg.lyap_orbits`` orbits), shape (M,)."""
    m64 = ConvSSM(model.spec, {k: v.detach().double().cpu() for k, v in model.params.items()},
                  model.filter.double().cpu())
    z0 = initial_states(m64, sd, cfg.lyap_orbits, 0.1, gen)[0]  # (R, M)
    spec = lyapunov_spectrum(lambda z: m64.step(z[None])[0], lambda z: m64.jacobian(z[None])[0], z0,
                             n_steps=cfg.lyap_steps, transient=cfg.lyap_transient)  # (R, M)
    return np.nanmedian(spec.numpy(), axis=0) if np.isfinite(spec.numpy()).any() else np.full(z0.shape[1], np.nan)


def summarise_rollouts(values: list[float], name: str, out: dict) -> None:
    """Write ``out[name]`` (mean over finite rollout values, inf if none) and ``out[name_median]``."""
    v = np.asarray(values, dtype=float)
    fin = v[np.isfinite(v)]
    out[name] = float(fin.mean()) if fin.size else float("inf")
    out[f"{name}_median"] = float(np.median(v)) if v.size else float("nan")


def evaluate(model: ConvSSM, sd: SubjectData, cfg: EvalConfig, latent_truth: np.ndarray | None = None,
             seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray]:
    """All metrics of one fitted model (S = 1) on its data.

    Returns
    -------
    metrics : dict
    x_gen : ndarray (T, N)
        The unperturbed rollout in observation space (standardised units).
    z_gen : ndarray (T+K−1, M)
        Its latent trajectory.
    """
    gen = torch.Generator().manual_seed(seed)
    T, N = sd.x.shape
    x_obs = clean_observations(model, sd)
    z0 = initial_states(model, sd, cfg.n_rollouts, cfg.perturbation, gen)  # (1, R, M)
    Z, X = generate_observations(model, z0, T, sd)
    Xn = X[0].cpu().double().numpy()  # (R, T, N)
    parts = {"": x_obs, "_train": x_obs[:sd.n_train], "_test": x_obs[sd.n_train:]}
    metrics: dict = {}
    kw = dict(n_bins=cfg.dstsp_bins, scaling=cfg.dstsp_scaling, bins_max_dims=cfg.bins_max_dims)
    for suffix, ref in parts.items():
        if len(ref) < 2:
            continue
        summarise_rollouts(dstsp_many(ref, list(Xn), seed=seed, **kw), f"dstsp{suffix}", metrics)
        summarise_rollouts([_dh_safe(ref, xg, cfg.spectrum_smoothing) for xg in Xn], f"dh{suffix}", metrics)
    metrics["diverged_rollouts"] = float(np.mean(~np.isfinite(Xn).all(axis=(1, 2))))
    pe_train, pe_test = prediction_errors(model, sd, cfg.pe_steps)
    metrics.update({"pe_train": pe_train, "pe_test": pe_test, "pe_steps": cfg.pe_steps})
    spectrum = lyapunov(model, sd, cfg, gen)
    tr = model.spec.tr
    metrics.update({"lyapunov_max": float(spectrum[0]), "lyapunov_max_per_second": float(spectrum[0] / tr),
                    "lyapunov_spectrum": [float(v) for v in spectrum]})
    if latent_truth is not None:
        metrics.update(latent_metrics(model, sd, z0, latent_truth, cfg, seed))
    return metrics, Xn[0], Z[0, 0].cpu().double().numpy()


def latent_metrics(model: ConvSSM, sd: SubjectData, z0: torch.Tensor, latent_truth: np.ndarray, cfg: EvalConfig,
                   seed: int = 0) -> dict:
    """Latent-space D_stsp and D_H of rollouts from z0 (1, R, M) against a ground truth (T, n_lat).

    ``dstsp_latent``/``dh_latent`` compare z-scored series; ``dstsp_latent_units`` (only where
    :func:`latent_identified`) compares the latents in data units, standardised with the truth.
    """
    kw = dict(n_bins=cfg.dstsp_bins, scaling=cfg.dstsp_scaling, bins_max_dims=cfg.bins_max_dims)
    latent_truth = np.asarray(latent_truth, dtype=np.float64)
    truth = zscore(latent_truth)
    n_lat = truth.shape[1]
    Zl = model.generate(z0, len(truth))[0, :, :, :n_lat].cpu().double().numpy()  # (R, T_truth, n_lat)
    gens = [zscore(z) if np.isfinite(z).all() else np.full_like(z, np.nan) for z in Zl]
    out: dict = {}
    summarise_rollouts(dstsp_many(truth, gens, seed=seed, **kw), "dstsp_latent", out)
    summarise_rollouts([_dh_safe(truth, zscore(z), cfg.spectrum_smoothing) for z in Zl], "dh_latent", out)
    if latent_identified(model, n_lat):
        mu, sd_t = column_scale(latent_truth)
        units = [(z * sd.std[:n_lat] + sd.mean[:n_lat] - mu) / sd_t for z in Zl]  # truth-standardised
        summarise_rollouts(dstsp_many(truth, units, seed=seed, **kw), "dstsp_latent_units", out)
    return out


def latent_identified(model: ConvSSM, n_lat: int) -> bool:
    """Whether the first n_lat latents are in data units (identity read-out of observed channels)."""
    return model.spec.observation == "identity" and n_lat <= model.spec.n_obs


def _dh_safe(ref: np.ndarray, gen: np.ndarray, smoothing: float) -> float:
    n = min(len(ref), len(gen))
    return dh(ref[:n], gen[:n], smoothing) if np.isfinite(gen).all() else 1.0

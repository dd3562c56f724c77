"""Evaluate every fit of a stacked convSSM at once, on the model's device.

:func:`evaluate_many` returns for fit i what
``evaluate(model.subject(i), subjects[i], cfg, latent_truths[i], seed=seeds[i])`` returns
(:mod:`dsr.analysis.evaluate`), computed in batches over fits and rollouts:

* initial states per fit from its own ``torch.Generator().manual_seed(seed)``, drawn in the same
  order as the one-fit path (rollout perturbations first, then the Lyapunov orbit starts);
* one ``generate`` per chunk of fits (all rollouts of all fits in the chunk);
* D_stsp by the GMM estimator in float64 torch, with the Monte-Carlo samples of the numpy path
  (:func:`dsr.analysis.dstsp.gmm_reference`); the binned estimator (N <= ``bins_max_dims``) calls
  the numpy code per fit;
* D_H in float64 torch (scipy's reflect-mode Gaussian smoothing as a padded convolution);
* PE_n with the prediction windows of all fits padded to one batch;
* Lyapunov spectra of all fits × orbits in one float64 batch
  (:func:`dsr.analysis.lyapunov.lyapunov_spectrum`, which uses a batched Gram–Schmidt QR on a GPU).

Fits may differ in length: they are grouped by (T, n_train, latent-truth length). Nuisance
regressors (``sd.r``, ``sd.rd``, ``obs.J``) and external inputs (``sd.s``) are supported.
On CPU the results equal the one-fit path to rounding; on a GPU float32 rollouts of chaotic
models differ from the CPU ones after some steps, so metrics agree only statistically.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from dsr.analysis.dstsp import dstsp_many, gmm_reference, subsample_index
from dsr.analysis.evaluate import (clean_observations, column_scale, initial_states, latent_identified,
                                   summarise_rollouts, zscore)
from dsr.analysis.lyapunov import lyapunov_spectrum
from dsr.config import EvalConfig
from dsr.models.convssm import ConvSSM
from dsr.training.data import SubjectData

_GMM_ENTRIES = {"cpu": 2**24, "cuda": 2**28}  # squared distances per block of the GMM (float64)
_ROLLOUT_BYTES = {"cpu": 2**28, "cuda": 2**32}  # float64 rollouts held per chunk of fits


def _kind(device: torch.device) -> str:
    return "cuda" if device.type == "cuda" else "cpu"


def _substack(model: ConvSSM, idx: list[int]) -> ConvSSM:
    """The fits idx of a stack as a smaller stack (copies)."""
    sel = torch.as_tensor(idx, device=model.filter.device)
    return ConvSSM(model.spec, {k: v[sel] for k, v in model.params.items()}, model.filter[sel])


# ---- D_stsp (GMM) and D_H in torch ----------------------------------------------------------------
def _log_mixture(samples: torch.Tensor, centres: torch.Tensor, scaling: float, budget: int) -> torch.Tensor:
    """log (1/T) Σ_t exp(−‖s − μ_t‖² / (2 scaling)) per sample, as the numpy ``_gmm_log_density``.

    samples (F, Sm, N), centres (F, G, T, N) -> (F, G, Sm); blocks of at most ~budget distances.
    """
    F, Sm = samples.shape[:2]
    G, T = centres.shape[1:3]
    s_sq = (samples**2).sum(-1)  # (F, Sm)
    c_sq = (centres**2).sum(-1)  # (F, G, T)
    out = torch.empty(F, G, Sm, dtype=samples.dtype, device=samples.device)
    gb = max(1, min(G, budget // (Sm * T)))
    fb = max(1, budget // (G * Sm * T)) if gb == G else 1
    for f in range(0, F, fb):
        sl = slice(f, f + fb)
        for g in range(0, G, gb):
            c = centres[sl, g:g + gb].flatten(1, 2)  # (fb, gb*T, N)
            norms = s_sq[sl, :, None] + c_sq[sl, g:g + gb].flatten(1)[:, None, :]  # (fb, Sm, gb*T)
            d2 = torch.baddbmm(norms, samples[sl], c.transpose(1, 2), alpha=-2.0)  # (fb, Sm, gb*T)
            a = d2.clamp_(min=0.0).mul_(-0.5 / scaling).view(d2.shape[0], Sm, -1, T)  # (fb, Sm, gb, T)
            out[sl, g:g + gb] = torch.logsumexp(a, dim=-1).transpose(1, 2)  # (fb, gb, Sm)
    return out - math.log(T)


def _dstsp_gmm(refs: list[np.ndarray], gens: torch.Tensor, fin: torch.Tensor, seeds: list[int],
               scaling: float, budget: int) -> np.ndarray:
    """KL(ref_i ‖ rollout r of fit i) by the GMM estimator: refs F × (T_ref, N), gens (F, R, T, N) -> (F, R)."""
    dev = gens.device
    ref = [gmm_reference(x, scaling, seed=int(s)) for x, s in zip(refs, seeds)]
    mu = torch.as_tensor(np.stack([m for m, _ in ref]), device=dev)  # (F, T_s, N)
    smp = torch.as_tensor(np.stack([s for _, s in ref]), device=dev)  # (F, Sm, N)
    idx = subsample_index(gens.shape[2], 10000)
    cen = gens if idx is None else gens[:, :, torch.as_tensor(idx, device=dev)]  # (F, R, T', N)
    cen = torch.where(fin[:, :, None, None], cen, torch.zeros((), dtype=cen.dtype, device=dev))  # (F, R, T', N)
    log_p = _log_mixture(smp, mu[:, None], scaling, budget)[:, 0]  # (F, Sm)
    log_q = _log_mixture(smp, cen, scaling, budget)  # (F, R, Sm)
    kl = (log_p[:, None] - log_q).mean(-1)  # (F, R)
    return torch.where(fin, kl, torch.full_like(kl, float("inf"))).cpu().numpy()


@lru_cache(maxsize=32)
def _smoother(n_freq: int, smoothing: float) -> np.ndarray:
    """scipy's reflect-mode Gaussian filter along frequency as a matrix: smoothed = G @ ps, (F, F).

    Only for spectra shorter than the kernel radius, where reflection repeats; see :func:`_smooth`.
    """
    return gaussian_filter1d(np.eye(n_freq), smoothing, axis=0, mode="reflect", truncate=4.0)


def _smooth(ps: torch.Tensor, smoothing: float) -> torch.Tensor:
    """scipy ``gaussian_filter1d(ps, smoothing, axis=1, mode="reflect", truncate=4.0)`` of ps (B, F, N).

    Reflect-pads by the kernel radius r (scipy's "reflect" repeats the edge sample: d c b a | a b c d)
    and convolves with scipy's normalised kernel: O(F r) work and memory, where the (F, F) matrix of
    :func:`_smoother` would need F² (16 GB at F = 45001, a 90000-step series).
    """
    B, F, N = ps.shape
    r = int(4.0 * float(smoothing) + 0.5)
    if F < r + 1:  # reflection wraps more than once: the small dense matrix does it exactly
        g = torch.as_tensor(_smoother(F, float(smoothing)), dtype=ps.dtype, device=ps.device)  # (F, F)
        return torch.einsum("gf,bfn->bgn", g, ps)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / float(smoothing)) ** 2)
    k = torch.as_tensor(k / k.sum(), dtype=ps.dtype, device=ps.device)  # (2r+1,)
    padded = torch.cat([ps[:, :r].flip(1), ps, ps[:, F - r:].flip(1)], dim=1)  # (B, F+2r, N)
    out = torch.nn.functional.conv1d(padded.transpose(1, 2).reshape(B * N, 1, F + 2 * r),
                                     k.view(1, 1, -1))  # (B*N, 1, F)
    return out.view(B, N, F).transpose(1, 2)  # (B, F, N)


def _spectra(x: torch.Tensor, smoothing: float) -> torch.Tensor:
    """:func:`dsr.analysis.spectrum.power_spectrum` of each series: x (B, T, N) float64 -> (B, F, N)."""
    std = x.std(dim=1, correction=1)  # (B, N)
    const = ~(std > 0)  # (B, N)
    z = (x - x.mean(dim=1, keepdim=True)) / torch.where(const, torch.ones_like(std), std)[:, None]  # (B, T, N)
    ps = torch.fft.rfft(z, dim=1).abs() ** 2  # (B, F, N)
    impulse = torch.zeros_like(ps[0, :, 0])  # (F,)
    impulse[0] = 1.0
    ps = torch.where(const[:, None, :], impulse[None, :, None], ps)  # (B, F, N)
    if smoothing > 0:
        ps = _smooth(ps, smoothing).clamp_(min=0.0)  # (B, F, N)
    return ps / ps.sum(dim=1, keepdim=True)  # (B, F, N)


def _dh(refs: torch.Tensor, gens: torch.Tensor, fin: torch.Tensor, smoothing: float) -> np.ndarray:
    """D_H of rollouts against their fit's reference: refs (F, T, N), gens (F, R, T, N) -> (F, R); 1 if diverged."""
    F, R = gens.shape[:2]
    gens = torch.where(fin[:, :, None, None], gens, torch.zeros((), dtype=gens.dtype, device=gens.device))
    p = _spectra(refs, smoothing)  # (F, Fq, N)
    q = _spectra(gens.reshape(F * R, *gens.shape[2:]), smoothing).reshape(F, R, p.shape[1], -1)  # (F, R, Fq, N)
    h = ((p.sqrt()[:, None] - q.sqrt()) ** 2).sum(2).sqrt() / math.sqrt(2.0)  # (F, R, N)
    h = h.mean(-1)  # (F, R)
    return torch.where(fin, h, torch.ones_like(h)).cpu().numpy()


def _zscore_t(a: torch.Tensor) -> torch.Tensor:
    """:func:`dsr.analysis.evaluate.zscore` along dim -2 of a float64 tensor (..., T, n)."""
    sd = a.std(dim=-2, correction=0, keepdim=True)  # (..., 1, n)
    return (a - a.mean(dim=-2, keepdim=True)) / torch.where(sd > 0, sd, torch.ones_like(sd))


def _state_metrics(refs: list[np.ndarray], gens: torch.Tensor, fin: torch.Tensor, seeds: list[int],
                   cfg: EvalConfig, budget: int, np_gens=None) -> tuple[np.ndarray, np.ndarray]:
    """D_stsp and D_H (F, R) of rollouts gens (F, R, T, N) against refs (F × (T_ref, N), T_ref <= T).

    ``np_gens(i)`` gives fit i's rollouts as the numpy list the binned estimator gets in the one-fit path.
    """
    n_ref = refs[0].shape[0]
    if refs[0].shape[1] <= cfg.bins_max_dims:
        ds = np.array([dstsp_many(r, np_gens(i), n_bins=cfg.dstsp_bins, scaling=cfg.dstsp_scaling,
                                  bins_max_dims=cfg.bins_max_dims, seed=int(seeds[i])) for i, r in enumerate(refs)])
    else:
        ds = _dstsp_gmm(refs, gens, fin, seeds, cfg.dstsp_scaling, budget)
    ref_t = torch.as_tensor(np.stack(refs), device=gens.device)  # (F, T_ref, N)
    return ds, _dh(ref_t, gens[:, :, :n_ref], fin, cfg.spectrum_smoothing)


# ---- PE_n -----------------------------------------------------------------------------------------
def _prediction_errors(model: ConvSSM, subs: list[SubjectData], xs: list[np.ndarray], n: int) -> list[tuple]:
    """:func:`dsr.analysis.evaluate.prediction_errors` of every fit of ``model``: windows padded to one batch."""
    K = model.kernel_size
    dt, dev = model.filter.dtype, model.filter.device
    out = [[np.nan, np.nan] for _ in subs]
    for part in (0, 1):
        rows = []
        for sd in subs:
            d = sd.d if part == 0 else sd.d_full
            idx = np.flatnonzero(np.isfinite(d[:, 0]))
            if idx.size:
                idx = np.arange(idx[0], idx[-1] + 1)
                idx = idx[idx + n < len(sd.x)]
            rows.append(idx)
        i_max = max(len(r) for r in rows)
        if i_max < K:
            continue
        D = np.zeros((len(subs), i_max, subs[0].x.shape[1]))  # (F, I, N)
        use_r = any(sd.rd is not None for sd in subs)
        Rd = np.zeros((len(subs), i_max, subs[0].rd.shape[1] if use_r else 0))  # (F, I, P)
        for f, (sd, idx) in enumerate(zip(subs, rows)):
            d = sd.d if part == 0 else sd.d_full
            if len(idx):
                pad = np.concatenate([idx, np.full(i_max - len(idx), idx[-1])])  # repeat the last window
                D[f] = d[pad]
                if sd.rd is not None:
                    Rd[f] = np.nan_to_num(sd.rd[pad])
            else:
                D[f] = np.nan_to_num(sd.x[:1])
        rd = torch.as_tensor(Rd, dtype=dt, device=dev)[:, None] if use_r else None  # (F, 1, I, P)
        with torch.no_grad():
            d0 = torch.as_tensor(D, dtype=dt, device=dev)[:, None]  # (F, 1, I, N)
            z = model.init_state(model.targets(d0, rd)[:, 0])  # (F, I, M)
            for _ in range(n):
                z = model.step(z)  # (F, I, M)
            xhat = model.observe(z[:, None])[:, 0].cpu().double().numpy()  # (F, I-K+1, N)
        for f, (sd, idx, x) in enumerate(zip(subs, rows, xs)):
            if len(idx) < K:
                continue
            lo, hi = (0, sd.n_train) if part == 0 else (sd.n_train, len(sd.x))
            times = (idx + n)[K - 1:]  # time of each filtered prediction
            sel = (times >= lo) & (times < hi)
            if sel.any():
                out[f][part] = float(np.mean((xhat[f, :len(times)][sel] - x[times[sel]]) ** 2))
    return [tuple(o) for o in out]


# ---- Lyapunov ---------------------------------------------------------------------------------------
def _lyapunov_all(model: ConvSSM, subjects: list[SubjectData], cfg: EvalConfig,
                  gens: list[torch.Generator]) -> list[np.ndarray]:
    """:func:`dsr.analysis.evaluate.lyapunov` of every fit (float64 on the model's device), list of (M,)."""
    m64 = ConvSSM(model.spec, {k: v.detach().double() for k, v in model.params.items()}, model.filter.double())
    S, O, M = model.n_subjects, cfg.lyap_orbits, model.spec.latent_dim
    z0 = torch.cat([initial_states(m64.subject(i), sd, O, 0.1, g)[0]
                    for i, (sd, g) in enumerate(zip(subjects, gens))])  # (S*O, M)

    def step(z):
        return m64.step(z.view(S, O, M)).reshape(S * O, M)

    def jac(z):
        return m64.jacobian(z.view(S, O, M)).reshape(S * O, M, M)

    spec = lyapunov_spectrum(step, jac, z0, n_steps=cfg.lyap_steps, transient=cfg.lyap_transient)  # (S*O, M)
    spec = spec.view(S, O, M).cpu().numpy()  # (S, O, M)
    return [np.nanmedian(s, axis=0) if np.isfinite(s).any() else np.full(M, np.nan) for s in spec]


# ---- driver -----------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_many(model: ConvSSM, subjects: list[SubjectData], cfg: EvalConfig, seeds: list[int],
                  latent_truths: list[np.ndarray | None] | None = None,
                  chunk: int | None = None) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """All metrics of every fit of a stacked model, batched on the model's device.

    Parameters
    ----------
    model : ConvSSM
        S stacked fits (parameters (S, ...)), on any device.
    subjects : list of SubjectData
        The data of each fit (length S); N and the TR are shared, T may differ.
    cfg : EvalConfig
        Rollouts, perturbation and metric settings, as for :func:`dsr.analysis.evaluate.evaluate`.
    seeds : list of int
        Seed of each fit's evaluation (perturbations, Monte-Carlo samples, Lyapunov orbit starts).
    latent_truths : list of (ndarray (T_i, n_lat) or None), optional
        Ground-truth latents per fit for the latent-space metrics.
    chunk : int, optional
        Fits generated and scored together (default: from the rollout size and the device).

    Returns
    -------
    list of (metrics, x_gen, z_gen)
        Per fit what ``evaluate(model.subject(i), subjects[i], cfg, latent_truths[i], seed=seeds[i])``
        returns: the metrics dict, the unperturbed rollout (T, N) and its latents (T+K−1, M).
    """
    S = model.n_subjects
    if len(subjects) != S or len(seeds) != S:
        raise ValueError(f"{S} fits but {len(subjects)} subjects and {len(seeds)} seeds")
    truths = list(latent_truths) if latent_truths is not None else [None] * S
    dev = model.filter.device
    kind = _kind(dev)
    R, K, tr = cfg.n_rollouts, model.kernel_size, model.spec.tr
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    ones = [model.subject(i) for i in range(S)]
    z0s = [initial_states(one, sd, R, cfg.perturbation, g) for one, sd, g in zip(ones, subjects, gens)]  # (1, R, M)
    x_obs = [clean_observations(one, sd) for one, sd in zip(ones, subjects)]  # (T, N)
    del ones
    spectra = _lyapunov_all(model, subjects, cfg, gens)  # after the rollout draws, as in evaluate
    results: list = [None] * S

    groups: dict = {}
    for i, (sd, t) in enumerate(zip(subjects, truths)):
        groups.setdefault((len(sd.x), sd.n_train, None if t is None else len(t)), []).append(i)
    for (T, n_train, t_len), members in groups.items():
        n_gen = T + K - 1
        per_fit = R * (max(n_gen, t_len or 0)) * model.spec.latent_dim * 8 * 3
        step = chunk or max(1, min(len(members), _ROLLOUT_BYTES[kind] // per_fit))
        for c in range(0, len(members), step):
            idx = members[c:c + step]
            _score_chunk(model, idx, subjects, x_obs, z0s, truths, seeds, cfg, T, n_train, t_len,
                         _GMM_ENTRIES[kind], results)
    for i in range(S):
        spec = spectra[i]
        results[i][0].update({"lyapunov_max": float(spec[0]), "lyapunov_max_per_second": float(spec[0] / tr),
                              "lyapunov_spectrum": [float(v) for v in spec]})
        if truths[i] is not None:  # the latent metrics come last in evaluate's dict
            for k in [k for k in results[i][0] if k.endswith("_latent") or k.endswith("_latent_median")]:
                results[i][0][k] = results[i][0].pop(k)
    return results


def _score_chunk(model, idx, subjects, x_obs, z0s, truths, seeds, cfg, T, n_train, t_len, budget, results):
    """Generate and score the fits idx (same T, n_train and truth length) into results[i]."""
    sub = _substack(model, idx)
    subs = [subjects[i] for i in idx]
    sds = [int(seeds[i]) for i in idx]
    F, K, dev = len(idx), model.kernel_size, model.filter.device
    n_gen = T + K - 1
    z0 = torch.cat([z0s[i] for i in idx])  # (F, R, M)
    inputs = None
    if any(sd.s is not None for sd in subs):
        q = next(sd.s for sd in subs if sd.s is not None).shape[1]
        s = np.zeros((F, n_gen, q))  # (F, n_gen, Q); a fit without inputs gets zeros
        for f, sd in enumerate(subs):
            if sd.s is not None:
                m = min(n_gen, len(sd.s))
                s[f, :m] = sd.s[:m]
        inputs = torch.as_tensor(s, dtype=z0.dtype, device=dev)[:, None].expand(-1, z0.shape[1], -1, -1)
    n_lat_steps = t_len or 0
    with torch.no_grad():
        Z = sub.generate(z0, n_gen if inputs is not None else max(n_gen, n_lat_steps), inputs)  # (F, R, n, M)
        X = sub.observe(Z[:, :, :n_gen])  # (F, R, T, N)
    Xd = X.double()  # (F, R, T, N)
    fin = torch.isfinite(Xd).all(-1).all(-1)  # (F, R)
    Xn = None

    def np_gens(i):
        nonlocal Xn
        if Xn is None:
            Xn = Xd.cpu().numpy()  # (F, R, T, N)
        return list(Xn[i])

    metrics = [dict() for _ in idx]
    xs = [x_obs[i] for i in idx]
    for suffix, lo, hi in (("", 0, T), ("_train", 0, n_train), ("_test", n_train, T)):
        if hi - lo < 2:
            continue
        ds, dh = _state_metrics([x[lo:hi] for x in xs], Xd, fin, sds, cfg, budget, np_gens)
        for f in range(F):
            summarise_rollouts(list(ds[f]), f"dstsp{suffix}", metrics[f])
            summarise_rollouts(list(dh[f]), f"dh{suffix}", metrics[f])
    div = (~fin).double().mean(1).cpu().numpy()  # (F,)
    pes = _prediction_errors(sub, subs, xs, cfg.pe_steps)
    for f in range(F):
        metrics[f]["diverged_rollouts"] = float(div[f])
        metrics[f].update({"pe_train": pes[f][0], "pe_test": pes[f][1], "pe_steps": cfg.pe_steps})
    if t_len is not None:
        if inputs is not None:  # evaluate generates the latent rollouts without inputs
            with torch.no_grad():
                Z_lat = sub.generate(z0, t_len)  # (F, R, t_len, M)
        else:
            Z_lat = Z
        truth = [zscore(np.asarray(truths[i], dtype=np.float64)) for i in idx]
        n_lat = truth[0].shape[1]
        Zl = Z_lat[:, :, :t_len, :n_lat].double()  # (F, R, t_len, n_lat)
        fin_l = torch.isfinite(Zl).all(-1).all(-1)  # (F, R)
        Zl_np = None

        def np_lat(i):
            nonlocal Zl_np
            if Zl_np is None:
                Zl_np = Zl.cpu().numpy()
            return [zscore(z) if np.isfinite(z).all() else np.full_like(z, np.nan) for z in Zl_np[i]]

        Zl0 = torch.where(fin_l[:, :, None, None], Zl, torch.zeros((), dtype=Zl.dtype, device=dev))
        ds, dh = _state_metrics(truth, _zscore_t(Zl0), fin_l, sds, cfg, budget, np_lat)
        for f in range(F):
            summarise_rollouts(list(ds[f]), "dstsp_latent", metrics[f])
            summarise_rollouts(list(dh[f]), "dh_latent", metrics[f])
        if latent_identified(model, n_lat):  # also in data units, standardised by the truth
            scale = [(sd.std[:n_lat], sd.mean[:n_lat]) + column_scale(np.asarray(truths[i], dtype=np.float64))
                     for sd, i in zip(subs, idx)]
            a = torch.as_tensor(np.stack([(s_ / t_) for s_, _, _, t_ in scale]), device=dev)  # (F, n_lat)
            b = torch.as_tensor(np.stack([(m_ - mu) / t_ for _, m_, mu, t_ in scale]), device=dev)  # (F, n_lat)
            Zu = Zl0 * a[:, None, None] + b[:, None, None]  # (F, R, t_len, n_lat)

            def np_units(i):
                return [z if np.isfinite(z).all() else np.full_like(z, np.nan)
                        for z in (Zl[i] * a[i] + b[i]).cpu().numpy()]

            ds_u, _ = _state_metrics(truth, Zu, fin_l, sds, cfg, budget, np_units)
            for f in range(F):
                summarise_rollouts(list(ds_u[f]), "dstsp_latent_units", metrics[f])
    X0 = Xd[:, 0].cpu().numpy()  # (F, T, N)
    Z0 = Z[:, 0, :n_gen].cpu().double().numpy()  # (F, T+K-1, M)
    for f, i in enumerate(idx):
        results[i] = (metrics[f], X0[f], Z0[f])

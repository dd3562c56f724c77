"""Noise of the stochastic generator, estimated from a fit's training part.

Observation noise σ_obs (per region). The teacher states of the training part are the latent targets
of GTF: z_t = init_state(targets(d_t)), d the Wiener deconvolution of the training part (NaN at its
unreliable edges). Filtered and decoded (with the nuisance regressors, for the regressor model) they
give x̂_t = B Σ_k h_k z_{t−k} + J r_t + b at every time t whose K-step history has valid targets; the
residual x_t − x̂_t is what the decoder cannot explain from the best available latent states, and
σ_obs,n is its root mean square over those t (standardised units). Because the Wiener filter keeps
the signal band and drops the noise band, this residual is the data's noise part.

Latent process noise σ_z (optional; GTF training does not learn it). The one-step residual of the
teacher states, targets(d_{t+1}) − F(z_t), root mean square per forced latent dim over the training
part (0 for latents that no target forces). Deconvolution amplifies observation noise, so this is an
upper bound of the true process noise.

Variance-matched process noise (``latent="matched"``). Deconvolution shrinks the targets towards zero
and a fitted map is not the true one, so σ_z from residuals gives generations whose variance is not the
data's. Matching moments by simulation: σ_z is rescaled per read-out latent (identity read-out; one
common factor otherwise) by a few fixed-point steps s ← s √((v_data − σ_obs²) / (v_gen − σ_obs²)), with
v the variance per region of stochastic generations as long as the training part and of the training
data; factors stay in [0.1, 10]. (The linear state-space reference scales its W the same way, in closed
form.)

The estimates are stored in the model's parameter dict (``noise.obs`` (S, N), ``noise.latent``
(S, M); :mod:`dsr.models.convssm`), so a saved model carries them.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.models.convssm import LATENT_NOISE, OBS_NOISE, ConvSSM
from dsr.training.data import SubjectData


def _span(sd: SubjectData) -> np.ndarray:
    """Times from the first to the last valid training target."""
    idx = np.flatnonzero(np.isfinite(sd.d[:sd.n_train]).all(1))
    return np.arange(idx[0], idx[-1] + 1) if idx.size else idx


@torch.no_grad()
def teacher_states(model: ConvSSM, sd: SubjectData, idx: np.ndarray) -> torch.Tensor:
    """Latent teacher states at times idx of the training part, (1, I, M); model S = 1."""
    t = lambda a: torch.as_tensor(a, dtype=model.filter.dtype, device=model.filter.device)  # noqa: E731
    rd = None if sd.rd is None else t(np.nan_to_num(sd.rd[idx]))[None, None]  # (1, 1, I, P)
    return model.init_state(model.targets(t(sd.d[idx])[None, None], rd)[:, 0])  # (1, I, M)


@torch.no_grad()
def observation_residuals(model: ConvSSM, sd: SubjectData) -> np.ndarray:
    """x_t − decoded filtered teacher states at every training time with a full valid history, (T_r, N)."""
    K = model.kernel_size
    idx = _span(sd)
    if len(idx) < K:
        return np.zeros((0, sd.x.shape[1]))
    z = teacher_states(model, sd, idx)  # (1, I, M)
    times = idx[K - 1:]
    r = None
    if sd.r is not None and model.spec.observation == "regressor":
        r = torch.as_tensor(sd.r[times], dtype=z.dtype, device=z.device)[None, None]  # (1, 1, I-K+1, P)
    xhat = model.observe(z[:, None], r)[0, 0].cpu().double().numpy()  # (I-K+1, N)
    return sd.x[times] - xhat


@torch.no_grad()
def latent_residuals(model: ConvSSM, sd: SubjectData) -> np.ndarray:
    """targets(d_{t+1}) − F(z_t) over consecutive valid training targets, (T_r, n_forced)."""
    idx = _span(sd)
    if len(idx) < 2:
        return np.zeros((0, model.n_forced))
    z = teacher_states(model, sd, idx)  # (1, I, M)
    s = None
    if sd.s is not None:
        s = torch.as_tensor(sd.s[idx[:-1]], dtype=z.dtype, device=z.device)[None]  # (1, I-1, Q)
    pred = model.step(z[:, :-1], s)  # (1, I-1, M)
    return (z[0, 1:, :model.n_forced] - pred[0, :, :model.n_forced]).cpu().double().numpy()


LATENT_MODES = ("none", "targets", "matched")


def estimate_noise(model: ConvSSM, subjects: list[SubjectData], latent: bool | str = False) -> None:
    """Estimate σ_obs (and with ``latent``, σ_z) of every fit of a stack and store them in ``model.params``.

    Parameters
    ----------
    model : ConvSSM
        S fits; gains ``params["noise.obs"]`` (S, N) and, with ``latent``, ``params["noise.latent"]`` (S, M).
    subjects : list of SubjectData
        The training data of each fit.
    latent : bool or {"none", "targets", "matched"}
        Also estimate the latent process noise: from one-step residuals of the teacher states (True or
        "targets"), then variance-matched by simulation ("matched", :func:`match_latent_noise`).
    """
    mode = {False: "none", True: "targets"}.get(latent, latent) if isinstance(latent, bool) else latent
    if mode not in LATENT_MODES:
        raise ValueError(f"latent must be one of {LATENT_MODES}, got {latent!r}")
    latent = mode != "none"
    dt, dev = model.filter.dtype, model.filter.device
    obs, lat = [], []
    for i, sd in enumerate(subjects):
        one = model.subject(i)
        res = observation_residuals(one, sd)  # (T_r, N)
        obs.append(np.sqrt(np.mean(res**2, axis=0)) if len(res) else np.zeros(sd.x.shape[1]))
        if latent:
            sz = np.zeros(model.spec.latent_dim)
            res_z = latent_residuals(one, sd)  # (T_r, n_forced)
            if len(res_z):
                sz[:res_z.shape[1]] = np.sqrt(np.mean(res_z**2, axis=0))
            lat.append(sz)
    model.params[OBS_NOISE] = torch.as_tensor(np.stack(obs), dtype=dt, device=dev)  # (S, N)
    if latent:
        model.params[LATENT_NOISE] = torch.as_tensor(np.stack(lat), dtype=dt, device=dev)  # (S, M)
    if mode == "matched":
        match_latent_noise(model, subjects)


@torch.no_grad()
def match_latent_noise(model: ConvSSM, subjects: list[SubjectData], n_samples: int = 8, iters: int = 3,
                       seed: int = 0) -> np.ndarray:
    """Rescale ``noise.latent`` in place so that stochastic generations have the training data's variance.

    Generations start at each fit's first valid teacher state, run as long as its training part (after
    a transient of K steps) and get observation noise. Returns the factors applied, (S, M).
    """
    dt, dev = model.filter.dtype, model.filter.device
    S, M, N, K = model.n_subjects, model.spec.latent_dim, model.spec.n_obs, model.kernel_size
    sd_obs = model.params[OBS_NOISE].double().cpu().numpy()  # (S, N)
    base = model.params[LATENT_NOISE].clone()  # (S, M)
    n = min(sd.n_train for sd in subjects)
    v_data = np.stack([sd.x[:sd.n_train].var(0) for sd in subjects])  # (S, N)
    z0 = torch.cat([teacher_states(model.subject(i), sd, _span(sd)[:1]) for i, sd in enumerate(subjects)])  # (S, 1, M)
    z0 = z0.expand(S, n_samples, M)  # (S, B, M)
    per_latent = model.spec.observation == "identity"
    scale = np.ones((S, M))
    for _ in range(iters):
        model.params[LATENT_NOISE] = base * torch.as_tensor(scale, dtype=dt, device=dev)
        gen = torch.Generator().manual_seed(int(seed))
        eps_z = torch.randn(S, n_samples, n + 2 * K - 2, M, generator=gen, dtype=torch.float64).to(dev, dt)
        Z = model.generate(z0, n + 2 * K - 1, None, eps_z)[:, :, K:]  # (S, B, n+K-1, M) after a transient
        X = model.observe(Z).double().cpu().numpy()  # (S, B, n, N)
        X = X + sd_obs[:, None, None] * np.random.default_rng(seed).standard_normal(X.shape)
        with np.errstate(invalid="ignore"):
            v_gen = X.var(axis=2).mean(1)  # (S, N)
            ratio = np.clip(v_data - sd_obs**2, 0.05 * v_data, None) / np.clip(v_gen - sd_obs**2, 0.01 * v_data, None)
        ratio = np.where(np.isfinite(ratio), ratio, 1.0)
        if per_latent:
            scale[:, :N] *= np.sqrt(ratio)
        else:
            scale *= np.sqrt(ratio.mean(1, keepdims=True))
        scale = np.clip(scale, 0.1, 10.0)
    model.params[LATENT_NOISE] = base * torch.as_tensor(scale, dtype=dt, device=dev)  # (S, M)
    return scale

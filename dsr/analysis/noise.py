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


def estimate_noise(model: ConvSSM, subjects: list[SubjectData], latent: bool = False) -> None:
    """Estimate σ_obs (and with ``latent``, σ_z) of every fit of a stack and store them in ``model.params``.

    Parameters
    ----------
    model : ConvSSM
        S fits; gains ``params["noise.obs"]`` (S, N) and, with ``latent``, ``params["noise.latent"]`` (S, M).
    subjects : list of SubjectData
        The training data of each fit.
    latent : bool
        Also estimate the latent process noise from one-step residuals of the teacher states.
    """
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

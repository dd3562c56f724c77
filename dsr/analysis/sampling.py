"""Samples of a fitted convSSM's generator, drawn exactly as the metric engine draws its rollouts.

:func:`dsr.analysis.evaluate.evaluate` scores R rollouts per fit and keeps only the first; split-half
validation (``benchmarks/real_rest.py``) and between-fit distances need the samples themselves, of any
length. :func:`generate_samples` draws them with the engine's own pieces, so they are what a user of
``eval.generation`` gets:

* initial states: the first valid teacher state, perturbed by N(0, perturbation²) except sample 0
  (:func:`dsr.analysis.evaluate.initial_states`, the fit's ``torch.Generator().manual_seed(seed)``);
* ``stochastic``: latent process noise σ_z ⊙ ε at every step when the model has ``noise.latent``
  (and ``latent`` is true), observation noise σ_obs ⊙ ε per region on the decoded series (L ε with
  the full covariances' factors ``noise.latent_chol`` / ``noise.obs_chol``), then the moment calibration
  when the model has one (:mod:`dsr.analysis.calibration`); the draws
  come from :func:`dsr.analysis.evaluate.generation_noise` (seeded per fit);
* ``deterministic``: no noise (the paper's rollouts).

With n equal to the fit's length and n_samples equal to ``eval.n_rollouts``, sample 0 of the stochastic
generator is the rollout :func:`~dsr.analysis.evaluate.evaluate` returns.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.analysis.evaluate import generation_noise, initial_states
from dsr.analysis.noise import estimate_noise
from dsr.models.convssm import LATENT_NOISE, LATENT_NOISE_CHOL, OBS_NOISE, ConvSSM
from dsr.training.data import SubjectData


def stack(models: list[ConvSSM]) -> ConvSSM:
    """Fits of one structure (each S ≥ 1, same parameter keys) as one stacked model."""
    keys = set(models[0].params)
    if any(set(m.params) != keys for m in models):
        raise ValueError("stacked fits must have the same parameter keys (estimate the noise of all or none)")
    params = {k: torch.cat([m.params[k] for m in models]) for k in models[0].params}
    return ConvSSM(models[0].spec, params, torch.cat([m.filter for m in models]))


@torch.no_grad()
def generate_samples(model: ConvSSM, subjects: list[SubjectData], n: int, n_samples: int, seeds: list[int], *,
                     stochastic: bool = True, latent: bool = True,
                     perturbation: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """n_samples generated series of length n for every fit of a stacked model (no inputs or regressors).

    Parameters
    ----------
    model : ConvSSM
        S stacked fits. Without ``noise.obs`` the stochastic generator estimates the noise first
        (:func:`dsr.analysis.noise.estimate_noise`, observation noise only), as the metric engine does.
    subjects : list of SubjectData
        The data of each fit (its first valid target starts every sample).
    n, n_samples : int
        Length (observations) and number of samples per fit.
    seeds : list of int
        Each fit's evaluation seed.
    stochastic : bool
        The stochastic generator (else the deterministic one).
    latent : bool
        With ``stochastic``: add the model's latent process noise (``noise.latent``) when it has one.

    Returns
    -------
    x : ndarray (S, n_samples, n, N), standardised units (multiply by ``sd.std``, add ``sd.mean``)
    z : ndarray (S, n_samples, n + K − 1, M), latent states (first: the initial state)
    """
    S, K = model.n_subjects, model.kernel_size
    if len(subjects) != S or len(seeds) != S:
        raise ValueError(f"{S} fits but {len(subjects)} subjects and {len(seeds)} seeds")
    if any(sd.s is not None or sd.r is not None for sd in subjects):
        raise ValueError("generate_samples draws fits without external inputs or nuisance regressors")
    if stochastic and OBS_NOISE not in model.params:
        estimate_noise(model, subjects)
    M, N, dev, dt = model.spec.latent_dim, model.spec.n_obs, model.filter.device, model.filter.dtype
    z0 = torch.cat([initial_states(model.subject(i), sd, n_samples, perturbation, torch.Generator().manual_seed(int(s)))
                    for i, (sd, s) in enumerate(zip(subjects, seeds))])  # (S, R, M)
    use_lat = stochastic and latent and LATENT_NOISE in model.params
    gen = model if use_lat or LATENT_NOISE not in model.params else \
        ConvSSM(model.spec, {k: v for k, v in model.params.items() if k not in (LATENT_NOISE, LATENT_NOISE_CHOL)},
                model.filter)
    draws = [generation_noise(s, n_samples, n + K - 1, n, M, N, use_lat) for s in seeds] if stochastic else None
    eps_z = torch.stack([d[0] for d in draws]).to(dev, dt) if use_lat else None  # (S, R, n+K-2, M)
    Z = gen.generate(z0, n + K - 1, None, eps_z)  # (S, R, n+K-1, M)
    X = gen.observe(Z).double()  # (S, R, n, N)
    if stochastic:
        X = gen.add_observation_noise(X, torch.stack([d[1] for d in draws]).to(dev))  # (S, R, n, N)
        X = gen.calibrate_output(X)  # (S, R, n, N); unchanged without a moment calibration
    return X.cpu().numpy(), Z.double().cpu().numpy()


def to_data_units(x: np.ndarray, subjects: list[SubjectData]) -> np.ndarray:
    """Standardised samples (S, R, T, N) → data units of each fit's recording."""
    std = np.stack([sd.std for sd in subjects])[:, None, None]  # (S, 1, 1, N)
    mean = np.stack([sd.mean for sd in subjects])[:, None, None]
    return x * std + mean

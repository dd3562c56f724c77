"""Moment calibration of the stochastic generator's output (``eval.output_calibration = "moments"``).

The convSSM with the identity read-out maps each latent to one region, so the generated mean and
covariance across regions come from the dynamics and the noise alone; a nonlinear attractor's mean
need not be the data's, and the noise's covariance matching (:mod:`dsr.analysis.noise`) converges only
approximately through nonlinear dynamics. This calibration is an affine read-out fitted by moments:
stochastic generations as long as the training part give their mean μ_g and covariance C_g, the
training part gives μ_d and C_d, and every stochastic generation is mapped by x ← T x + b with
T = C_d^{1/2} C_g^{-1/2} (symmetric square roots; singular values kept in [0.1, 10]) and b = μ_d − T μ_g,
so that the generations' first two moments are the training part's. Only the fit's training part is
used. T and b are stored in the model's parameter dict (``calib.map`` (S, N, N), ``calib.shift`` (S, N);
:mod:`dsr.models.convssm`) and applied by :meth:`ConvSSM.calibrate_output` after the observation noise;
the deterministic generator is not calibrated.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.analysis.draws import stacked_randn
from dsr.analysis.noise import covariance_transform, first_teacher_states
from dsr.models.convssm import CALIB_MAP, CALIB_SHIFT, LATENT_NOISE, OBS_NOISE, ConvSSM
from dsr.training.data import SubjectData

CALIBRATIONS = ("none", "moments")


@torch.no_grad()
def calibrate_output(model: ConvSSM, subjects: list[SubjectData], seeds: list[int] | None = None,
                     n_samples: int = 16) -> None:
    """Fit the moment calibration of every fit of a stack (its noise estimated first) into ``model.params``.

    Parameters
    ----------
    model : ConvSSM
        S fits with ``noise.obs`` (and ``noise.latent``, used when present); gains ``calib.map`` and
        ``calib.shift`` (an earlier calibration is replaced, not composed).
    subjects : list of SubjectData
        The training data of each fit.
    seeds : list of int, optional
        Each fit's seed of the generations that estimate μ_g, C_g (default 0 for all): a fit's
        calibration does not depend on the fits stacked with it.
    n_samples : int
        Stochastic generations per fit.
    """
    if OBS_NOISE not in model.params:
        raise ValueError("calibrate_output needs the model's noise ('noise.obs'); estimate it first")
    for key in (CALIB_MAP, CALIB_SHIFT):
        model.params.pop(key, None)
    dt, dev = model.filter.dtype, model.filter.device
    S, M, N, K = model.n_subjects, model.spec.latent_dim, model.spec.n_obs, model.kernel_size
    n = min(sd.n_train for sd in subjects)
    gens = [torch.Generator().manual_seed(int(s)) for s in (seeds if seeds is not None else [0] * S)]
    shapes = ([(n_samples, n + 2 * K - 2, M)] if LATENT_NOISE in model.params else []) + [(n_samples, n, N)]
    draws = stacked_randn(gens, shapes, dev)  # each fit's latent, then observation draws, (S, *shape) float64
    z0 = first_teacher_states(model, subjects).expand(S, n_samples, M)  # (S, B, M)
    eps_z = draws[0].to(dt) if len(draws) == 2 else None
    Z = model.generate(z0, n + 2 * K - 1, None, eps_z)[:, :, K:]  # (S, B, n+K-1, M) after a transient
    X = model.observe(Z).double()  # (S, B, n, N)
    X = model.add_observation_noise(X, draws[-1]).reshape(S, -1, N)  # (S, B·n, N)
    ok_t = torch.isfinite(X).all(2).all(1)  # (S,) a diverged fit keeps the identity map
    X0 = torch.nan_to_num(X)
    mu_t = torch.where(ok_t[:, None], X0.mean(1), torch.zeros((), dtype=X.dtype, device=X.device))  # (S, N)
    Xc = X0 - mu_t[:, None]
    C_g = (Xc.transpose(1, 2) @ Xc / X.shape[1]).cpu().numpy()  # (S, N, N)
    ok, mu_g = ok_t.cpu().numpy(), mu_t.cpu().numpy()
    mu_d = np.stack([sd.x[:sd.n_train].mean(0) for sd in subjects])  # (S, N)
    C_d = np.stack([np.cov(sd.x[:sd.n_train].T, bias=True) for sd in subjects])  # (S, N, N)
    T = covariance_transform(C_d, np.where(ok[:, None, None], C_g, C_d))  # (S, N, N)
    T = np.where(ok[:, None, None], T, np.eye(N))
    b = mu_d - np.einsum("sij,sj->si", T, mu_g)  # (S, N)
    model.params[CALIB_MAP] = torch.as_tensor(T, dtype=dt, device=dev)
    model.params[CALIB_SHIFT] = torch.as_tensor(b, dtype=dt, device=dev)

"""Stochastic generation and linearised features of fitted convSSMs, for ``real_rest.py``.

A stand-in until the product's own stochastic generation (``eval.generation = "stochastic"``) is
merged; it uses only the model protocol (``targets``, ``init_state``, ``step``, ``observe``,
``jacobian``). Noise is estimated on the training part, in standardised units:

* process noise W: covariance of the one-step latent residuals d_t − F(d_{t−1}) on the forced units,
  over consecutive valid Wiener targets d (the states teacher forcing uses);
* observation noise R (per region): variance of x_t − decode(Σ_k h_k d_{t−k}), the data minus the
  filtered targets (the same estimate as the linear state-space model's R).

Three generators: ``deterministic`` (the paper's rollouts: initial state perturbed by N(0, 0.01²),
no noise), ``obs`` (deterministic latent orbit + observation noise) and ``process`` (latent noise
W at every step + observation noise). :func:`calibrate` rescales W per read-out unit so that the
generated variance of each region matches the training data's (moment matching by simulation, the
nonlinear counterpart of the linear state-space model's variance matching).
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.models.convssm import ConvSSM

MODES = ("deterministic", "obs", "process")


def stack(models: list[ConvSSM]) -> ConvSSM:
    """Fits (S = 1 each, one structure) as one stacked model."""
    params = {k: torch.cat([m.params[k] for m in models]) for k in models[0].params}
    return ConvSSM(models[0].spec, params, torch.cat([m.filter for m in models]))


@torch.no_grad()
def noise_estimates(model: ConvSSM, d: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Process-noise covariance (M, M) and observation-noise variances (N,) of one fit (S = 1).

    d (T, N): Wiener targets of the training part (NaN where unreliable); x (T, N): standardised data.
    """
    dev, dt = model.filter.device, model.filter.dtype
    M, K = model.spec.latent_dim, model.kernel_size
    valid = np.isfinite(d).all(1)
    pair = np.flatnonzero(valid[:-1] & valid[1:])
    D = model.targets(torch.as_tensor(np.nan_to_num(d), dtype=dt, device=dev)[None, None])[0, 0]  # (T, Nf)
    nf = D.shape[1]
    z_prev = model.init_state(D[pair][None])  # (1, I, M)
    eps = (D[pair + 1] - model.step(z_prev)[0, :, :nf]).double().cpu().numpy()  # (I, Nf)
    W = np.zeros((M, M))
    eps = eps[np.isfinite(eps).all(1)]
    if len(eps) > nf:  # a diverged fit keeps W = 0
        W[:nf, :nf] = np.cov(eps.T, bias=True)
    idx = np.flatnonzero(valid)
    lo, hi = idx[0], idx[-1] + 1
    block = valid[lo:hi].all() and hi - lo >= K + 2
    if not block:  # NaN inside the valid span: use the longest run only
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
        run = max(runs, key=len)
        lo, hi = run[0], run[-1] + 1
    z = model.init_state(D[lo:hi][None])[:, None]  # (1, 1, T_v, M)
    xhat = model.observe(z)[0, 0].double().cpu().numpy()  # (T_v-K+1, N)
    R = np.clip((x[lo + K - 1:hi] - xhat).var(0), 1e-6, None)
    return W, np.where(np.isfinite(R), R, 1e-6)


@torch.no_grad()
def generate(model: ConvSSM, starts: np.ndarray, W: np.ndarray, R: np.ndarray, n: int, n_samples: int,
             mode: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Samples of S stacked fits in standardised units.

    Parameters
    ----------
    model : ConvSSM (S fits)
    starts : (S, Nf) first valid target of each fit; W (S, M, M), R (S, N) from :func:`noise_estimates`.

    Returns
    -------
    x : ndarray (S, n_samples, n, N) and z : ndarray (S, n_samples, n + K − 1, M)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    dev, dt = model.filter.device, model.filter.dtype
    gen = torch.Generator().manual_seed(int(seed))
    S, M, K = model.n_subjects, model.spec.latent_dim, model.kernel_size
    d0 = torch.as_tensor(starts, dtype=dt, device=dev)[:, None].expand(S, n_samples, -1)  # (S, B, Nf)
    z = model.init_state(model.targets(d0[:, :, None])[:, :, 0])  # (S, B, M)
    z = z + (0.01 * torch.randn(z.shape, generator=gen, dtype=torch.float64)).to(dev, dt)
    chol = torch.as_tensor(np.stack([_sqrt_psd(w) for w in W]), dtype=dt, device=dev)  # (S, M, M)
    Z = torch.empty(S, n_samples, n + K - 1, M, dtype=dt, device=dev)
    for t in range(n + K - 1):
        Z[:, :, t] = z
        z = model.step(z)  # (S, B, M)
        if mode == "process":
            e = torch.randn(S, n_samples, M, generator=gen, dtype=torch.float64).to(dev, dt)
            z = z + torch.einsum("sij,sbj->sbi", chol, e)
    X = model.observe(Z)  # (S, B, n, N)
    if mode != "deterministic":
        e = torch.randn(X.shape, generator=gen, dtype=torch.float64).to(dev, dt)
        X = X + e * torch.as_tensor(np.sqrt(R), dtype=dt, device=dev)[:, None, None]
    return X.double().cpu().numpy(), Z.double().cpu().numpy()


def _sqrt_psd(w: np.ndarray) -> np.ndarray:
    """A square root L (L Lᵀ = w) of a covariance, negative eigenvalues clipped; zeros if not finite."""
    if not np.isfinite(w).all():
        return np.zeros_like(w)
    try:
        return np.linalg.cholesky(w + 1e-9 * np.eye(len(w)))
    except np.linalg.LinAlgError:
        pass
    vals, vecs = np.linalg.eigh((w + w.T) / 2)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))


def calibrate(model: ConvSSM, starts: np.ndarray, W: np.ndarray, R: np.ndarray, n: int, n_samples: int = 10,
              iters: int = 3, seed: int = 0) -> np.ndarray:
    """W (S, M, M) rescaled as D W D so that ``process`` samples have variance 1 per region (standardised units).

    D is diagonal on the first N latents (the identity read-out's regions), found by a few fixed-point
    steps d_i ← d_i √((1 − R_i) / (v_i − R_i)) with v_i the generated variance; factors stay in [0.1, 10].
    """
    S, M = W.shape[:2]
    N = R.shape[1]
    scale = np.ones((S, M))
    for _ in range(iters):
        Wd = W * scale[:, :, None] * scale[:, None, :]
        X, _ = generate(model, starts, Wd, R, n, n_samples, "process", seed=seed)  # (S, B, n, N)
        v = np.nanvar(X, axis=2).mean(1)  # (S, N)
        ratio = np.clip(1.0 - R, 0.05, None) / np.clip(v - R, 0.01, None)
        ratio = np.where(np.isfinite(ratio), ratio, 1.0)
        scale[:, :N] = np.clip(scale[:, :N] * np.sqrt(ratio), 0.1, 10.0)
    return W * scale[:, :, None] * scale[:, None, :]


def _sym_power(C: np.ndarray, p: float) -> np.ndarray:
    vals, vecs = np.linalg.eigh((C + C.T) / 2)
    return (vecs * np.clip(vals, 1e-6, None) ** p) @ vecs.T


def calibrate_covariance(model: ConvSSM, starts: np.ndarray, W: np.ndarray, R: np.ndarray, target: np.ndarray,
                         n: int, n_samples: int = 10, iters: int = 4, seed: int = 0) -> np.ndarray:
    """W (S, M, M) transformed as T W Tᵀ so that ``process`` samples get the covariance ``target`` (S, N, N).

    A heuristic fixed point on the read-out units: T ← (C_target^{1/2} C_gen^{−1/2}) T with C_gen the
    generated covariance (exact for a linear model whose filter commutes with T); factors are damped
    (square root per step) and each step's T is kept only where it lowers the covariance error.
    """
    S, M = W.shape[:2]
    N = R.shape[1]
    T = np.tile(np.eye(M), (S, 1, 1))
    best = np.full(S, np.inf)
    out = W.copy()
    for _ in range(iters):
        Wt = np.einsum("sij,sjk,slk->sil", T, W, T)
        X, _ = generate(model, starts, Wt, R, n, n_samples, "process", seed=seed)  # (S, B, n, N)
        for s in range(S):
            xs = X[s].reshape(-1, N)
            if not np.isfinite(xs).all():
                continue
            C = np.cov(xs.T)
            err = np.linalg.norm(C - target[s])
            if err < best[s]:
                best[s], out[s] = err, Wt[s]
            step = _sym_power(target[s], 0.5) @ _sym_power(C, -0.5)  # (N, N)
            T[s, :N] = _sym_power(step @ step.T, 0.25) @ T[s, :N]  # damped, symmetric
    return out


@torch.no_grad()
def mean_jacobians(model: ConvSSM, Z: np.ndarray, max_states: int = 2000) -> np.ndarray:
    """Jacobian of each fit averaged over (up to max_states of) its generated latent states Z (S, B, T, M) → (S, M, M)."""
    S, M = Z.shape[0], Z.shape[-1]
    flat = Z.reshape(S, -1, M)[:, :max_states]  # (S, P, M)
    zt = torch.as_tensor(flat, dtype=model.filter.dtype, device=model.filter.device)
    J = model.jacobian(zt).double().cpu().numpy()  # (S, P, M, M)
    ok = np.isfinite(J).all(axis=(2, 3))
    return np.stack([J[s][ok[s]].mean(0) if ok[s].any() else np.full((M, M), np.nan) for s in range(S)])

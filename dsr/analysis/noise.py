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

Full covariances (``obs_covariance`` / ``latent_covariance`` = "full"; ``eval.obs_noise_covariance``,
``eval.latent_noise_covariance``). Diagonal noise makes every cross-region covariance of the generations
come from the dynamics; a linear-Gaussian VAR(1) draws its innovations from the full residual
covariance instead. With "full", the observation noise is N(0, R) with R the covariance (second moment)
of the observation residuals above, and the process noise N(0, Q) with Q that of the teacher-state
one-step residuals (forced latents; rows and columns of unforced latents 0). Both are stored as lower
Cholesky factors (``noise.obs_chol`` (S, N, N), ``noise.latent_chol`` (S, M, M)) beside the SDs (square
roots of their diagonals; after matching, a factor L with L Lᵀ = Q, no longer triangular).
Covariance-matched process noise (``latent="matched"`` with a full latent covariance): the fixed-point
steps act on the covariance, L ← T L with T = C_t^{1/2} C_g^{-1/2} (symmetric square roots; C_t the
training data's covariance minus R, C_g that of noise-free-decoded stochastic generations; identity
read-out: the rows of the read-out latents; otherwise one common factor as above); T's singular values
stay in [0.1, 10]. Only the fit's training part is used. Through a nonlinear map the fixed point
converges slowly; :mod:`dsr.analysis.calibration` matches the generated moments exactly.

The estimates are stored in the model's parameter dict (``noise.obs`` (S, N), ``noise.latent``
(S, M), and the Cholesky factors; :mod:`dsr.models.convssm`), so a saved model carries them.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.analysis.draws import randn_like_cpu
from dsr.models.convssm import LATENT_NOISE, LATENT_NOISE_CHOL, OBS_NOISE, OBS_NOISE_CHOL, ConvSSM
from dsr.training.data import SubjectData


def training_span(sd: SubjectData) -> np.ndarray:
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
def first_teacher_states(model: ConvSSM, subjects: list[SubjectData]) -> torch.Tensor:
    """Each fit's teacher state at its first valid training target, (S, 1, M), all fits at once."""
    has_rd = [sd.rd is not None for sd in subjects]
    if any(has_rd) and not all(has_rd):  # mixed nuisance: one fit at a time
        return torch.cat([teacher_states(model.subject(i), sd, training_span(sd)[:1]) for i, sd in enumerate(subjects)])
    t = lambda a: torch.as_tensor(a, dtype=model.filter.dtype, device=model.filter.device)  # noqa: E731
    first = [int(training_span(sd)[0]) for sd in subjects]
    rd = t(np.stack([np.nan_to_num(sd.rd[i]) for sd, i in zip(subjects, first)]))[:, None, None] if all(has_rd) \
        else None  # (S, 1, 1, P)
    d = t(np.stack([sd.d[i] for sd, i in zip(subjects, first)]))[:, None, None]  # (S, 1, 1, N)
    return model.init_state(model.targets(d, rd)[:, 0])  # (S, 1, M)


@torch.no_grad()
def observation_residuals(model: ConvSSM, sd: SubjectData) -> np.ndarray:
    """x_t − decoded filtered teacher states at every training time with a full valid history, (T_r, N)."""
    K = model.kernel_size
    idx = training_span(sd)
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
    idx = training_span(sd)
    if len(idx) < 2:
        return np.zeros((0, model.n_forced))
    z = teacher_states(model, sd, idx)  # (1, I, M)
    s = None
    if sd.s is not None:
        s = torch.as_tensor(sd.s[idx[:-1]], dtype=z.dtype, device=z.device)[None]  # (1, I-1, Q)
    pred = model.step(z[:, :-1], s)  # (1, I-1, M)
    return (z[0, 1:, :model.n_forced] - pred[0, :, :model.n_forced]).cpu().double().numpy()


@torch.no_grad()
def _residuals(model: ConvSSM, subs: list[SubjectData], members: list[int], latent: bool) -> tuple[list, list]:
    """:func:`observation_residuals` and (with ``latent``) :func:`latent_residuals` of the fits ``members`` of a
    stack, all with one training span and the same inputs present, computed together: two lists of arrays."""
    K, G, idx = model.kernel_size, len(members), training_span(subs[0])
    empty = ([np.zeros((0, sd.x.shape[1])) for sd in subs], [np.zeros((0, model.n_forced)) for _ in subs])
    if len(idx) < 2:
        return empty[0], empty[1]
    sel = torch.as_tensor(members, device=model.filter.device)
    sub = ConvSSM(model.spec, {k: v[sel] for k, v in model.params.items()}, model.filter[sel])
    t = lambda a: torch.as_tensor(np.stack(a), dtype=sub.filter.dtype, device=sub.filter.device)  # noqa: E731
    rd = None if subs[0].rd is None else t([np.nan_to_num(sd.rd[idx]) for sd in subs])[:, None]  # (G, 1, I, P)
    z = sub.init_state(sub.targets(t([sd.d[idx] for sd in subs])[:, None], rd)[:, 0])  # (G, I, M)
    obs = empty[0]
    if len(idx) >= K:
        times = idx[K - 1:]
        r = None
        if subs[0].r is not None and model.spec.observation == "regressor":
            r = t([sd.r[times] for sd in subs])[:, None]  # (G, 1, I-K+1, P)
        xhat = sub.observe(z[:, None], r)[:, 0].cpu().double().numpy()  # (G, I-K+1, N)
        obs = [sd.x[times] - xhat[g] for g, sd in enumerate(subs)]
    lat = empty[1]
    if latent:
        s = None if subs[0].s is None else t([sd.s[idx[:-1]] for sd in subs])  # (G, I-1, Q)
        pred = sub.step(z[:, :-1], s)  # (G, I-1, M)
        nf = model.n_forced
        lat = list((z[:, 1:, :nf] - pred[:, :, :nf]).cpu().double().numpy())  # G × (I-1, n_forced)
    return obs, lat


LATENT_MODES = ("none", "targets", "matched")
COVARIANCES = ("diagonal", "full")


def cholesky_factor(res: np.ndarray, size: int | None = None) -> np.ndarray:
    """Lower Cholesky factor of the second moment resᵀres / T of residuals (T, n), padded with zeros to (size, size).

    A tiny jitter (1e-8 of the mean variance) keeps a singular covariance factorisable.
    """
    n = res.shape[1]
    size = n if size is None else size
    out = np.zeros((size, size))
    if len(res) == 0:
        return out
    C = res.T @ res / len(res)  # (n, n)
    C = C + 1e-8 * max(float(np.trace(C)) / max(n, 1), 1e-12) * np.eye(n)
    out[:n, :n] = np.linalg.cholesky(C)
    return out


def _mode(latent) -> str:
    mode = {False: "none", True: "targets"}.get(latent, latent) if isinstance(latent, bool) else latent
    if mode not in LATENT_MODES:
        raise ValueError(f"latent must be one of {LATENT_MODES}, got {latent!r}")
    return mode


def estimate_noise(model: ConvSSM, subjects: list[SubjectData], latent: bool | str = False,
                   obs_covariance: str = "diagonal", latent_covariance: str = "diagonal") -> None:
    """Estimate σ_obs (and with ``latent``, σ_z) of every fit of a stack and store them in ``model.params``.

    Parameters
    ----------
    model : ConvSSM
        S fits; gains ``params["noise.obs"]`` (S, N) and, with ``latent``, ``params["noise.latent"]`` (S, M);
        with full covariances also ``noise.obs_chol`` (S, N, N) / ``noise.latent_chol`` (S, M, M). A factor
        of an earlier estimate of the same noise that this one does not make is removed.
    subjects : list of SubjectData
        The training data of each fit.
    latent : bool or {"none", "targets", "matched"}
        Also estimate the latent process noise: from one-step residuals of the teacher states (True or
        "targets"), then variance-matched by simulation ("matched", :func:`match_latent_noise`).
    obs_covariance, latent_covariance : {"diagonal", "full"}
        Diagonal noise (SDs per region / latent) or the residuals' full covariance.
    """
    mode = _mode(latent)
    for name, value in (("obs_covariance", obs_covariance), ("latent_covariance", latent_covariance)):
        if value not in COVARIANCES:
            raise ValueError(f"{name} must be one of {COVARIANCES}, got {value!r}")
    latent = mode != "none"
    dt, dev = model.filter.dtype, model.filter.device
    M = model.spec.latent_dim
    obs, lat, obs_l, lat_l = ([None] * len(subjects) for _ in range(4))
    groups: dict[tuple, list[int]] = {}  # fits of one training span and inputs: their residuals at once
    for i, sd in enumerate(subjects):
        span = training_span(sd)
        key = (len(span), int(span[0]) if len(span) else 0, sd.rd is None, sd.r is None, sd.s is None)
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        for i, res, res_z in zip(members, *_residuals(model, [subjects[i] for i in members], members, latent)):
            obs[i] = np.sqrt(np.mean(res**2, axis=0)) if len(res) else np.zeros(subjects[i].x.shape[1])
            obs_l[i] = cholesky_factor(res, subjects[i].x.shape[1])  # (N, N)
            if latent:
                lat[i] = np.zeros(M)
                if len(res_z):
                    lat[i][:res_z.shape[1]] = np.sqrt(np.mean(res_z**2, axis=0))
                lat_l[i] = cholesky_factor(res_z, M)  # (M, M)
    model.params.pop(OBS_NOISE_CHOL, None)
    if latent:
        model.params.pop(LATENT_NOISE_CHOL, None)
    model.params[OBS_NOISE] = torch.as_tensor(np.stack(obs), dtype=dt, device=dev)  # (S, N)
    if obs_covariance == "full":
        model.params[OBS_NOISE_CHOL] = torch.as_tensor(np.stack(obs_l), dtype=dt, device=dev)  # (S, N, N)
    if latent:
        model.params[LATENT_NOISE] = torch.as_tensor(np.stack(lat), dtype=dt, device=dev)  # (S, M)
        if latent_covariance == "full":
            model.params[LATENT_NOISE_CHOL] = torch.as_tensor(np.stack(lat_l), dtype=dt, device=dev)  # (S, M, M)
    if mode == "matched":
        match_latent_noise(model, subjects)


def sym_sqrt(C: np.ndarray, inverse: bool = False, floor: float = 1e-6) -> np.ndarray:
    """Symmetric square root (or inverse square root) of symmetric (..., n, n) matrices, eigenvalues ≥ floor."""
    w, V = np.linalg.eigh(C)
    w = np.clip(w, floor, None) ** (-0.5 if inverse else 0.5)
    return (V * w[..., None, :]) @ np.swapaxes(V, -1, -2)


def covariance_transform(C_t: np.ndarray, C_g: np.ndarray) -> np.ndarray:
    """T = C_t^{1/2} C_g^{-1/2}, singular values clipped to [0.1, 10] (T C_g Tᵀ = C_t unclipped); (S, N, N)."""
    T = sym_sqrt(C_t) @ sym_sqrt(C_g, inverse=True)
    U, sv, Vt = np.linalg.svd(T)
    return (U * np.clip(sv, 0.1, 10.0)[..., None, :]) @ Vt


@torch.no_grad()
def match_latent_noise(model: ConvSSM, subjects: list[SubjectData], n_samples: int = 8, iters: int = 3,
                       seed: int = 0) -> np.ndarray:
    """Rescale the latent noise in place so that stochastic generations have the training data's variance.

    With ``noise.latent_chol`` (full covariance) and the identity read-out, the generations' covariance
    is matched instead (module docstring). Generations start at each fit's first valid teacher state,
    run as long as its training part (after a transient of K steps) and get observation noise. Returns
    the factors applied: (S, M) per latent, or (S, M, M), the transform of the Cholesky factor.
    """
    dt, dev = model.filter.dtype, model.filter.device
    S, M, N, K = model.n_subjects, model.spec.latent_dim, model.spec.n_obs, model.kernel_size
    sd_obs = model.params[OBS_NOISE].double().cpu().numpy()  # (S, N)
    full = LATENT_NOISE_CHOL in model.params and model.spec.observation == "identity"
    obs_chol = model.params.get(OBS_NOISE_CHOL)
    R_obs = (obs_chol.double().cpu().numpy() @ np.swapaxes(obs_chol.double().cpu().numpy(), 1, 2)
             if obs_chol is not None else np.stack([np.diag(v**2) for v in sd_obs]))  # (S, N, N)
    base = model.params[LATENT_NOISE].clone()  # (S, M)
    base_chol = model.params.get(LATENT_NOISE_CHOL)
    n = min(sd.n_train for sd in subjects)
    v_data = np.stack([sd.x[:sd.n_train].var(0) for sd in subjects])  # (S, N)
    C_data = np.stack([np.cov(sd.x[:sd.n_train].T, bias=True) for sd in subjects])  # (S, N, N)
    C_t = C_data - R_obs
    w, V = np.linalg.eigh(C_t)  # target of the noise-free signal, kept positive definite
    C_t = (V * np.clip(w, 0.05 * np.trace(C_data, axis1=1, axis2=2)[:, None] / N, None)[:, None]) @ np.swapaxes(V, 1, 2)
    z0 = first_teacher_states(model, subjects)  # (S, 1, M)
    z0 = z0.expand(S, n_samples, M)  # (S, B, M)
    per_latent = model.spec.observation == "identity"
    scale = np.ones((S, M))
    transform = np.tile(np.eye(M), (S, 1, 1))  # (S, M, M) applied to the rows of the Cholesky factor
    # every iteration uses the same draws (the same seeds): drawn once, the latent ones transformed on the device
    eps_z = randn_like_cpu(torch.Generator().manual_seed(int(seed)), (S, n_samples, n + 2 * K - 2, M), dev).to(dt)
    eps_x = None
    for _ in range(iters):
        _set_latent(model, base, base_chol, scale, transform)
        Z = model.generate(z0, n + 2 * K - 1, None, eps_z)[:, :, K:]  # (S, B, n+K-1, M) after a transient
        X = model.observe(Z).double().cpu().numpy()  # (S, B, n, N) noise-free decoded
        if full:
            Xc = X - X.mean(2, keepdims=True)
            C_g = np.einsum("sbti,sbtj->sij", Xc, Xc) / (Xc.shape[1] * Xc.shape[2])  # (S, N, N)
            if not np.isfinite(C_g).all():
                C_g = np.where(np.isfinite(C_g).all((1, 2))[:, None, None], C_g, C_t)
            step = np.tile(np.eye(M), (S, 1, 1))
            step[:, :N, :N] = covariance_transform(C_t, C_g)
            transform = step @ transform
            continue
        if eps_x is None:
            eps_x = np.random.default_rng(seed).standard_normal(X.shape)
        X = X + sd_obs[:, None, None] * eps_x
        with np.errstate(invalid="ignore"):
            v_gen = X.var(axis=2).mean(1)  # (S, N)
            ratio = np.clip(v_data - sd_obs**2, 0.05 * v_data, None) / np.clip(v_gen - sd_obs**2, 0.01 * v_data, None)
        ratio = np.where(np.isfinite(ratio), ratio, 1.0)
        if per_latent:
            scale[:, :N] *= np.sqrt(ratio)
        else:
            scale *= np.sqrt(ratio.mean(1, keepdims=True))
        scale = np.clip(scale, 0.1, 10.0)
    _set_latent(model, base, base_chol, scale, transform)
    return transform if full else scale


def _set_latent(model: ConvSSM, base, base_chol, scale: np.ndarray, transform: np.ndarray) -> None:
    """noise.latent (and noise.latent_chol) = the base noise rescaled per latent, or transformed (full)."""
    dt, dev = model.filter.dtype, model.filter.device
    if base_chol is None:
        model.params[LATENT_NOISE] = base * torch.as_tensor(scale, dtype=dt, device=dev)  # (S, M)
        return
    L = torch.as_tensor(transform, dtype=dt, device=dev) @ base_chol * \
        torch.as_tensor(scale, dtype=dt, device=dev)[:, :, None]  # (S, M, M)
    model.params[LATENT_NOISE_CHOL] = L
    model.params[LATENT_NOISE] = L.pow(2).sum(-1).sqrt()  # (S, M) SD per latent

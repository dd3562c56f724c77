"""The product's checkpoint score: D_stsp of a free-running generation against the training part (or its
held-back last stretch, ``train.select_holdout``).

As the reference code's training loop does every ``scalar_saving_interval`` epochs (github
humml-lab/GTF-ConvSSM, src/tf_training/trainings/training_vanilla_conv.jl): one rollout from the
unperturbed state at the first valid target, filtered and decoded (the observation model, through the HRF),
scored by D_stsp (with ``train.select_rollouts`` > 1, the mean over that many rollouts, the others from
perturbed starts as the evaluation's; :func:`dsr.analysis.dstsp.dstsp_batch`: ``eval.dstsp_bins`` bins per dimension up to
``eval.bins_max_dims`` dimensions, the GMM estimator above) -- here against the fit's *training* part only,
so the selection never sees the test part. All fits of a stack are generated at once on the training device
(on CUDA the fused GTF kernel with α = 0 runs the whole rollout in one launch) and scored in one batched call.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from dsr.analysis.dstsp import dstsp_batch, dstsp_bins_batch
from dsr.analysis.noise import estimate_noise
from dsr.config import EvalConfig, TrainConfig
from dsr.errors import ConfigError
from dsr.models.convssm import OBS_NOISE, ConvSSM
from dsr.ops import kernel_module
from dsr.training.data import SubjectData
from dsr.training.selection import held_back


def free_run(model: ConvSSM, z0: torch.Tensor, n_steps: int, fused: bool | None = None) -> torch.Tensor:
    """Free-running latents (S, B, n_steps, M) from z0 (S, B, M), z0 first (no inputs, no noise).

    ``fused`` (default: on CUDA where the kernel takes the model) runs the fused weak-forcing GTF kernel
    (:func:`dsr.ops.gtf_triton.gtf_rollout_triton_weak`) with α = 0 and zero targets, i.e. z̃ = z, the free
    map: the whole rollout in one launch instead of a few launches per step; otherwise
    :meth:`ConvSSM.generate`.
    """
    kind, kernel = model.spec.latent_model, kernel_module("gtf_triton")
    if fused is None:
        fused = (z0.is_cuda and kind in ("shPLRNN", "cshPLRNN") and z0.dtype == torch.float32
                 and kernel is not None and kernel.fits_one_tile(*model.latent_params["W1"].shape[1:]))
    if fused and n_steps >= 2:
        S, B, M = z0.shape
        d = torch.zeros(S, B, n_steps, 1, dtype=z0.dtype, device=z0.device)  # (S, B, n, 1) never forced
        alpha = torch.zeros(S, dtype=z0.dtype, device=z0.device)  # (S,)
        on_gpu = torch.cuda.device(z0.device) if z0.is_cuda else contextlib.nullcontext()  # the tensors' GPU
        with torch.no_grad(), on_gpu:
            Z = kernel.gtf_rollout_triton_weak(model.latent_params, z0, d, alpha,
                                               clipped=kind == "cshPLRNN")  # (S, B, n-1, M)
        return torch.cat([z0[:, :, None], Z], dim=2)  # (S, B, n, M)
    return model.generate(z0, n_steps)


def start_states(model: ConvSSM, subjects: list[SubjectData]) -> torch.Tensor:
    """The state at each fit's first valid target, unperturbed (as the evaluation's rollout 0): (S, 1, M)."""
    dev, dt = model.filter.device, model.filter.dtype
    rows = [int(np.flatnonzero(np.isfinite(sd.d[:, 0]))[0]) for sd in subjects]
    d0 = torch.as_tensor(np.stack([sd.d[t] for sd, t in zip(subjects, rows)]), dtype=dt, device=dev)  # (S, N)
    rd0 = None
    if subjects[0].rd is not None:
        rd0 = torch.as_tensor(np.stack([sd.rd[t] for sd, t in zip(subjects, rows)]), dtype=dt, device=dev)[:, None, None]
    return model.init_state(model.targets(d0[:, None, None], rd0)[:, :, 0])  # (S, 1, M)


def start_perturbations(seeds: list[int], n_rollouts: int, M: int, sd: float) -> torch.Tensor:
    """Per fit, rollout 0 unperturbed and the others N(0, sd²) (S, R, M), each fit's from its own seed (a fit
    scores the same in any stack), float64 on the CPU."""
    out = torch.zeros(len(seeds), n_rollouts, M, dtype=torch.float64)  # (S, R, M)
    for i, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(int(seed) + 7919)
        out[i, 1:] = sd * torch.randn(n_rollouts - 1, M, generator=gen, dtype=torch.float64)
    return out


def observation_noise(seeds: list[int], idx: list[int], shape: tuple[int, int, int], sd: torch.Tensor) -> torch.Tensor:
    """N(0, sd_i²) observation noise (F, R, n_obs, N) for the fits idx, each fit's from its own seed (float64, on
    sd's device); sd (S, N) the stack's per-channel SDs."""
    eps = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(seeds[i]) + 104729),
                                   dtype=torch.float64) for i in idx]).to(sd.device)  # (F, R, n_obs, N)
    return eps * sd[idx].double()[:, None, None, :]


def dstsp_scorer(subjects: list[SubjectData], seeds: list[int], eval_cfg: EvalConfig, n_steps: int = 0,
                 holdout: float = 0.0, rollouts: int = 1, noisy: bool = False):
    """A scorer for :func:`dsr.training.loop.train` (``train.select_every``): ``scorer(model)`` → (S,) D_stsp.

    Parameters
    ----------
    subjects : list of SubjectData
        One per fit of the stack.
    seeds : list of int
        Per fit: the seed of the GMM estimator's Monte-Carlo samples (N > ``eval.bins_max_dims``).
    eval_cfg : EvalConfig
        The D_stsp estimator's settings (bins, GMM scaling, the dimension at which it switches).
    n_steps : int
        Observations generated per fit (0: as many as the reference has). Fewer steps score faster and noisier.
    holdout : float
        ``train.select_holdout``: the reference is the held-back last fraction of the training part (which
        training then does not see, :func:`dsr.training.selection.training_view`) instead of all of it.
    rollouts : int
        ``train.select_rollouts``: the score is the mean D_stsp of this many rollouts per fit, the first from
        the unperturbed start, the others from starts perturbed by N(0, ``eval.perturbation``²), the same
        perturbations at every scoring. A diverged rollout makes the score infinite.
    noisy : bool
        Add observation noise to the rollouts as ``eval.generation = "stochastic"`` does: N(0, σ²) per channel,
        σ the root-mean-square residual of the data against the current decoder's filtered teacher states on
        the training part (:func:`dsr.analysis.noise.estimate_noise`), the same draws at every scoring
        (``train.select_rescore``).
    """
    if rollouts < 1:
        raise ConfigError(f"train.select_rollouts must be >= 1, got {rollouts}")
    if any(sd.s is not None for sd in subjects):
        raise ConfigError("train.select_every is not supported for fits with external inputs")
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, sd in enumerate(subjects):
        lo = sd.n_train - held_back(sd.n_train, holdout) if holdout > 0 else 0  # the reference: x[lo:n_train]
        if sd.n_train - lo < 2:
            raise ConfigError(f"train.select_holdout = {holdout} holds back {sd.n_train - lo} sample(s) of "
                              f"{sd.n_train}: too few to score")
        groups.setdefault((lo, sd.n_train, n_steps or sd.n_train - lo), []).append(i)
    kw = dict(n_bins=eval_cfg.dstsp_bins, scaling=eval_cfg.dstsp_scaling, bins_max_dims=eval_cfg.bins_max_dims)
    cached: dict = {}  # (lo, n_train, n_obs, device) -> (F, n_train - lo, N) float64 references (binned estimator)
    shifts: dict = {}  # M -> (S, R, M) start perturbations, drawn once

    @torch.no_grad()
    def score(model: ConvSSM) -> np.ndarray:
        K = model.kernel_size
        z0 = start_states(model, subjects)  # (S, 1, M)
        if rollouts > 1:
            M = z0.shape[-1]
            if M not in shifts:
                shifts[M] = start_perturbations(seeds, rollouts, M, eval_cfg.perturbation)
            z0 = z0 + shifts[M].to(device=z0.device, dtype=z0.dtype)  # (S, R, M)
        out = np.full(len(subjects), np.inf)
        J = model.params.get("obs.J")
        sd_obs = None
        if noisy:
            est = ConvSSM(model.spec, dict(model.params), model.filter)
            estimate_noise(est, subjects)
            sd_obs = est.params[OBS_NOISE]  # (S, N)
        for (lo, n_train, n_obs), idx in groups.items():
            one = len(idx) == len(subjects)
            sel = torch.as_tensor(idx, device=z0.device)
            sub = model if one else ConvSSM(model.spec, {k: v[sel] for k, v in model.params.items()},
                                            model.filter[sel])
            Z = free_run(sub, z0 if one else z0[sel], n_obs + K - 1)  # (F, R, n_obs+K-1, M)
            X = sub.observe(Z).double()  # (F, R, n_obs, N)
            if sd_obs is not None:
                X = X + observation_noise(seeds, idx, tuple(X.shape[1:]), sd_obs)  # (F, R, n_obs, N)
            fixed = J is None or all(subjects[i].r is None for i in idx)
            if fixed and X.shape[-1] <= eval_cfg.bins_max_dims:  # binned: the references stay on the device
                key = (lo, n_train, n_obs, str(X.device))
                if key not in cached:
                    cached[key] = torch.as_tensor(np.stack([subjects[i].x[lo:n_train] for i in idx]), device=X.device)
                out[idx] = dstsp_bins_batch(cached[key], X, eval_cfg.dstsp_bins).mean(1).cpu().numpy()
                continue
            refs = []
            for i in idx:
                x = subjects[i].x[lo:n_train]
                if J is not None and subjects[i].r is not None:  # the nuisance part J r removed, as evaluated
                    x = x - subjects[i].r[lo:n_train] @ J[i].detach().cpu().double().numpy().T
                refs.append(x)
            out[idx] = dstsp_batch(refs, X, [int(seeds[i]) for i in idx], **kw).mean(1).cpu().numpy()
        return out

    return score


def selection_scorers(subjects: list[SubjectData], seeds: list[int], train_cfg: TrainConfig, eval_cfg: EvalConfig):
    """The scorer of ``train.select_every`` and the rescorer of ``train.select_rescore`` for
    :func:`dsr.training.loop.train`, each None when off: ``train.select_rollouts`` noise-free rollouts, and
    ``train.select_rescore_rollouts`` with the evaluation's observation noise (``eval.generation = "stochastic"``),
    both against the training part (or its held-back stretch)."""
    t = train_cfg
    if t.select_every <= 0:
        return None, None
    scorer = dstsp_scorer(subjects, seeds, eval_cfg, t.select_steps, t.select_holdout, t.select_rollouts)
    rescorer = None if t.select_rescore <= 0 else dstsp_scorer(
        subjects, seeds, eval_cfg, t.select_steps, t.select_holdout, t.select_rescore_rollouts,
        noisy=eval_cfg.generation == "stochastic")
    return scorer, rescorer

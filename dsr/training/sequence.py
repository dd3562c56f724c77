"""A small training loop for next-step sequence models (the baselines of ``dsr.models.baselines``).

Random windows of the training series, teacher-forced next-step MSE (after an optional burn-in
that only warms up the recurrent state), Adam or RAdam, exponential learning-rate decay, gradient
clipping. Everything random flows from one explicit seed: parameters from ``seed``, windows and
input noise from ``numpy.random.default_rng(seed)``.

For fMRI the caller passes the deconvolved training part (``SubjectData.d[:n_train]`` without its
NaN edges) for MINDy, and the standardised observations ``SubjectData.x[:n_train]`` otherwise.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from dsr.errors import ConfigError, InputError
from dsr.models.baselines.width_scaling import param_groups


@dataclass
class SequenceTrainConfig:
    """Hyperparameters of :func:`train_sequence_model`."""

    steps: int = 500  # optimiser steps
    batch_size: int = 16
    seq_len: int = 64  # window length (inputs); targets are the window shifted by one
    burn_in: int = 0  # leading steps of each window left out of the loss
    lr: float = 3e-3
    lr_end: float = 3e-4  # exponential decay from lr to lr_end over ``steps``
    optimizer: str = "adam"  # "adam" or "radam"
    weight_decay: float = 0.0
    input_noise: float = 0.0  # std of Gaussian noise added to the inputs (not the targets)
    grad_clip: float = 1.0  # max global gradient norm; <= 0 disables
    time_limit_s: float | None = None  # stop early after this wall time (makes results timing-dependent)
    dtype: str = "float32"
    device: str = "cpu"  # e.g. "cuda"; the returned parameters are on the CPU


def _windows(x: np.ndarray, rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
    """``batch`` random windows of ``length`` + 1 steps: (B, length + 1, N)."""
    starts = rng.integers(0, x.shape[0] - length, size=batch)  # last start T - length - 1
    return x[starts[:, None] + np.arange(length + 1)]


def train_sequence_model(model, x_train: np.ndarray, cfg: SequenceTrainConfig | None = None,
                         seed: int = 0, params: dict | None = None,
                         log: list | None = None) -> dict[str, torch.Tensor]:
    """Fit a sequence baseline by teacher-forced next-step MSE.

    Parameters
    ----------
    model : SequenceModel
        A baseline from ``dsr.models.baselines``.
    x_train : ndarray (T, N)
        Finite training series (already standardised).
    cfg : SequenceTrainConfig
    seed : int
        Seeds the parameters and the window sampling.
    params : dict, optional
        Start from these parameters instead of ``model.init_params``.
    log : list, optional
        Receives (step, loss) every 50 steps and at the end.

    Returns
    -------
    dict of str to Tensor
        Fitted parameters (detached, CPU).
    """
    cfg = cfg or SequenceTrainConfig()
    x_train = np.asarray(x_train, dtype=np.float64)
    if x_train.ndim != 2 or not np.isfinite(x_train).all():
        raise InputError(f"x_train must be a finite (T, N) array, got shape {x_train.shape}")
    if cfg.seq_len + 1 > x_train.shape[0]:
        raise InputError(f"seq_len {cfg.seq_len} needs at least {cfg.seq_len + 1} samples, got {x_train.shape[0]}")
    if cfg.burn_in >= cfg.seq_len:
        raise ConfigError(f"burn_in ({cfg.burn_in}) must be < seq_len ({cfg.seq_len})")
    dtype, dev = getattr(torch, cfg.dtype), torch.device(cfg.device)
    init = params if params is not None else model.init_params(x_train.shape[1], seed)
    p = {k: v.detach().clone().to(dev, dtype).requires_grad_(True) for k, v in init.items()}
    opt_cls = {"adam": torch.optim.Adam, "radam": torch.optim.RAdam}.get(cfg.optimizer)
    if opt_cls is None:
        raise ConfigError(f"optimizer must be 'adam' or 'radam', got {cfg.optimizer!r}")
    opt = opt_cls(param_groups(model, p, cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay)  # width scaling
    sched = exponential_decay(opt, cfg.lr, cfg.lr_end, cfg.steps)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for it in range(cfg.steps):
        w = torch.as_tensor(_windows(x_train, rng, cfg.batch_size, cfg.seq_len), dtype=dtype, device=dev)  # (B, L+1, N)
        x_in, target = w[:, :-1], w[:, 1:]  # (B, L, N)
        if cfg.input_noise > 0:
            x_in = x_in + cfg.input_noise * torch.as_tensor(rng.standard_normal(x_in.shape), dtype=dtype, device=dev)
        pred = model.forward(p, x_in)  # (B, L, N)
        loss = (pred[:, cfg.burn_in:] - target[:, cfg.burn_in:]).pow(2).mean() + model.regularisation(p)
        descend(loss, opt, sched, list(p.values()), cfg.grad_clip)
        if log is not None and (it % 50 == 0 or it == cfg.steps - 1):
            log.append((it, float(loss.detach())))
        if cfg.time_limit_s is not None and time.perf_counter() - t0 > cfg.time_limit_s:
            break
    return {k: v.detach().cpu() for k, v in p.items()}


def train_sequence_stack(model, series: list[np.ndarray], seeds: list[int],
                         cfg: SequenceTrainConfig | None = None) -> dict[str, torch.Tensor]:
    """Train len(series) independent fits of one sequence baseline at once (``torch.func.vmap``).

    Fit i is what ``train_sequence_model(model, series[i], cfg, seed=seeds[i])`` does: parameters
    from its seed, windows from ``default_rng(seed)``, Adam (element-wise, so one optimiser over the
    stacked tensors updates each fit on its own; width-scaled learning rates per parameter as there),
    the same learning-rate decay, and gradient clipping by each fit's own gradient norm. Series may
    differ in length, not in channels.

    Returns
    -------
    dict of str to Tensor
        Fitted parameters with a leading fit axis S = len(series) (detached, CPU).
    """
    cfg = cfg or SequenceTrainConfig()
    if cfg.optimizer != "adam" or cfg.input_noise > 0 or cfg.burn_in or cfg.time_limit_s is not None:
        raise ConfigError("stacked sequence training supports optimizer 'adam' without input_noise, burn_in "
                          "or time_limit_s only")
    if len(series) != len(seeds) or not series:
        raise ConfigError(f"{len(series)} series but {len(seeds)} seeds")
    for i, x in enumerate(series):
        if x.ndim != 2 or x.shape[1] != series[0].shape[1] or not np.isfinite(x).all():
            raise InputError(f"series {i} must be a finite (T, {series[0].shape[1]}) array, got shape {x.shape}")
        if cfg.seq_len + 1 > x.shape[0]:
            raise InputError(f"series {i}: seq_len {cfg.seq_len} needs at least {cfg.seq_len + 1} samples, "
                             f"got {x.shape[0]}")
    dtype, dev = getattr(torch, cfg.dtype), torch.device(cfg.device)
    inits = [model.init_params(x.shape[1], s) for x, s in zip(series, seeds)]
    p = {k: torch.stack([q[k] for q in inits]).to(dev, dtype).requires_grad_(True) for k in inits[0]}  # (S, ...)
    opt = torch.optim.Adam(param_groups(model, p, cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = exponential_decay(opt, cfg.lr, cfg.lr_end, cfg.steps)
    rngs = [np.random.default_rng(s) for s in seeds]

    def loss_one(params, w):  # one fit: params of one fit, windows (B, L+1, N)
        pred = model.forward(params, w[:, :-1])  # (B, L, N)
        return (pred - w[:, 1:]).pow(2).mean() + model.regularisation(params)

    loss_all = torch.func.vmap(loss_one)
    for _ in range(cfg.steps):
        w = np.stack([_windows(x, r, cfg.batch_size, cfg.seq_len) for x, r in zip(series, rngs)])  # (S, B, L+1, N)
        loss = loss_all(p, torch.as_tensor(w, dtype=dtype, device=dev))  # (S,)
        opt.zero_grad()
        loss.sum().backward()
        if cfg.grad_clip > 0:  # per-fit global norm, as clip_grad_norm_ on one fit
            norms = torch.sqrt(sum(v.grad.pow(2).flatten(1).sum(1) for v in p.values()))  # (S,)
            scale = (cfg.grad_clip / (norms + 1e-6)).clamp(max=1.0)  # (S,)
            for v in p.values():
                v.grad.mul_(scale.view(-1, *[1] * (v.ndim - 1)))
        opt.step()
        sched.step()
    return {k: v.detach().cpu() for k, v in p.items()}


def exponential_decay(opt: torch.optim.Optimizer, lr: float, lr_end: float, steps: int):
    """A schedule taking the learning rate from ``lr`` to ``lr_end`` exponentially over ``steps`` steps."""
    return torch.optim.lr_scheduler.ExponentialLR(opt, (lr_end / lr) ** (1 / max(steps - 1, 1)))


def descend(loss: torch.Tensor, opt: torch.optim.Optimizer, sched, params: list[torch.Tensor],
            grad_clip: float) -> None:
    """One optimiser step on ``loss``: gradients, global-norm clipping (``grad_clip`` > 0), step, schedule."""
    opt.zero_grad()
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    sched.step()


def closed_loop(model, params: dict[str, torch.Tensor], x_prefix, n: int) -> np.ndarray:
    """Closed-loop generation of ``n`` steps after a prefix.

    Parameters
    ----------
    x_prefix : array (T0, N) or (B, T0, N)
        Teacher-forced warm-up; the first output predicts the step after its end.

    Returns
    -------
    ndarray (n, N) or (B, n, N), float64, matching the prefix's rank.
    """
    first = next(iter(params.values()))
    xp = torch.as_tensor(np.asarray(x_prefix), dtype=first.dtype, device=first.device)
    single = xp.ndim == 2
    if single:
        xp = xp[None]
    out = model.generate(params, xp, n).double().cpu().numpy()  # (B, n, N)
    return out[0] if single else out

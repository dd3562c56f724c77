"""Training of the whole-recording encoders of :mod:`dsr.models.baselines.encoders` (issue 19).

Regression of one scalar per recording by mean squared error on the standardised target: random
crops of ``crop`` steps of random training recordings per batch (recordings may differ in length),
Adam with exponential learning-rate decay, gradient clipping. Predictions read each whole recording.
Everything random flows from ``seed``: parameters, batches, crops and the START perturbation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dsr.errors import InputError
from dsr.training.sequence import descend, exponential_decay


@dataclass
class EncoderTrainConfig:
    """Hyperparameters of :func:`train_encoder`."""

    steps: int = 200  # optimiser steps
    batch_size: int = 16
    crop: int = 128  # training crop length (steps); 0 = whole recordings (then they must share a length)
    lr: float = 3e-3
    lr_end: float = 3e-4
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max global gradient norm; <= 0 disables


def _check(series: list[np.ndarray]) -> list[np.ndarray]:
    out = [np.asarray(s, dtype=np.float64) for s in series]
    for i, s in enumerate(out):
        if s.ndim != 2 or not np.isfinite(s).all():
            raise InputError(f"recording {i} must be a finite (T, N) array, got shape {s.shape}")
    if len({s.shape[1] for s in out}) != 1:
        raise InputError("all recordings must have the same number of channels")
    return out


def train_encoder(encoder, series: list[np.ndarray], y, cfg: EncoderTrainConfig | None = None,
                  seed: int = 0) -> dict:
    """Fit ``encoder`` to predict ``y`` (S,) from ``series`` (S recordings (T_i, N)).

    Returns
    -------
    dict
        ``params`` (detached CPU tensors), ``y_mean`` and ``y_std`` (the target's standardisation).
    """
    cfg = cfg or EncoderTrainConfig()
    series = _check(series)
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (len(series),) or not np.isfinite(y).all():
        raise InputError(f"y must be {len(series)} finite values, got shape {y.shape}")
    crop = cfg.crop or min(len(s) for s in series)
    if crop > min(len(s) for s in series):
        raise InputError(f"crop {crop} is longer than the shortest recording ({min(len(s) for s in series)})")
    y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
    yz = (y - y_mean) / y_std
    p = {k: v.detach().clone().float().requires_grad_(True)
         for k, v in encoder.init_params(series[0].shape[1], seed).items()}
    opt = torch.optim.Adam(list(p.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = exponential_decay(opt, cfg.lr, cfg.lr_end, cfg.steps)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    for _ in range(cfg.steps):
        idx = rng.integers(0, len(series), cfg.batch_size)  # (B,)
        starts = [rng.integers(0, len(series[i]) - crop + 1) for i in idx]
        xb = torch.as_tensor(np.stack([series[i][s:s + crop] for i, s in zip(idx, starts)]),
                             dtype=torch.float32)  # (B, crop, N)
        pred = encoder.forward(p, xb, perturb=gen)  # (B,)
        loss = (pred - torch.as_tensor(yz[idx], dtype=torch.float32)).pow(2).mean()
        descend(loss, opt, sched, list(p.values()), cfg.grad_clip)
    return {"params": {k: v.detach() for k, v in p.items()}, "y_mean": y_mean, "y_std": y_std}


@torch.no_grad()
def predict_encoder(encoder, fit: dict, series: list[np.ndarray]) -> np.ndarray:
    """Predictions (S,) in the target's units, each recording read whole (no perturbation)."""
    out = []
    for s in _check(series):
        z = encoder.forward(fit["params"], torch.as_tensor(s, dtype=torch.float32)[None])  # (1,)
        out.append(float(z[0]) * fit["y_std"] + fit["y_mean"])
    return np.asarray(out)

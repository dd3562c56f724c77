"""Fit S recordings with one comparison baseline in one call: a :class:`FittedBaseline` comes back.

Each training part is standardised with its own mean and SD; the baseline is trained by teacher-forced
next-step MSE on it (:func:`dsr.training.sequence.train_sequence_model`, or all fits at once with
``torch.func.vmap``, :func:`dsr.training.sequence.train_sequence_stack`, the same per-fit result). MINDy
is fitted to the Wiener-deconvolved training part (Singh et al., NeuroImage 2020) and decoded by the
filter. The fit also keeps what generation needs: the last ``warmup`` model inputs (the warm-up
context), the covariance of the one-step residuals on the training part (the innovations of the
stochastic generator) and, in the deconvolved space, the observation-noise variance per channel.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from dsr.errors import InputError
from dsr.models.baselines import make_baseline
from dsr.models.baselines.fitted import NET, BaselineSpec, FittedBaseline
from dsr.signal.convolution import causal_conv
from dsr.signal.deconvolution import wiener_deconvolve
from dsr.signal.filters import spm_hrf
from dsr.training.sequence import SequenceTrainConfig, train_sequence_model, train_sequence_stack

WARMUP = 50  # teacher-forced steps before every closed-loop generation
DECONVOLVED = ("mindy",)  # families fitted to deconvolved series


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x − mean) / SD per column, with the mean and SD (a constant column gets SD 1): (xz, mean, sd)."""
    sd = x.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    mean = x.mean(0)
    return (x - mean) / sd, mean, sd


def fit_baselines(kind: str, xs, seeds, *, options: dict | None = None, cfg: SequenceTrainConfig | None = None,
                  tr: float = 1.0, h=None, warmup: int = WARMUP, stack: bool = False,
                  wiener: dict | None = None) -> FittedBaseline:
    """Fit baseline ``kind`` to each training series; S = len(xs).

    Parameters
    ----------
    kind : str
        ``s4d``, ``selective``, ``lru``, ``ssm2d`` or ``mindy`` (:data:`dsr.models.baselines.BASELINES`).
    xs : list of array (T_i, N)
        Training parts in data units (same N; lengths may differ).
    seeds : int or list of int
        One seed per series (parameters and windows); an int is used for every series.
    options : dict, optional
        The family's config overrides (``make_baseline(kind, **options)``).
    cfg : SequenceTrainConfig, optional
    tr : float
        Sampling interval in seconds (MINDy's default decoder is the SPM HRF at this TR).
    h : array (K,), optional
        MINDy's decoder filter (default ``spm_hrf(tr)``); ignored by the other families.
    warmup : int
        Length of the stored warm-up context.
    stack : bool
        Train all fits at once with ``torch.func.vmap`` (for a GPU; default config only).
    wiener : dict, optional
        ``cut_l``/``cut_r``/``min_noise`` of the Wiener deconvolution (MINDy).

    Returns
    -------
    FittedBaseline
        ``spec.meta`` holds the seeds, the optimiser steps and the training seconds.
    """
    cfg = cfg or SequenceTrainConfig()
    options = dict(options or {})
    net = make_baseline(kind, **options)
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    seeds = [int(seeds)] * len(xs) if np.ndim(seeds) == 0 else [int(s) for s in seeds]
    if not xs or len(seeds) != len(xs):
        raise InputError(f"{len(xs)} series but {len(seeds)} seeds")
    for i, x in enumerate(xs):
        if x.ndim != 2 or x.shape[1] != xs[0].shape[1] or not np.isfinite(x).all():
            raise InputError(f"series {i} must be a finite (T, {xs[0].shape[1]}) array, got shape {x.shape}")
    deconv = kind in DECONVOLVED
    wiener = dict(wiener or {})
    filt = np.asarray(spm_hrf(tr) if h is None else h, dtype=np.float64).ravel() if deconv else None  # (K,)
    scaled = [standardise(x) for x in xs]
    inputs, obs_var = [], []
    for i, (xz, _, _) in enumerate(scaled):
        if deconv:
            d = wiener_deconvolve(xz, filt, **wiener)  # (T, N), NaN edges
            obs_var.append(_observation_variance(xz, d, filt))
            xz = d[np.isfinite(d).all(1)]
        if len(xz) < max(warmup, cfg.seq_len + 1):
            raise InputError(f"series {i}: {len(xz)} usable steps, need at least {max(warmup, cfg.seq_len + 1)} "
                             f"(warm-up {warmup}, window {cfg.seq_len} + 1)")
        inputs.append(xz)
    t0 = time.perf_counter()
    if stack:
        p = train_sequence_stack(net, inputs, seeds, cfg)  # (S, ...)
    else:
        fits = [train_sequence_model(net, x, cfg, seed=s) for x, s in zip(inputs, seeds)]
        p = {k: torch.stack([f[k] for f in fits]) for k in fits[0]}  # (S, ...)
    train_s = time.perf_counter() - t0
    params = {NET + k: v for k, v in p.items()}
    params["x_mean"] = torch.as_tensor(np.stack([m for _, m, _ in scaled]))  # (S, N)
    params["x_std"] = torch.as_tensor(np.stack([s for _, _, s in scaled]))  # (S, N)
    params["context"] = torch.as_tensor(np.stack([x[-warmup:] for x in inputs]))  # (S, W, N)
    params["innovation_cov"] = torch.as_tensor(np.stack(
        [innovation_covariance(net, {k: v[i] for k, v in p.items()}, x, warmup) for i, x in enumerate(inputs)]))
    if deconv:
        params["filter"] = torch.as_tensor(np.tile(filt, (len(xs), 1)))  # (S, K)
        params["obs_var"] = torch.as_tensor(np.stack(obs_var))  # (S, N)
    spec = BaselineSpec(kind, options, xs[0].shape[1], float(tr), "deconvolved" if deconv else "observed", wiener,
                        meta={"seeds": seeds, "steps": cfg.steps, "train_seconds": train_s, "stacked": bool(stack)})
    return FittedBaseline(spec, params)


@torch.no_grad()
def innovation_covariance(net, params: dict[str, torch.Tensor], x: np.ndarray, burn_in: int) -> np.ndarray:
    """Covariance (N, N) of the one-step residuals x_{t+1} − f(x_{≤t}) over one pass through x (T, N).

    The first ``burn_in`` predictions (recurrent state still warming up from zero) are left out
    when enough remain.
    """
    first = next(iter(params.values()))
    xt = torch.as_tensor(x, dtype=first.dtype)[None]  # (1, T, N)
    pred = net.forward(params, xt[:, :-1])[0].double().numpy()  # (T-1, N) predictions of x[1:]
    res = x[1:] - pred  # (T-1, N)
    if len(res) - burn_in > 2 * x.shape[1] + 2:
        res = res[burn_in:]
    res = res[np.isfinite(res).all(1)]
    if len(res) < 2:
        raise InputError("the fitted baseline's one-step predictions are not finite on its training data")
    return res.T @ res / len(res)


def _observation_variance(xz: np.ndarray, d: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Per-channel variance (N,) of the standardised series minus its filtered deconvolution d (NaN edges)."""
    K = len(h)
    valid = np.flatnonzero(np.isfinite(d).all(1))
    if len(valid) < K + 1:
        return np.full(xz.shape[1], 1e-2)
    seg = d[valid[0]:valid[-1] + 1]  # (T_v, N)
    recon = causal_conv(torch.as_tensor(seg), torch.as_tensor(h)).numpy()  # (T_v - K + 1, N)
    res = xz[valid[0] + K - 1:valid[-1] + 1] - recon
    return np.clip(res.var(0), 1e-6, None)

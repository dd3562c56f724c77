"""Metrics of fitted sequence baselines (:class:`dsr.models.baselines.fitted.FittedBaseline`) on their recordings.

The convSSM's metric engine (:mod:`dsr.analysis.evaluate`) works on its latent map; the sequence
baselines keep their state inside the network, so three of its measures have their own form here:

* the generation over a whole recording: closed loop after the stored warm-up (the end of the
  training part), deterministic or stochastic (:meth:`FittedBaseline.generate`);
* PE_n: from every time t of the test part (a teacher-forced warm-up ending at t) predict t + n
  deterministically; mean squared error in standardised units (MINDy: in the deconvolved space);
* λ_max: the largest Lyapunov exponent per step of the closed-loop map on (output, recurrent
  state), two trajectories renormalised after every step (Benettin et al., Meccanica 1980), float64.

Held-out D_stsp / D_H of stochastic samples: :func:`dsr.analysis.heldout.score_model`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dsr.models.baselines.fitted import FittedBaseline
from dsr.signal.deconvolution import wiener_deconvolve
from dsr.training.sequence import closed_loop


@dataclass
class BaselineEvaluation:
    """Per-fit results of :func:`evaluate_baselines` on whole recordings."""

    x_gen: np.ndarray  # (T, N) generated observations, standardised by the training part
    z_gen: np.ndarray  # (T, N) model-space series at the observation times (standardised / deconvolved)
    x: np.ndarray  # (T, N) the observed series, standardised by the training part
    pe: float  # PE_n on the test part
    pe_steps: int
    lyapunov_max: float  # per step
    status: str  # "ok" or "diverged" (non-finite generation)
    extra: dict = field(default_factory=dict)


def standardised(fit: FittedBaseline, i: int, x) -> np.ndarray:
    """Series x (T, N) in data units in fit i's model units (its training part's mean and SD)."""
    return (np.asarray(x, dtype=np.float64) - fit.params["x_mean"][i].numpy()) / fit.params["x_std"][i].numpy()


def prediction_error(fit: FittedBaseline, i: int, x, n_train: int, n: int) -> float:
    """PE_n of fit i on the test part x[n_train:] of its whole recording x (T, N) in data units."""
    xs = standardised(fit, i, x)  # (T, N)
    if fit.spec.space == "deconvolved":  # in the deconvolved space, as the model was fitted
        d = wiener_deconvolve(xs, fit.params["filter"][i].numpy(), **fit.spec.wiener)
        ok = np.flatnonzero(np.isfinite(d).all(1))
        xs, n_train = d[ok[0]:ok[-1] + 1], int(np.sum(ok < n_train))
    W = fit.params["context"].shape[1]
    t = np.arange(max(n_train - n, W - 1), len(xs) - n)  # last warm-up step of each prediction
    if len(t) == 0:
        return float("nan")
    prefixes = xs[t[:, None] + np.arange(-W + 1, 1)]  # (I, W, N)
    pred = closed_loop(fit.net, fit.net_params(i), prefixes, n)[:, -1]  # (I, N) predictions of xs[t + n]
    return float(np.mean((pred - xs[t + n]) ** 2))


def _perturbed(v: torch.Tensor, d: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Row 1 of a batch-2 tensor moved to row 0 + scale · d."""
    return torch.stack([v[0], v[0] + scale * d])


def lyapunov_max(fit: FittedBaseline, i: int, n_steps: int = 200, transient: int = 50, seed: int = 0,
                 eps: float = 1e-7) -> float:
    """Largest Lyapunov exponent per step of fit i's closed-loop map, from its stored warm-up; NaN if diverged."""
    net = fit.net
    p64 = {k: v.double() for k, v in fit.net_params(i).items()}
    xp = fit.params["context"][i].double()[None].expand(2, -1, -1)  # (2, W, N)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        state, y = net.init_state(p64, 2), None
        for t in range(xp.shape[1]):
            y, state = net.step(p64, state, xp[:, t])  # y (2, N)
        for _ in range(transient):
            y, state = net.step(p64, state, y)
        parts = [y] + list(state)
        dirs = [torch.randn(v[0].shape, generator=gen, dtype=v.dtype) for v in parts]
        norm = torch.sqrt(sum(d.abs().pow(2).sum() for d in dirs))
        parts = [_perturbed(v, d, eps / norm) for v, d in zip(parts, dirs)]
        total = 0.0
        for _ in range(n_steps):
            y, state = net.step(p64, parts[1:], parts[0])
            parts = [y] + list(state)
            diff = [v[1] - v[0] for v in parts]
            dist = torch.sqrt(sum(d.abs().pow(2).sum() for d in diff))
            if not torch.isfinite(dist) or dist == 0:
                return float("nan")
            total += float(torch.log(dist / eps))
            parts = [_perturbed(v, d, eps / dist) for v, d in zip(parts, diff)]
    return total / n_steps


def evaluate_baselines(fit: FittedBaseline, xs, n_trains, pe_steps: int, seeds=None, lyap_steps: int = 200,
                       lyap_transient: int = 50, noise: bool = False) -> list[BaselineEvaluation]:
    """Generation over each whole recording, PE_n on its test part and λ_max, for every fit.

    Parameters
    ----------
    fit : FittedBaseline
        S fits, fit i trained on ``xs[i][:n_trains[i]]``.
    xs : list of array (T_i, N)
        The whole recordings in data units.
    n_trains : int or list of int
        Length of each training part.
    pe_steps : int
        n of PE_n.
    seeds : list of int, optional
        Seed per fit for λ_max's perturbation and the generation noise (default: the fit seeds).
    noise : bool
        Stochastic or deterministic generation (the comparison table uses the deterministic one).
    """
    S = fit.n_subjects
    n_trains = [int(n_trains)] * S if np.ndim(n_trains) == 0 else [int(n) for n in n_trains]
    seeds = list(fit.spec.meta.get("seeds", [0] * S)) if seeds is None else [int(s) for s in seeds]
    if len(xs) != S or len(n_trains) != S or len(seeds) != S:
        raise ValueError(f"{S} fits but {len(xs)} series, {len(n_trains)} training lengths and {len(seeds)} seeds")
    out = []
    for i in range(S):
        one = fit.subject(i)
        x_gen, z_gen = one.generate(len(xs[i]), seed=seeds[i], noise=noise, units="standardised", return_latent=True)
        x_gen, z_gen = x_gen[0, 0], z_gen[0, 0]  # (T, N)
        out.append(BaselineEvaluation(
            x_gen=x_gen, z_gen=z_gen, x=standardised(fit, i, xs[i]), pe_steps=int(pe_steps),
            pe=prediction_error(fit, i, xs[i], n_trains[i], pe_steps),
            lyapunov_max=lyapunov_max(fit, i, lyap_steps, lyap_transient, seeds[i]),
            status="ok" if np.isfinite(x_gen).all() else "diverged"))
    return out

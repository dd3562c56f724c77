"""Checkpoint selection: keep, per fit of a stack, the parameters of its best-scoring epoch.

The reference code (github humml-lab/GTF-ConvSSM, src/tf_training/trainings/training_vanilla_conv.jl) scores
a free-running generation with D_stsp every ``scalar_saving_interval`` epochs and saves the model at those
epochs; which saved model is reported is left to the user. With ``train.select_every = k`` dsr scores every
k-th epoch (and the last) with a scorer handed to :func:`dsr.training.loop.train` (the product's is
:func:`dsr.analysis.checkpoint_score.dstsp_scorer`), keeps each fit's parameters of its lowest score and
restores them when training ends. Scoring and copying run between optimiser steps, never inside the
captured CUDA graph of a step: the copies read and write the parameters' flat buffer in place, so the graph
(which reads the same memory) stays valid.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

from dsr.training.data import SubjectData

#: scores (S,) of the model's current parameters, one per fit; lower is better, inf for a diverged generation
Scorer = Callable[[object], np.ndarray]


class BestKeeper:
    """Best score, its epoch and a copy of the parameters per fit (on the training device).

    Parameters
    ----------
    params : dict of str to Tensor
        The trained parameters, each (S, ...); views of one flat buffer when ``flat`` is given.
    flat : Tensor (P,) or None
        That flat buffer (:func:`dsr.training.radam.flat_leaves`): copies are then one ``where`` over it.
    """

    def __init__(self, params: dict[str, torch.Tensor], flat: torch.Tensor | None = None):
        self.params, self.flat = params, flat
        first = next(iter(params.values()))
        S, dev = first.shape[0], first.device
        self.score = np.full(S, np.inf)  # (S,) best score so far
        self.epoch = np.zeros(S, dtype=np.int64)  # (S,) its epoch (1-based); 0: none yet
        with torch.no_grad():
            if flat is not None:
                self.best_flat = flat.detach().clone()  # (P,)
                sizes = torch.tensor([v[0].numel() for v in params.values()], device=dev)  # entries per fit
                fit = torch.arange(S, device=dev)
                self.fit_of = torch.cat([fit.repeat_interleave(n) for n in sizes.tolist()])  # (P,) fit of each entry
            else:
                self.best = {k: v.detach().clone() for k, v in params.items()}

    def update(self, scores: np.ndarray, epoch: int) -> np.ndarray:
        """Keep the current parameters of every fit whose score is below its best; returns that mask (S,)."""
        s = np.asarray(scores, dtype=np.float64)
        s = np.where(np.isnan(s), np.inf, s)  # (S,) a NaN score never wins
        better = s < self.score  # ties keep the earlier epoch
        if better.any():
            self.score = np.where(better, s, self.score)
            self.epoch = np.where(better, epoch, self.epoch)
            self._copy(torch.as_tensor(better), to_best=True)
        return better

    def restore(self) -> np.ndarray:
        """Put every fit that has a finite best score back to its best parameters; returns that mask (S,)."""
        have = np.isfinite(self.score)
        if have.any():
            self._copy(torch.as_tensor(have), to_best=False)
        return have

    def _copy(self, mask: torch.Tensor, to_best: bool) -> None:
        with torch.no_grad():
            if self.flat is not None:
                m = mask.to(self.fit_of.device)[self.fit_of]  # (P,)
                src, dst = (self.flat, self.best_flat) if to_best else (self.best_flat, self.flat)
                dst.copy_(torch.where(m, src, dst))
                return
            for k, p in self.params.items():
                m = mask.to(p.device).view((-1,) + (1,) * (p.ndim - 1))
                src, dst = (p, self.best[k]) if to_best else (self.best[k], p)
                dst.copy_(torch.where(m, src, dst))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The state for a checkpoint (``select.*`` tensors)."""
        out = {"select.score": torch.as_tensor(self.score), "select.epoch": torch.as_tensor(self.epoch)}
        if self.flat is not None:
            out["select.best_flat"] = self.best_flat
        else:
            out.update({f"select.best.{k}": v for k, v in self.best.items()})
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore the state written by :meth:`tensors` (a resumed run)."""
        self.score = tensors["select.score"].double().numpy().copy()
        self.epoch = tensors["select.epoch"].long().numpy().copy()
        with torch.no_grad():
            if self.flat is not None:
                self.best_flat.copy_(tensors["select.best_flat"])
            else:
                for k, v in self.best.items():
                    v.copy_(tensors[f"select.best.{k}"])


def scored_epoch(epoch: int, every: int, epochs: int) -> bool:
    """Whether epoch (1-based) is scored: every ``every``-th and the last; never with ``every`` = 0."""
    return every > 0 and (epoch % every == 0 or epoch == epochs)


def held_back(n_train: int, fraction: float) -> int:
    """Samples at the end of a training part of ``n_train`` held back for scoring (``train.select_holdout``)."""
    return int(round(fraction * n_train)) if fraction > 0 else 0


def training_view(sd: SubjectData, fraction: float) -> SubjectData:
    """``sd`` as the training windows see it with ``train.select_holdout = fraction``: the training part ends
    before the held-back stretch (its targets NaN there); the arrays are shared, nothing else changes. The
    targets next to the stretch were deconvolved with it in view (within the filter's right cut)."""
    n = held_back(sd.n_train, fraction)
    if n == 0:
        return sd
    d = sd.d.copy()
    d[sd.n_train - n:] = np.nan
    return dataclasses.replace(sd, d=d, n_train=sd.n_train - n)

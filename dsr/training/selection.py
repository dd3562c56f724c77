"""Checkpoint selection: keep, per fit of a stack, the parameters of its best-scoring epoch.

The reference code (github humml-lab/GTF-ConvSSM, src/tf_training/trainings/training_vanilla_conv.jl) scores
a free-running generation with D_stsp every ``scalar_saving_interval`` epochs and saves the model at those
epochs; which saved model is reported is left to the user. With ``train.select_every = k`` dsr scores every
k-th epoch (and the last) with a scorer handed to :func:`dsr.training.loop.train` (the product's is
:func:`dsr.analysis.checkpoint_score.dstsp_scorer`), keeps each fit's parameters of its lowest score and
restores them when training ends. With ``train.select_rescore = k`` it keeps each fit's k lowest-scored
checkpoints instead, and a second scorer (more rollouts, with the evaluation's observation noise) chooses among
them when training ends. Scoring and copying run between optimiser steps, never inside the
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
    """The ``k`` best scores per fit, their epochs and copies of the parameters (on the training device).

    Parameters
    ----------
    params : dict of str to Tensor
        The trained parameters, each (S, ...); views of one flat buffer when ``flat`` is given.
    flat : Tensor (P,) or None
        That flat buffer (:func:`dsr.training.radam.flat_leaves`): copies are then one ``where`` over it.
    k : int
        Checkpoints kept per fit: 1 keeps the best; more keep candidates for :meth:`rescore`
        (``train.select_rescore``).
    """

    def __init__(self, params: dict[str, torch.Tensor], flat: torch.Tensor | None = None, k: int = 1):
        self.params, self.flat, self.k = params, flat, int(k)
        first = next(iter(params.values()))
        S, dev = first.shape[0], first.device
        self.scores = np.full((S, self.k), np.inf)  # (S, k) the kept scores
        self.epochs = np.zeros((S, self.k), dtype=np.int64)  # (S, k) their epochs (1-based); 0: empty slot
        self.choice = np.zeros(S, dtype=np.int64)  # (S,) the slot restore() puts back
        with torch.no_grad():
            if flat is not None:
                self.best_flat = flat.detach().expand(self.k, -1).clone()  # (k, P)
                sizes = torch.tensor([v[0].numel() for v in params.values()], device=dev)  # entries per fit
                fit = torch.arange(S, device=dev)
                self.fit_of = torch.cat([fit.repeat_interleave(n) for n in sizes.tolist()])  # (P,) fit of each entry
            else:
                self.best = {k: v.detach().expand(self.k, *v.shape).clone()
                             for k, v in params.items()}  # (k, S, ...)

    @property
    def score(self) -> np.ndarray:
        """The best score per fit (S,)."""
        return self.scores.min(axis=1)

    @property
    def epoch(self) -> np.ndarray:
        """The epoch of the slot each fit ends with (S,): its best score, or its rescored choice."""
        return self.epochs[np.arange(len(self.choice)), self.choice]

    def update(self, scores: np.ndarray, epoch: int) -> np.ndarray:
        """Keep the current parameters of every fit whose score is below its worst kept one; returns that mask (S,)."""
        s = np.asarray(scores, dtype=np.float64)
        s = np.where(np.isnan(s), np.inf, s)  # (S,) a NaN score never wins
        rows = np.arange(len(s))
        slot = np.argmax(self.scores, axis=1)  # (S,) the worst kept (the first of equal ones: an empty slot first)
        better = s < self.scores[rows, slot]  # ties keep the earlier epoch
        if better.any():
            self.scores[rows[better], slot[better]] = s[better]
            self.epochs[rows[better], slot[better]] = epoch
            for j in np.unique(slot[better]):
                self._copy(torch.as_tensor(better & (slot == j)), j, to_best=True)
        self.choice = np.argmin(self.scores, axis=1)
        return better

    def restore(self) -> np.ndarray:
        """Put every fit that has a finite kept score back to its chosen slot; returns that mask (S,)."""
        have = np.isfinite(self.scores[np.arange(len(self.choice)), self.choice])
        for j in np.unique(self.choice[have]):
            self._copy(torch.as_tensor(have & (self.choice == j)), j, to_best=False)
        return have

    def rescore(self, rescorer: "Scorer", model) -> np.ndarray:
        """Score every kept slot again with ``rescorer(model)`` (``model`` holds ``params``; each slot's parameters
        are put in place in turn) and choose each fit's lowest rescore (its best first score where every rescore
        is infinite); returns the rescores (S, k), inf for empty slots. Call :meth:`restore` next."""
        S = len(self.choice)
        out = np.full((S, self.k), np.inf)
        for j in range(self.k):
            filled = np.isfinite(self.scores[:, j])
            if not filled.any():
                continue
            self._copy(torch.as_tensor(filled), j, to_best=False)
            r = np.asarray(rescorer(model), dtype=np.float64)  # (S,)
            out[filled, j] = np.where(np.isnan(r[filled]), np.inf, r[filled])
        best_first = np.argmin(self.scores, axis=1)
        self.choice = np.where(np.isfinite(out).any(1), np.argmin(out, axis=1), best_first)
        return out

    def _copy(self, mask: torch.Tensor, slot: int, to_best: bool) -> None:
        with torch.no_grad():
            if self.flat is not None:
                m = mask.to(self.fit_of.device)[self.fit_of]  # (P,)
                kept = self.best_flat[slot]  # (P,)
                src, dst = (self.flat, kept) if to_best else (kept, self.flat)
                dst.copy_(torch.where(m, src, dst))
                return
            for k, p in self.params.items():
                m = mask.to(p.device).view((-1,) + (1,) * (p.ndim - 1))
                kept = self.best[k][slot]  # (S, ...)
                src, dst = (p, kept) if to_best else (kept, p)
                dst.copy_(torch.where(m, src, dst))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The state for a checkpoint (``select.*`` tensors; with k = 1 in the shapes of one kept slot)."""
        one = self.k == 1
        out = {"select.score": torch.as_tensor(self.scores[:, 0] if one else self.scores),
               "select.epoch": torch.as_tensor(self.epochs[:, 0] if one else self.epochs)}
        if self.flat is not None:
            out["select.best_flat"] = self.best_flat[0] if one else self.best_flat
        else:
            out.update({f"select.best.{k}": v[0] if one else v for k, v in self.best.items()})
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore the state written by :meth:`tensors` (a resumed run)."""
        S = len(self.choice)
        self.scores = tensors["select.score"].double().numpy().reshape(S, self.k).copy()
        self.epochs = tensors["select.epoch"].long().numpy().reshape(S, self.k).copy()
        self.choice = np.argmin(self.scores, axis=1)
        with torch.no_grad():
            if self.flat is not None:
                self.best_flat.copy_(tensors["select.best_flat"].view_as(self.best_flat))
            else:
                for k, v in self.best.items():
                    v.copy_(tensors[f"select.best.{k}"].view_as(v))


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

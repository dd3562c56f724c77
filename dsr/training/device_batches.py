"""Training batches drawn on the training device (the GPU path of batch sampling).

:func:`dsr.training.data.sample_batch` draws with one NumPy generator per fit on the host and
copies every batch to the device: fine for a few fits, but for hundreds of stacked fits the host
work and the copy dominate a training step. :class:`DeviceBatches` keeps every fit's series on the
device once and draws each batch there with counter-based random numbers
(:mod:`dsr.ops.sample`): a fit's batch is a pure function of its seed and the step counter, so
stacked fits still equal fits run alone, and a resumed run needs no generator state. The step
counter lives in a device scalar: the window starts and noise keys are computed from it on the
device too, so the host's share of a (graph-captured) step is one fill and the graph replay.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.ops.sample import gather_noisy, stage_index
from dsr.training.data import Batch, SubjectData


def _stack(arrays: list[np.ndarray], fill: float, device, dtype) -> torch.Tensor:
    """Pad (T_i, C) arrays to (S, T_max, C) with ``fill`` and move them to the device."""
    T = max(len(a) for a in arrays)
    out = np.full((len(arrays), T, arrays[0].shape[1]), fill, dtype=np.float64)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return torch.as_tensor(out, dtype=dtype, device=device)


class DeviceBatches:
    """Draw S × B windows of T̃+1 steps per training step, on the device of the fits.

    Parameters
    ----------
    subjects : list of SubjectData
        One per fit (all with or all without regressors / inputs).
    seeds : list of int
        One per fit.
    seq_len : int
        T̃; windows hold T̃+1 steps.
    batch_size : int
        Sequences per fit and step.
    noise : float
        Standard deviation of the Gaussian noise added to observations and targets.
    device, dtype
        Where and in which precision batches are produced.
    """

    def __init__(self, subjects: list[SubjectData], seeds: list[int], seq_len: int, batch_size: int,
                 noise: float, device, dtype):
        self.T1, self.B, self.noise = seq_len + 1, batch_size, float(noise)
        self.x = _stack([sd.x for sd in subjects], 0.0, device, dtype)  # (S, T, N)
        self.d = _stack([sd.d for sd in subjects], np.nan, device, dtype)  # (S, T, N)
        has = [sd.r is not None for sd in subjects], [sd.s is not None for sd in subjects]
        self.r = _stack([sd.r for sd in subjects], 0.0, device, dtype) if all(has[0]) else None
        self.rd = _stack([sd.rd for sd in subjects], np.nan, device, dtype) if all(has[0]) else None
        self.s = _stack([sd.s for sd in subjects], 0.0, device, dtype) if all(has[1]) else None
        self.device = self.x.device
        self.seeds = torch.tensor([int(s) for s in seeds], dtype=torch.int64, device=self.device)  # (S,)
        starts = [sd.valid_starts(seq_len) for sd in subjects]
        width = max(len(s) for s in starts)
        table = np.stack([np.pad(s, (0, width - len(s)), mode="edge") for s in starts])  # (S, W)
        self.table = torch.as_tensor(table, dtype=torch.int64, device=self.device)  # (S, W)
        self.n_starts = torch.tensor([len(s) for s in starts], dtype=torch.int64, device=self.device)  # (S,)
        # the staged step: draw() computes its window starts and noise keys from this counter on the device
        self.counter = torch.zeros((), dtype=torch.int64, device=self.device)

    def index(self, counter: torch.Tensor | None = None) -> torch.Tensor:
        """Window starts and noise keys (S, B + 4) of the staged step (or of step ``counter``, a () int64
        tensor on the device), computed on the device (:func:`dsr.ops.sample.stage_index`: one kernel on
        CUDA, so it can be part of a captured graph)."""
        counter = self.counter if counter is None else counter
        return stage_index(self.seeds, counter, self.table, self.n_starts, self.B)

    def starts(self, counter: int) -> np.ndarray:
        """Window starts (S, B) of step ``counter``: uniform over each fit's valid starts (the staged step
        stays as it is)."""
        c = torch.tensor(int(counter), dtype=torch.int64, device=self.device)
        return self.index(c)[:, :self.B].cpu().numpy()

    def stage(self, counter: int) -> None:
        """Make ``counter`` the step that :meth:`draw` draws: one fill of a device scalar (on CUDA a single
        small launch, no copy and no host synchronisation)."""
        self.counter.fill_(int(counter))

    def draw(self) -> Batch:
        """The batch of the staged step, computed on the device from the seeds and :attr:`counter` alone."""
        index = self.index()  # (S, B + 4)
        st, k = index[:, :self.B], index[:, self.B:]  # (S, B), (S, 4)
        x = gather_noisy(self.x, st, self.T1, k[:, 0], k[:, 1], self.noise)  # (S, B, T̃+1, N)
        d = gather_noisy(self.d, st, self.T1, k[:, 2], k[:, 3], self.noise)
        plain = [None if t is None else gather_noisy(t, st, self.T1, k[:, 0], k[:, 1], 0.0)
                 for t in (self.r, self.rd, self.s)]
        return Batch(x=x, d=d, r=plain[0], rd=plain[1], s=plain[2])

    def sample(self, counter: int) -> Batch:
        """The batch of training step ``counter`` (a global step number: epoch · batches + batch)."""
        self.stage(counter)
        return self.draw()

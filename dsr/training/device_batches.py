"""Training batches drawn on the training device (the GPU path of batch sampling).

:func:`dsr.training.data.sample_batch` draws with one NumPy generator per fit on the host and
copies every batch to the device: fine for a few fits, but for hundreds of stacked fits the host
work and the copy dominate a training step. :class:`DeviceBatches` keeps every fit's series on the
device once and draws each batch there with counter-based random numbers
(:mod:`dsr.ops.sample`): a fit's batch is a pure function of its seed and the step counter, so
stacked fits still equal fits run alone, and a resumed run needs no generator state.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.ops.sample import gather_noisy, stream_keys, uniform
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
        self.seeds = torch.tensor([int(s) for s in seeds], dtype=torch.int64)  # (S,) host
        starts = [sd.valid_starts(seq_len) for sd in subjects]
        width = max(len(s) for s in starts)
        self.table = np.stack([np.pad(s, (0, width - len(s)), mode="edge") for s in starts])  # (S, W)
        self.n_starts = np.array([len(s) for s in starts])  # (S,)
        self.x = _stack([sd.x for sd in subjects], 0.0, device, dtype)  # (S, T, N)
        self.d = _stack([sd.d for sd in subjects], np.nan, device, dtype)  # (S, T, N)
        has = [sd.r is not None for sd in subjects], [sd.s is not None for sd in subjects]
        self.r = _stack([sd.r for sd in subjects], 0.0, device, dtype) if all(has[0]) else None
        self.rd = _stack([sd.rd for sd in subjects], np.nan, device, dtype) if all(has[0]) else None
        self.s = _stack([sd.s for sd in subjects], 0.0, device, dtype) if all(has[1]) else None
        self.device = self.x.device
        # staged per-step indices: window starts and noise keys, (S, B + 4), read by draw()
        self.index = torch.zeros((len(subjects), self.B + 4), dtype=torch.int64, device=self.device)
        pin = self.device.type == "cuda"
        self._host = [torch.zeros(self.index.shape, dtype=torch.int64, pin_memory=pin) for _ in range(2)]
        self._copied = [None, None]  # CUDA events: when each host buffer may be written again
        self._turn = 0

    def starts(self, counter: int) -> np.ndarray:
        """Window starts (S, B) of step ``counter``: uniform over each fit's valid starts."""
        u = uniform(stream_keys(self.seeds, counter, 0), self.B).double().numpy()  # (S, B) in (0, 1]
        j = np.ceil(u * self.n_starts[:, None]).astype(np.int64) - 1  # (S, B) in [0, n_s)
        return np.take_along_axis(self.table, j, axis=1)

    def stage(self, counter: int) -> None:
        """Compute step ``counter``'s window starts and noise keys on the host and copy them into
        :attr:`index` (asynchronously on CUDA, through two pinned buffers used in turn)."""
        keys = torch.stack([stream_keys(self.seeds, counter, k) for k in (1, 2, 3, 4)])  # (4, S)
        buf, ev = self._host[self._turn], self._copied[self._turn]
        if ev is not None:
            ev.synchronize()  # the copy that last read this buffer has run
        buf[:, :self.B] = torch.as_tensor(self.starts(counter))
        buf[:, self.B:] = keys.T
        self.index.copy_(buf, non_blocking=self.device.type == "cuda")
        if self.device.type == "cuda":
            ev = torch.cuda.Event()
            ev.record()
            self._copied[self._turn] = ev
        self._turn ^= 1

    def draw(self) -> Batch:
        """The batch of the staged step, computed on the device from :attr:`index` alone."""
        st, k = self.index[:, :self.B], self.index[:, self.B:]  # (S, B), (S, 4)
        x = gather_noisy(self.x, st, self.T1, k[:, 0], k[:, 1], self.noise)  # (S, B, T̃+1, N)
        d = gather_noisy(self.d, st, self.T1, k[:, 2], k[:, 3], self.noise)
        plain = [None if t is None else gather_noisy(t, st, self.T1, k[:, 0], k[:, 1], 0.0)
                 for t in (self.r, self.rd, self.s)]
        return Batch(x=x, d=d, r=plain[0], rd=plain[1], s=plain[2])

    def sample(self, counter: int) -> Batch:
        """The batch of training step ``counter`` (a global step number: epoch · batches + batch)."""
        self.stage(counter)
        return self.draw()

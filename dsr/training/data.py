"""Training data: standardisation, train/test split, deconvolved targets, batches.

One :class:`SubjectData` per independent fit. Batches for S fits are drawn
with one ``numpy.random.Generator`` per fit, so a fit's batches do not depend
on which other fits share the run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dsr.config import DsrConfig
from dsr.errors import InputError
from dsr.signal.deconvolution import edge_cuts, sliding_wiener_deconvolve, wiener_deconvolve


@dataclass
class SubjectData:
    """One recording prepared for training and evaluation (all arrays (T, ·), float64)."""

    x: np.ndarray  # (T, N) standardised observations, whole series
    d: np.ndarray  # (T, N) deconvolved training part (NaN at unreliable edges and in the test part)
    d_full: np.ndarray  # (T, N) targets as the test metrics may use them: the training part's, then each
    # later sample deconvolved from a window ending cut_r·K samples after it (NaN at the edges)
    n_train: int  # samples in the training split
    mean: np.ndarray  # (N,) removed before training
    std: np.ndarray  # (N,) divided out before training
    r: np.ndarray | None = None  # (T, P) standardised nuisance regressors
    rd: np.ndarray | None = None  # (T, P) their deconvolution (training part)
    s: np.ndarray | None = None  # (T, Q) external inputs

    def valid_starts(self, seq_len: int) -> np.ndarray:
        """Start indices i with a finite target d[i] and a full training window i … i+seq_len."""
        last = self.n_train - seq_len - 1
        idx = np.arange(0, max(last + 1, 0))
        return idx[np.isfinite(self.d[idx, 0])]


def _standardise(a: np.ndarray, n_train: int, enabled: bool):
    mean = a[:n_train].mean(0) if enabled else np.zeros(a.shape[1])
    std = a[:n_train].std(0) if enabled else np.ones(a.shape[1])
    std = np.where(std > 0, std, 1.0)
    return (a - mean) / std, mean, std


def prepare_subject(x: np.ndarray, h: np.ndarray, cfg: DsrConfig, nuisance: np.ndarray | None = None,
                    inputs: np.ndarray | None = None, standardise: bool = True) -> SubjectData:
    """Split, standardise and deconvolve one recording.

    Parameters
    ----------
    x : ndarray (T, N)
        Observations (already validated: finite, non-constant).
    h : ndarray (K,)
        Filter taps; ``[1.0]`` means no convolution (targets are the data).
    cfg : DsrConfig
        Uses ``train.train_fraction`` and the filter's edge cuts and noise floor.
    """
    T = x.shape[0]
    n_train = int(np.floor(cfg.train.train_fraction * T))
    K = len(h)
    if n_train < K + 2:
        raise InputError(f"the training part has {n_train} samples, fewer than the filter's {K} taps + 2")
    xs, mean, std = _standardise(np.asarray(x, np.float64), n_train, standardise)
    f = cfg.filter
    d, d_full = _targets(xs, n_train, h, f.cut_l, f.cut_r, f.min_noise, f.sliding_window)
    r = rd = None
    if nuisance is not None:
        r, _, _ = _standardise(np.asarray(nuisance, np.float64), n_train, True)
        rd, _ = _targets(r, n_train, h, f.cut_l, f.cut_r, f.min_noise, f.sliding_window, test_part=False)
    s = None if inputs is None else np.asarray(inputs, np.float64)
    return SubjectData(x=xs, d=d, d_full=d_full, n_train=n_train, mean=mean, std=std, r=r, rd=rd, s=s)


def _targets(xs, n_train, h, cut_l, cut_r, min_noise, window, test_part=True):
    """Targets of the training part (test part NaN), and of the whole series (``d_full``).

    ``d_full`` keeps the training part's targets up to its last ⌊cut_r K⌋ samples; from there on
    every sample is deconvolved from its own window of the training length (at most ``window``)
    that ends ⌊cut_r K⌋ samples after it, so a test target never sees the data further ahead
    (the reference's test-part deconvolution, humml-lab/GTF-ConvSSM src/utilities/fMRI_helpers.jl
    ``get_deconv_data``). Without ``test_part`` d_full is None.
    """
    if len(h) == 1:
        d = xs / h[0]
        d_train = d.copy()
        d_train[n_train:] = np.nan
        return d_train, d
    d_train = np.full_like(xs, np.nan)
    d_train[:n_train] = wiener_deconvolve(xs[:n_train], h, cut_l, cut_r, min_noise)
    if not test_part:
        return d_train, None
    d_full = d_train.copy()
    _, cr = edge_cuts(len(h), cut_l, cut_r)
    if n_train < len(xs):
        first = max(n_train - cr, 0)
        d_full[first:] = sliding_wiener_deconvolve(xs, h, first, min(n_train, window), cut_r, min_noise)[first:]
    return d_train, d_full


def sequence_length(subjects: list[SubjectData], requested: int, K: int) -> int:
    """Sequence length T̃: the requested one, raised to at least K + 10 so the loss sees steps with a
    full filter history, and lowered to what every subject's training part can supply."""
    best = max(requested, K + 10)
    for sd in subjects:
        finite = np.flatnonzero(np.isfinite(sd.d[:sd.n_train, 0]))
        room = sd.n_train - 1 - finite[0] if finite.size else 0
        best = min(best, room)
    if best < K + 1:
        raise InputError(f"the training part leaves {best} usable samples between the masked edges, "
                         f"fewer than the filter's {K} taps")
    return int(best)


@dataclass
class Batch:
    """S × B training sequences of T̃+1 steps (torch, on the training device)."""

    x: torch.Tensor  # (S, B, T̃+1, N)
    d: torch.Tensor  # (S, B, T̃+1, N) targets, NaN where not forced
    r: torch.Tensor | None = None  # (S, B, T̃+1, P)
    rd: torch.Tensor | None = None  # (S, B, T̃+1, P)
    s: torch.Tensor | None = None  # (S, B, T̃+1, Q)


def sample_batch(subjects: list[SubjectData], rngs: list[np.random.Generator], seq_len: int, batch_size: int,
                 noise: float, device, dtype) -> Batch:
    """Draw ``batch_size`` sequences per subject (with replacement) and add Gaussian noise to x and d.

    Each fit's generator picks the window starts and a seed for that batch's noise, which PyTorch's
    generator draws (about 3× faster than NumPy's normal draws on a CPU, where they were a quarter of a
    training step of 30 stacked fits); a fit's batches stay a function of its own generator alone.
    """
    xs, ds, rs, rds, ss, keys = [], [], [], [], [], []
    win = np.arange(seq_len + 1)
    for sd, rng in zip(subjects, rngs):
        starts = sd.valid_starts(seq_len)
        idx = rng.choice(starts, size=batch_size)[:, None] + win  # (B, T̃+1)
        xs.append(sd.x[idx])  # (B, T̃+1, N)
        ds.append(sd.d[idx])
        if noise > 0:
            keys.append(int(rng.integers(0, 2 ** 63)))
        if sd.r is not None:
            rs.append(sd.r[idx])
            rds.append(sd.rd[idx])
        if sd.s is not None:
            ss.append(sd.s[idx])

    def stack(parts):
        return torch.as_tensor(np.stack(parts), dtype=dtype) if parts else None

    x, d = stack(xs), stack(ds)  # (S, B, T̃+1, N)
    if noise > 0:
        ex, ed = torch.empty_like(x), torch.empty_like(d)
        gen = torch.Generator()
        for i, key in enumerate(keys):  # one stream per fit and batch: x's noise, then d's
            gen.manual_seed(key)
            ex[i].normal_(generator=gen)
            ed[i].normal_(generator=gen)
        x.add_(ex, alpha=noise)
        d.add_(ed, alpha=noise)

    def move(t):
        return None if t is None else t.to(device)

    return Batch(x=move(x), d=move(d), r=move(stack(rs)), rd=move(stack(rds)), s=move(stack(ss)))

"""n-step-ahead prediction error PE_n with the conv-aware alignment.

From every valid deconvolved state d_t the model runs n steps; the n-step predictions, ordered by the
time t + n they predict, are filtered and decoded (so the prediction of x_{t+n} uses the predicted
latents of the K − 1 preceding times too) and compared with the data by the mean squared error in
standardised units (reference code humml-lab/GTF-ConvSSM, src/measures/prediction_error_conv.jl).
The training part starts from the training part's deconvolution, the test part from the whole
series' (``SubjectData.d_full``); a prediction counts for the part that holds the time it predicts.

:func:`prediction_errors` does every fit of a stacked model at once (windows padded to one batch,
any device); :func:`prediction_errors_ref` is its one-fit twin for the tests.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.models.convssm import ConvSSM
from dsr.training.data import SubjectData


def clean_observations(model: ConvSSM, sd: SubjectData) -> np.ndarray:
    """Observed series with the fitted nuisance part J r removed (standardised units), (T, N); model S = 1."""
    if sd.r is None or "obs.J" not in model.params:
        return sd.x
    J = model.params["obs.J"][0].detach().cpu().double().numpy()  # (N, P)
    return sd.x - sd.r @ J.T


def clean_observations_batch(model: ConvSSM, subjects: list[SubjectData]) -> list[np.ndarray]:
    """:func:`clean_observations` of every fit of a stack (S = len(subjects)), the weights read once."""
    if "obs.J" not in model.params:
        return [sd.x for sd in subjects]
    J = model.params["obs.J"].detach().cpu().double().numpy()  # (S, N, P)
    return [sd.x if sd.r is None else sd.x - sd.r @ J[i].T for i, sd in enumerate(subjects)]


def _windows(sd: SubjectData, part: int, n: int) -> np.ndarray:
    """Start times of the predictions of one part: the valid span of its deconvolution, t + n < T."""
    d = sd.d if part == 0 else sd.d_full
    idx = np.flatnonzero(np.isfinite(d[:, 0]))
    if idx.size == 0:
        return idx
    idx = np.arange(idx[0], idx[-1] + 1)
    return idx[idx + n < len(sd.x)]


def _part_mse(xhat: np.ndarray, x: np.ndarray, idx: np.ndarray, n: int, K: int, lo: int, hi: int) -> float:
    """MSE of the filtered predictions xhat (≥ len(idx)−K+1, N) of times idx + n that lie in [lo, hi)."""
    times = (idx + n)[K - 1:]  # time of each filtered prediction
    sel = (times >= lo) & (times < hi)
    if not sel.any():
        return float("nan")
    return float(np.mean((xhat[:len(times)][sel] - x[times[sel]]) ** 2))


def prediction_errors(model: ConvSSM, subjects: list[SubjectData], n: int) -> list[tuple[float, float]]:
    """PE_n (train, test) of every fit of a stacked model (S = len(subjects)), on the model's device."""
    K = model.kernel_size
    dt, dev = model.filter.dtype, model.filter.device
    xs = clean_observations_batch(model, subjects)
    out = [[float("nan"), float("nan")] for _ in subjects]
    for part in (0, 1):
        rows = [_windows(sd, part, n) for sd in subjects]
        i_max = max(len(r) for r in rows)
        if i_max < K:
            continue
        D = np.zeros((len(subjects), i_max, subjects[0].x.shape[1]))  # (F, I, N)
        use_r = any(sd.rd is not None for sd in subjects)
        Rd = np.zeros((len(subjects), i_max, subjects[0].rd.shape[1] if use_r else 0))  # (F, I, P)
        for f, (sd, idx) in enumerate(zip(subjects, rows)):
            d = sd.d if part == 0 else sd.d_full
            if len(idx):
                pad = np.concatenate([idx, np.full(i_max - len(idx), idx[-1])])  # repeat the last window
                D[f] = d[pad]
                if sd.rd is not None:
                    Rd[f] = np.nan_to_num(sd.rd[pad])
            else:
                D[f] = np.nan_to_num(sd.x[:1])
        rd = torch.as_tensor(Rd, dtype=dt, device=dev)[:, None] if use_r else None  # (F, 1, I, P)
        with torch.no_grad():
            d0 = torch.as_tensor(D, dtype=dt, device=dev)[:, None]  # (F, 1, I, N)
            z = model.init_state(model.targets(d0, rd)[:, 0])  # (F, I, M)
            for _ in range(n):
                z = model.step(z)  # (F, I, M)
            xhat = model.observe(z[:, None])[:, 0].cpu().double().numpy()  # (F, I-K+1, N)
        for f, (sd, idx, x) in enumerate(zip(subjects, rows, xs)):
            if len(idx) < K:
                continue
            lo, hi = (0, sd.n_train) if part == 0 else (sd.n_train, len(sd.x))
            out[f][part] = _part_mse(xhat[f], x, idx, n, K, lo, hi)
    return [tuple(o) for o in out]


def prediction_errors_ref(model: ConvSSM, sd: SubjectData, n: int) -> tuple[float, float]:
    """PE_n (train, test) of one fit (S = 1), each part's windows on their own (twin of :func:`prediction_errors`)."""
    K = model.kernel_size
    x = clean_observations(model, sd)
    out = []
    for part, (lo, hi) in enumerate(((0, sd.n_train), (sd.n_train, len(sd.x)))):
        idx = _windows(sd, part, n)
        if len(idx) < K:
            out.append(float("nan"))
            continue
        d = sd.d if part == 0 else sd.d_full
        t = lambda a: torch.as_tensor(a, dtype=model.filter.dtype, device=model.filter.device)  # noqa: E731
        rd = None if sd.rd is None else t(np.nan_to_num(sd.rd[idx]))[None, None]
        with torch.no_grad():
            z = model.init_state(model.targets(t(d[idx])[None, None], rd)[:, 0])  # (1, I, M)
            for _ in range(n):
                z = model.step(z)
            xhat = model.observe(z[:, None]).squeeze(1)[0].cpu().double().numpy()  # (I-K+1, N)
        out.append(_part_mse(xhat, x, idx, n, K, lo, hi))
    return out[0], out[1]

"""Score any generative model's samples against held-out data (split-half validation).

A model is judged by whether its generated series have the long-term statistics of data it never saw
(Volkmann et al., NeurIPS 2024: D_stsp for the state-space geometry, D_H for the power spectra). This
module takes samples from any generator (convSSM, linear references, sequence baselines, or another
recording used as the floor) and scores them with the project's metric functions; it knows nothing of
models.

Units: the held-out series and every sample are standardised by the held-out series' own mean and SD
per channel (unless ``scale`` is given), so all models are compared on one fixed scale that none of them
chose; the GMM D_stsp (σ² = ``scaling``) is not scale-free, which makes this choice matter.
"""
from __future__ import annotations

import numpy as np
import torch

from dsr.analysis.dstsp import dstsp, dstsp_batch
from dsr.analysis.spectrum import dh

#: Metric settings of the split-half protocol: GMM D_stsp with σ² 1, D_H with σ 1 (LEMON evaluation).
DEFAULTS = {"scaling": 1.0, "smoothing": 1.0, "n_bins": 30, "bins_max_dims": 3}


def _summary(values, name: str) -> dict:
    v = np.asarray(values, dtype=float)
    fin = v[np.isfinite(v)]
    return {name: float(fin.mean()) if fin.size else float("inf"),
            f"{name}_median": float(np.median(v)) if v.size else float("nan"),
            f"{name}_sd": float(fin.std()) if fin.size else float("nan")}


def score_samples(heldout, samples, *, scale=None, scaling: float = 1.0, smoothing: float = 1.0,
                  n_bins: int = 30, bins_max_dims: int = 3, seed: int = 0) -> dict:
    """D_stsp and D_H of each generated sample against a held-out series, averaged over samples.

    Parameters
    ----------
    heldout : array (T, N)
        Data the model never saw, in data units.
    samples : array (R, T', N) or list of (T', N)
        Generated series in data units; T' ≥ T is cut to T (a shorter sample is compared over its
        own length by D_H). Non-finite samples score inf (D_stsp) and 1 (D_H).
    scale : (mean (N,), sd (N,)), optional
        Standardisation applied to both sides; default the held-out series' own.
    scaling, smoothing, n_bins, bins_max_dims, seed
        Metric settings (:func:`dsr.analysis.dstsp.dstsp_batch`, :func:`dsr.analysis.spectrum.dh`).

    Returns
    -------
    dict
        ``dstsp``/``dh`` (mean over finite samples), ``*_median``, ``*_sd`` and ``n_samples``.
    """
    x = np.asarray(heldout, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"held-out data must be a finite (T, N) array, got shape {x.shape}")
    mean, sd = (x.mean(0), x.std(0)) if scale is None else (np.asarray(scale[0]), np.asarray(scale[1]))
    sd = np.where(sd > 0, sd, 1.0)
    ref = (x - mean) / sd  # (T, N)
    gens = []
    for g in samples:
        g = np.asarray(g, dtype=np.float64)
        if g.ndim != 2 or g.shape[1] != x.shape[1]:
            raise ValueError(f"each sample must be (T', {x.shape[1]}), got shape {g.shape}")
        gens.append((g[:len(ref)] - mean) / sd)  # (T, N)
    if not gens:
        raise ValueError("no samples to score")
    kw = dict(n_bins=n_bins, scaling=scaling, bins_max_dims=bins_max_dims)
    if len({len(g) for g in gens}) == 1:  # one batch: the reference mixture and its samples built once
        d_stsp = dstsp_batch([ref], torch.as_tensor(np.stack(gens))[None], [seed], **kw)[0].tolist()  # (R,)
    else:
        d_stsp = [dstsp(ref, g, seed=seed, **kw) for g in gens]
    d_h = [dh(ref, g, smoothing) if np.isfinite(g).all() else 1.0 for g in gens]
    return {**_summary(d_stsp, "dstsp"), **_summary(d_h, "dh"), "n_samples": len(gens)}


def score_generator(heldout, sample, n_samples: int = 20, seed: int = 0, **kw) -> dict:
    """:func:`score_samples` for a callable ``sample(n, seed) -> (n, N)``, seeds seed … seed+n_samples−1."""
    T = len(heldout)
    return score_samples(heldout, [sample(T, seed + i) for i in range(n_samples)], seed=seed, **kw)


def score_model(model, heldouts, n_samples: int = 20, seed: int = 0, **kw) -> list[dict]:
    """:func:`score_samples` for every fit of a model with the protocol ``generate(n, seed, n_samples)``.

    Parameters
    ----------
    model : LinearModel, FittedBaseline or any model whose ``generate(n, seed=, n_samples=)`` returns
        stochastic samples in data units, (S, n_samples, n, N).
    heldouts : list of array (T_i, N)
        The held-out series of each fit (length S), in data units.
    n_samples, seed, **kw
        Samples per fit, the generation and metric seed, and :func:`score_samples`'s metric settings.

    Returns
    -------
    list of dict
        One :func:`score_samples` result per fit.
    """
    T = max(len(h) for h in heldouts)
    samples = model.generate(T, seed=seed, n_samples=n_samples)  # (S, R, T, N)
    if len(samples) != len(heldouts):
        raise ValueError(f"the model has {len(samples)} fits but {len(heldouts)} held-out series were given")
    return [score_samples(h, s, seed=seed, **kw) for h, s in zip(heldouts, samples)]

"""Smoothed power spectra, the power-spectrum Hellinger distance D_H, and dominant frequencies.

Spectrum (reference code humml-lab/GTF-ConvSSM, src/measures/pse.jl): z-score each dim, |rfft|² (DC
bin kept), Gaussian smoothing along frequency (radius 4σ, the border reflected about the edge sample:
ImageFiltering's "reflect", scipy's ``mode="mirror"``: c b | a b c), negatives clipped to 0, each dim
normalised to sum 1. D_H is the Hellinger distance (1/√2)‖√p − √q‖ per dim, averaged over dims.

The batched float64 torch versions (:func:`power_spectrum_batch`, :func:`dh_batch`) are what the
metric engine uses, on any device; :func:`power_spectrum_ref` and :func:`dh_ref` are their NumPy /
scipy twins for the tests. :func:`power_spectrum` and :func:`dh` take one series (pair).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

BORDER = "mirror"  # scipy's name for the reference's border: reflect about the edge sample


def _as_2d(x, name: str) -> np.ndarray:
    """Convert numpy / torch input to a float64 (T, N) array (a 1-D input becomes (T, 1))."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.ascontiguousarray(x, dtype=np.float64)  # torch refuses negative strides (e.g. x[::-1])
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a (T, N) array with T >= 2, got shape {x.shape}")
    return x


def power_spectrum_ref(x, smoothing: float = 20.0, mode: str = BORDER) -> np.ndarray:
    """Normalised, smoothed power spectrum of each dim (NumPy / scipy twin of :func:`power_spectrum_batch`).

    Parameters
    ----------
    x : array (T, N)
        Time series (finite).
    smoothing : float
        σ of the Gaussian smoothing kernel in frequency bins; <= 0 means no smoothing.
    mode : str
        scipy border mode of the smoothing ("mirror", the reference's; "reflect" repeats the edge).

    Returns
    -------
    ndarray (T // 2 + 1, N)
        Each column sums to 1; row f is frequency f / (T dt).

    Notes
    -----
    A constant dim cannot be z-scored; its raw spectrum is taken as a unit impulse at DC (all power
    at frequency 0) and then smoothed and normalised like the others.
    """
    x = _as_2d(x, "x")
    if not np.isfinite(x).all():
        raise ValueError("x contains non-finite values")
    std = x.std(axis=0, ddof=1)  # (N,)
    const = ~(std > 0)  # (N,)
    z = (x - x.mean(axis=0)) / np.where(const, 1.0, std)  # (T, N)
    ps = np.abs(np.fft.rfft(z, axis=0)) ** 2  # (F, N)
    ps[:, const] = 0.0
    ps[0, const] = 1.0
    if smoothing > 0:
        ps = gaussian_filter1d(ps, smoothing, axis=0, mode=mode, truncate=4.0)  # (F, N)
        np.maximum(ps, 0.0, out=ps)
    return ps / ps.sum(axis=0, keepdims=True)  # (F, N)


def hellinger(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hellinger distance (1/√2)‖√p − √q‖ between matching columns of p, q (F, N) -> (N,)."""
    return np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2, axis=0)) / np.sqrt(2.0)


def dh_ref(x_true, x_gen, smoothing: float = 20.0, mode: str = BORDER) -> float:
    """Power-spectrum Hellinger distance D_H, mean over dims (NumPy twin of :func:`dh_batch`).

    Parameters
    ----------
    x_true, x_gen : array (T, N), (T', N)
        Reference and generated series. If T != T' both are truncated to their first min(T, T')
        steps so that the frequency grids match (the reference requires equal lengths).
    smoothing : float
        σ of the Gaussian smoothing of the spectra in frequency bins.

    Returns
    -------
    float
        In [0, 1]; 1.0 (the maximum) if x_gen is non-finite (a diverged model).
    """
    x_true, x_gen = _as_2d(x_true, "x_true"), _as_2d(x_gen, "x_gen")
    if x_true.shape[1] != x_gen.shape[1]:
        raise ValueError(f"x_true has {x_true.shape[1]} dims but x_gen has {x_gen.shape[1]}")
    if not np.isfinite(x_gen).all():
        return 1.0
    t = min(x_true.shape[0], x_gen.shape[0])
    p = power_spectrum_ref(x_true[:t], smoothing, mode)  # (F, N)
    q = power_spectrum_ref(x_gen[:t], smoothing, mode)  # (F, N)
    return float(np.mean(hellinger(p, q)))


@lru_cache(maxsize=32)
def _smoother(n_freq: int, smoothing: float, mode: str) -> np.ndarray:
    """scipy's Gaussian filter along frequency as a matrix: smoothed = G @ ps, (F, F).

    Only for spectra shorter than the kernel radius, where the border repeats; see :func:`smooth_spectra`.
    """
    return gaussian_filter1d(np.eye(n_freq), smoothing, axis=0, mode=mode, truncate=4.0)


def smooth_spectra(ps: torch.Tensor, smoothing: float, mode: str = BORDER) -> torch.Tensor:
    """scipy ``gaussian_filter1d(ps, smoothing, axis=1, mode=mode, truncate=4.0)`` of ps (B, F, N).

    Pads by the kernel radius r ("mirror": c b | a b c; "reflect": b a | a b c) and convolves with
    scipy's normalised kernel: O(F r) work and memory, where the (F, F) matrix of :func:`_smoother`
    would need F² (16 GB at F = 45001, a 90000-step series).
    """
    if mode not in ("mirror", "reflect"):
        raise ValueError(f"mode must be 'mirror' or 'reflect', got {mode!r}")
    B, F, N = ps.shape
    r = int(4.0 * float(smoothing) + 0.5)
    e = 1 if mode == "mirror" else 0  # mirror leaves the edge sample out of the reflection
    if F < r + 1 + e:  # the border wraps more than once: the small dense matrix does it exactly
        g = torch.as_tensor(_smoother(F, float(smoothing), mode), dtype=ps.dtype, device=ps.device)  # (F, F)
        return torch.einsum("gf,bfn->bgn", g, ps)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / float(smoothing)) ** 2)
    k = torch.as_tensor(k / k.sum(), dtype=ps.dtype, device=ps.device)  # (2r+1,)
    padded = torch.cat([ps[:, e:e + r].flip(1), ps, ps[:, F - r - e:F - e].flip(1)], dim=1)  # (B, F+2r, N)
    out = torch.nn.functional.conv1d(padded.transpose(1, 2).reshape(B * N, 1, F + 2 * r),
                                     k.view(1, 1, -1))  # (B*N, 1, F)
    return out.view(B, N, F).transpose(1, 2)  # (B, F, N)


def power_spectrum_batch(x: torch.Tensor, smoothing: float = 20.0, mode: str = BORDER) -> torch.Tensor:
    """:func:`power_spectrum_ref` of each series of a batch: x (B, T, N) float64, finite -> (B, T//2+1, N)."""
    std = x.std(dim=1, correction=1)  # (B, N)
    const = ~(std > 0)  # (B, N)
    z = (x - x.mean(dim=1, keepdim=True)) / torch.where(const, torch.ones_like(std), std)[:, None]  # (B, T, N)
    ps = torch.fft.rfft(z, dim=1).abs() ** 2  # (B, F, N)
    impulse = torch.zeros_like(ps[0, :, 0])  # (F,)
    impulse[0] = 1.0
    ps = torch.where(const[:, None, :], impulse[None, :, None], ps)  # (B, F, N)
    if smoothing > 0:
        ps = smooth_spectra(ps, smoothing, mode).clamp_(min=0.0)  # (B, F, N)
    return ps / ps.sum(dim=1, keepdim=True)  # (B, F, N)


def dh_batch(refs: torch.Tensor, gens: torch.Tensor, smoothing: float = 20.0, mode: str = BORDER) -> torch.Tensor:
    """D_H of R generated series of each of F fits against that fit's reference.

    refs (F, T_ref, N) float64 finite; gens (F, R, T, N) float64 with T >= T_ref (their first T_ref
    steps are used) -> (F, R); 1.0 (the maximum) where a rollout is non-finite.
    """
    F, R = gens.shape[:2]
    gens = gens[:, :, :refs.shape[1]]  # (F, R, T_ref, N)
    fin = torch.isfinite(gens).all(-1).all(-1)  # (F, R)
    gens = torch.where(fin[:, :, None, None], gens, torch.zeros((), dtype=gens.dtype, device=gens.device))
    p = power_spectrum_batch(refs, smoothing, mode)  # (F, Fq, N)
    q = power_spectrum_batch(gens.reshape(F * R, *gens.shape[2:]), smoothing, mode)  # (F*R, Fq, N)
    q = q.reshape(F, R, *p.shape[1:])  # (F, R, Fq, N)
    h = ((p.sqrt()[:, None] - q.sqrt()) ** 2).sum(2).sqrt() / math.sqrt(2.0)  # (F, R, N)
    h = h.mean(-1)  # (F, R)
    return torch.where(fin, h, torch.ones_like(h))


def power_spectrum(x, smoothing: float = 20.0, mode: str = BORDER) -> np.ndarray:
    """Normalised, smoothed power spectrum (T//2+1, N) of each dim of one series x (T, N)."""
    x = _as_2d(x, "x")
    if not np.isfinite(x).all():
        raise ValueError("x contains non-finite values")
    return power_spectrum_batch(torch.as_tensor(x)[None], smoothing, mode)[0].numpy()


def dh(x_true, x_gen, smoothing: float = 20.0, mode: str = BORDER) -> float:
    """D_H of one pair, mean over dims, in [0, 1]; both truncated to their common length; 1.0 if x_gen diverged."""
    x_true, x_gen = _as_2d(x_true, "x_true"), _as_2d(x_gen, "x_gen")
    if x_true.shape[1] != x_gen.shape[1]:
        raise ValueError(f"x_true has {x_true.shape[1]} dims but x_gen has {x_gen.shape[1]}")
    t = min(len(x_true), len(x_gen))
    return float(dh_batch(torch.as_tensor(x_true[:t])[None], torch.as_tensor(x_gen[:t])[None, None],
                          smoothing, mode)[0, 0])


def peak_frequencies(x, dt: float, smoothing: float = 2.0) -> np.ndarray:
    """Frequency (Hz) of the largest non-DC peak (local maximum) of each dim's smoothed power spectrum.

    Parameters
    ----------
    x : array (T, N)
        Time series sampled every ``dt`` seconds.
    dt : float
        Sampling interval in seconds (e.g. the TR).
    smoothing : float
        σ of the spectral smoothing in frequency bins.

    Returns
    -------
    ndarray (N,)
        Peak frequency per dim, a multiple of the resolution 1 / (T dt).
    """
    x = _as_2d(x, "x")
    ps = power_spectrum(x, smoothing)  # (F, N)
    freqs = np.fft.rfftfreq(x.shape[0], d=dt)  # (F,)
    padded = np.concatenate([ps, np.full((1, ps.shape[1]), -np.inf)])  # (F + 1, N)
    is_peak = (ps[1:] > ps[:-1]) & (ps[1:] >= padded[2:])  # (F - 1, N) local maxima of bins 1..F-1
    score = np.where(is_peak, ps[1:], -np.inf)  # (F - 1, N)
    none = ~is_peak.any(axis=0)  # (N,) monotone spectrum: fall back to the largest non-DC bin
    score[:, none] = ps[1:, none]
    return freqs[1 + np.argmax(score, axis=0)]  # (N,)

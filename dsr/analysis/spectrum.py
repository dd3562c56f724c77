"""Smoothed power spectra, the power-spectrum Hellinger distance D_H, and dominant frequencies.

Spectrum (DESIGN.md §1): z-score each dim, |rfft|² (DC bin kept), Gaussian smoothing along frequency
(scipy ``gaussian_filter1d``, mode "reflect", radius 4σ), negatives clipped to 0, each dim normalised
to sum 1. D_H is the Hellinger distance (1/√2)‖√p − √q‖ per dim, averaged over dims.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d


def _as_2d(x, name: str) -> np.ndarray:
    """Convert numpy / torch input to a float64 (T, N) array (a 1-D input becomes (T, 1))."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a (T, N) array with T >= 2, got shape {x.shape}")
    return x


def power_spectrum(x, smoothing: float = 20.0) -> np.ndarray:
    """Normalised, smoothed power spectrum of each dim.

    Parameters
    ----------
    x : array (T, N)
        Time series (finite).
    smoothing : float
        σ of the Gaussian smoothing kernel in frequency bins; <= 0 means no smoothing.

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
        ps = gaussian_filter1d(ps, smoothing, axis=0, mode="reflect", truncate=4.0)  # (F, N)
        np.maximum(ps, 0.0, out=ps)
    return ps / ps.sum(axis=0, keepdims=True)  # (F, N)


def hellinger(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hellinger distance (1/√2)‖√p − √q‖ between matching columns of p, q (F, N) -> (N,)."""
    return np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2, axis=0)) / np.sqrt(2.0)


def dh(x_true, x_gen, smoothing: float = 20.0) -> float:
    """Power-spectrum Hellinger distance D_H, mean over dims.

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
    p = power_spectrum(x_true[:t], smoothing)  # (F, N)
    q = power_spectrum(x_gen[:t], smoothing)  # (F, N)
    return float(np.mean(hellinger(p, q)))


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

"""Wiener deconvolution of observed series into latent forcing targets (numpy, DESIGN.md §1).

Per channel: noise σ from the median absolute deviation of the finest sym5 wavelet detail coefficients
(/0.6745, floored at ``min_noise``); signal spectrum from a VisuShrink-denoised copy;
``X̂_k = Y_k conj(H_k) / (|H_k|² + T σ² / |S_k|²)`` with H the FFT of the kernel zero-padded to T.
The first ``floor(cut_l K)`` and last ``floor(cut_r K)`` samples are unreliable and set to NaN.
"""

from __future__ import annotations

import math

import numpy as np
import pywt

from dsr.errors import ConfigError, InputError

#: MAD of a standard normal: σ ≈ MAD / 0.6745.
MAD_TO_SIGMA = 0.6745
#: Wavelet boundary handling: periodic, so coefficients cover exactly the series.
_MODE = "periodization"


def _as_2d(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Return ``x`` as float64 (T, N) and whether it was 1-D."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        return x[:, None], True
    if x.ndim != 2:
        raise InputError(f"expected a series of shape (T,) or (T, N), got shape {x.shape}")
    return x, False


def _noise_sigma(x: np.ndarray, wavelet: str = "sym5") -> np.ndarray:
    """Per-column noise σ of a (T, N) array; returns shape (N,)."""
    _, d1 = pywt.dwt(x, wavelet, mode=_MODE, axis=0)  # (ceil(T/2), N)
    med = np.median(d1, axis=0)  # (N,)
    return np.median(np.abs(d1 - med), axis=0) / MAD_TO_SIGMA  # (N,)


def estimate_noise_sigma(x: np.ndarray) -> float:
    """Estimate the white-noise σ of a 1-D series.

    Median absolute deviation (about the median) of the level-1 sym5 detail coefficients, / 0.6745.

    Parameters
    ----------
    x : ndarray, shape (T,)

    Returns
    -------
    float
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise InputError(f"estimate_noise_sigma expects a 1-D series, got shape {x.shape}")
    if x.size < 2:
        raise InputError(f"series of {x.size} samples is too short to estimate its noise")
    return float(_noise_sigma(x[:, None])[0])


def _denoise_2d(x: np.ndarray, sigma: np.ndarray, wavelet: str, level: int | None) -> np.ndarray:
    """VisuShrink on each column of (T, N) with per-column noise ``sigma`` (N,)."""
    T = x.shape[0]
    if level is None:
        level = min(pywt.dwt_max_level(T, pywt.Wavelet(wavelet).dec_len), 6)
    level = max(int(level), 1)
    coeffs = pywt.wavedec(x, wavelet, mode=_MODE, level=level, axis=0)  # [cA_L (., N), cD_L, ..., cD_1]
    thr = sigma * math.sqrt(2.0 * math.log(T))  # (N,) universal threshold
    shrunk = [coeffs[0]] + [np.sign(d) * np.maximum(np.abs(d) - thr, 0.0) for d in coeffs[1:]]
    return pywt.waverec(shrunk, wavelet, mode=_MODE, axis=0)[:T]  # (T, N)


def wavelet_denoise(x: np.ndarray, wavelet: str = "sym5", level: int | None = None) -> np.ndarray:
    """VisuShrink wavelet denoising (soft thresholding at σ√(2 ln T) of all detail levels).

    Parameters
    ----------
    x : ndarray, shape (T,) or (T, N)
        Columns are denoised independently, each with its own noise estimate.
    wavelet : str
        PyWavelets wavelet name.
    level : int, optional
        Decomposition depth; default ``min(max level, 6)``.

    Returns
    -------
    ndarray, same shape as x, float64
    """
    x2, was_1d = _as_2d(x)
    if x2.shape[0] < 2:
        raise InputError(f"series of {x2.shape[0]} samples is too short to denoise")
    out = _denoise_2d(x2, _noise_sigma(x2, wavelet), wavelet, level)  # (T, N)
    return out[:, 0] if was_1d else out


def edge_cuts(K: int, cut_l: float, cut_r: float) -> tuple[int, int]:
    """Samples masked at the start and end of a deconvolved series: ``floor(cut * K)`` each."""
    if cut_l < 0 or cut_r < 0:
        raise ConfigError(f"edge cuts must be >= 0, got cut_l={cut_l}, cut_r={cut_r}")
    return int(math.floor(cut_l * K)), int(math.floor(cut_r * K))


def wiener_deconvolve(x: np.ndarray, h: np.ndarray, cut_l: float = 0.25, cut_r: float = 0.5,
                      min_noise: float = 1e-5, mask_edges: bool = True) -> np.ndarray:
    """Wiener-deconvolve each column of ``x`` with the causal filter ``h``.

    Parameters
    ----------
    x : ndarray, shape (T, N) or (T,)
        Observed (filtered) series.
    h : ndarray, shape (K,)
        Filter, ``h[0]`` at lag 0.
    cut_l, cut_r : float
        Fractions of K masked at the start and the end.
    min_noise : float
        Floor of the estimated noise σ.
    mask_edges : bool
        Set the unreliable edge samples to NaN.

    Returns
    -------
    ndarray, same shape as x, float64
    """
    x2, was_1d = _as_2d(x)
    h = np.asarray(h, dtype=np.float64).ravel()
    T, K = x2.shape[0], h.size
    if K == 0:
        raise InputError("the filter has no taps")
    if T < K:
        raise InputError(f"series of {T} samples is shorter than the filter of {K} taps")
    if T < 2:
        raise InputError(f"series of {T} samples is too short to deconvolve")
    if not np.all(np.isfinite(x2)):
        raise InputError("the series contains NaN or Inf values")
    cl, cr = edge_cuts(K, cut_l, cut_r)

    sigma_raw = _noise_sigma(x2)  # (N,)
    sigma = np.maximum(sigma_raw, min_noise)  # (N,)
    denoised = _denoise_2d(x2, sigma_raw, "sym5", None)  # (T, N)

    Y = np.fft.rfft(x2, axis=0)  # (F, N)
    S2 = np.abs(np.fft.rfft(denoised, axis=0)) ** 2  # (F, N)
    H = np.fft.rfft(h, n=T)[:, None]  # (F, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        nsr = np.where(S2 > 0, (T * sigma**2)[None, :] / S2, np.inf)  # (F, N); inf: no signal there
    G = np.conj(H) / (np.abs(H) ** 2 + nsr)  # (F, N); 0 where nsr is inf
    out = np.fft.irfft(Y * G, n=T, axis=0)  # (T, N)

    if mask_edges:
        out[:cl] = np.nan
        if cr > 0:
            out[T - cr:] = np.nan
    return out[:, 0] if was_1d else out

"""Wiener deconvolution of observed series into latent forcing targets (numpy).

Per channel: noise σ from the median absolute deviation of the finest sym5 wavelet detail coefficients
(/0.6745, floored at ``min_noise``); signal spectrum from a VisuShrink-denoised copy;
``X̂_k = Y_k conj(H_k) / (|H_k|² + T σ² / |S_k|²)`` with H the FFT of the kernel zero-padded to T.
The first ``floor(cut_l K)`` and last ``floor(cut_r K)`` samples are unreliable and set to NaN.
As the reference code does it (humml-lab/GTF-ConvSSM src/utilities/fMRI_helpers.jl
``Wiener_Deconvolution``, with Wavelets.jl's ``noisest`` and ``denoise`` defaults): the noise σ of an
odd-length series from its first T−1 samples; VisuShrink by *hard* thresholding of all coefficients
(approximation included) at σ√(2 ln T), at depth min(number of factors of 2 in T, 6), an odd series
padded with one zero. :func:`sliding_wiener_deconvolve` gives the test part's targets the way the
reference does: from windows that end ``cut_r K`` samples after each target.
"""

from __future__ import annotations

import math
import warnings

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


def _factors_of_two(n: int) -> int:
    """How often 2 divides n (Wavelets.jl ``maxtransformlevels`` of a length-n array)."""
    k = 0
    while n > 0 and n % 2 == 0:
        n //= 2
        k += 1
    return k


def _denoise_2d(x: np.ndarray, wavelet: str, level: int | None) -> np.ndarray:
    """VisuShrink on each column of (T, N), each with its own noise σ, as Wavelets.jl's ``denoise``
    with its defaults: an odd series padded with one zero to even length n, depth min(factors of 2
    in n, 6), every coefficient with |c| ≤ σ√(2 ln n) set to 0 (hard thresholding, approximation
    coefficients included), σ from the padded series.

    Soft thresholding of the detail levels only (dsr before issue 13) gave worse Wiener targets in
    every setting measured (benchmarks/RESULTS.md, session 5), so it is not offered.
    """
    T = x.shape[0]
    xp = x if T % 2 == 0 else np.concatenate([x, np.zeros((1, x.shape[1]))])  # (n, N), n even
    n = xp.shape[0]
    level = max(1, min(_factors_of_two(n), 6) if level is None else int(level))
    thr = _noise_sigma(xp, wavelet) * math.sqrt(2.0 * math.log(n))  # (N,)
    with warnings.catch_warnings():  # deep levels of short series: pywt warns about boundary effects
        warnings.simplefilter("ignore", UserWarning)
        coeffs = pywt.wavedec(xp, wavelet, mode=_MODE, level=level, axis=0)  # [cA_L, cD_L, ..., cD_1]
    kept = [np.where(np.abs(c) > thr, c, 0.0) for c in coeffs]
    return pywt.waverec(kept, wavelet, mode=_MODE, axis=0)[:T]  # (T, N)


def wavelet_denoise(x: np.ndarray, wavelet: str = "sym5", level: int | None = None) -> np.ndarray:
    """VisuShrink wavelet denoising: hard thresholding of all coefficients at σ√(2 ln T).

    Parameters
    ----------
    x : ndarray, shape (T,) or (T, N)
        Columns are denoised independently, each with its own noise estimate.
    wavelet : str
        PyWavelets wavelet name.
    level : int, optional
        Decomposition depth; default min(factors of 2 in the (even) length, 6) as Wavelets.jl.

    Returns
    -------
    ndarray, same shape as x, float64
    """
    x2, was_1d = _as_2d(x)
    if x2.shape[0] < 2:
        raise InputError(f"series of {x2.shape[0]} samples is too short to denoise")
    out = _denoise_2d(x2, wavelet, level)  # (T, N)
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

    sigma = np.maximum(_noise_sigma(x2[:T - T % 2] if T > 2 else x2), min_noise)  # (N,), even length
    denoised = _denoise_2d(x2, "sym5", None)  # (T, N)

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


def sliding_wiener_deconvolve(x: np.ndarray, h: np.ndarray, first: int, window: int, cut_r: float = 0.5,
                              min_noise: float = 1e-5, max_columns: int = 2048) -> np.ndarray:
    """Deconvolve samples ``first`` … T−1−⌊cut_r K⌋, each from its own window that ends ⌊cut_r K⌋
    samples after it: a target sees that many future samples and no more.

    This is how the reference code builds the test part's targets (humml-lab/GTF-ConvSSM
    src/utilities/fMRI_helpers.jl ``get_deconv_data``: one Wiener deconvolution of a training-length
    window per test sample, the value ``cut_r`` from the window's end). The reference stores that value
    at the window's last sample, ``cut_r`` steps after the time it estimates; here it stays at its own
    time.

    Parameters
    ----------
    x : ndarray, shape (T, N) or (T,)
        Observed series.
    h : ndarray, shape (K,)
        Filter.
    first : int
        First target sample (≥ 0).
    window : int
        Window length (the reference: the training length); lowered to ``first + ⌊cut_r K⌋ + 1`` where
        the series has fewer samples before the first window's end.
    cut_r : float
        Fraction of K each target sees ahead; the last ⌊cut_r K⌋ samples get no target.
    min_noise : float
        Floor of the noise σ.
    max_columns : int
        Window columns deconvolved together (memory: about 10 · window · max_columns floats).

    Returns
    -------
    ndarray, same shape as x, float64
        The targets; NaN before ``first`` and in the last ⌊cut_r K⌋ samples.
    """
    x2, was_1d = _as_2d(x)
    h = np.asarray(h, dtype=np.float64).ravel()
    T, N = x2.shape
    _, cr = edge_cuts(h.size, 0.0, cut_r)
    out = np.full((T, N), np.nan)
    targets = np.arange(max(int(first), 0), T - cr)  # (n,)
    if targets.size:
        W = int(min(window, targets[0] + cr + 1))
        if W < max(h.size, 2):
            raise InputError(f"a sliding window of {W} samples is shorter than the filter of {h.size} taps")
        views = np.lib.stride_tricks.sliding_window_view(x2, W, axis=0)  # (T-W+1, N, W), by window start
        starts = targets + cr - W + 1  # (n,)
        per = max(1, max_columns // N)
        for c in range(0, targets.size, per):
            cols = views[starts[c:c + per]].reshape(-1, W).T  # (W, n_c * N)
            d = wiener_deconvolve(cols, h, 0.0, 0.0, min_noise, mask_edges=False)  # (W, n_c * N)
            out[targets[c:c + per]] = d[W - 1 - cr].reshape(-1, N)
    return out[:, 0] if was_1d else out

"""Observation filters, causal convolution and Wiener deconvolution (numpy / torch)."""

from dsr.signal.convolution import causal_conv, convolve_np
from dsr.signal.deconvolution import (
    edge_cuts,
    estimate_noise_sigma,
    sliding_wiener_deconvolve,
    wavelet_denoise,
    wiener_deconvolve,
)
from dsr.signal.filters import (
    INDICATOR_TAU,
    calcium_kernel,
    glover_hrf,
    indicator_tau,
    make_filter,
    spm_hrf,
)

__all__ = [
    "INDICATOR_TAU",
    "calcium_kernel",
    "causal_conv",
    "convolve_np",
    "edge_cuts",
    "estimate_noise_sigma",
    "glover_hrf",
    "indicator_tau",
    "make_filter",
    "sliding_wiener_deconvolve",
    "spm_hrf",
    "wavelet_denoise",
    "wiener_deconvolve",
]

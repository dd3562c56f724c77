"""Neural activity → BOLD: the SPM canonical HRF (the convSSM's own decoder) or the Balloon–Windkessel model."""
from __future__ import annotations

import numpy as np

from dsr.signal.convolution import convolve_np
from dsr.signal.filters import spm_hrf

#: Balloon–Windkessel constants (Friston et al. 2000; Stephan et al. 2007): signal decay κ (1/s), flow
#: feedback γ (1/s), transit time τ (s), Grubb exponent α, resting O2 extraction E0, venous volume V0.
BW_PARAMS = {"kappa": 0.65, "gamma": 0.41, "tau": 0.98, "alpha": 0.32, "E0": 0.34, "V0": 0.02}


def hrf_bold(neural: np.ndarray, tr: float) -> np.ndarray:
    """Causal convolution of (T, N) activity sampled at the TR with the SPM HRF (sums to 1)."""
    return convolve_np(neural, spm_hrf(tr))  # (T, N)


def balloon_windkessel(neural: np.ndarray, dt: float, *, substeps: int = 10,
                       params: dict | None = None) -> np.ndarray:
    """Integrate the Balloon–Windkessel model driven by ``neural`` (forward Euler).

    Parameters
    ----------
    neural : ndarray, shape (T, N)
        Neural drive sampled every ``dt`` seconds (held constant within a sample).
    dt : float
        Sampling period of ``neural`` in seconds.
    substeps : int
        Euler steps per sample.
    params : dict, optional
        Overrides of :data:`BW_PARAMS`.

    Returns
    -------
    ndarray, shape (T, N)
        BOLD signal change (fraction of baseline) at the sample times.
    """
    p = dict(BW_PARAMS, **(params or {}))
    k, g, tau, alpha, e0, v0 = (p[key] for key in ("kappa", "gamma", "tau", "alpha", "E0", "V0"))
    k1, k2, k3 = 7.0 * e0, 2.0, 2.0 * e0 - 0.2
    neural = np.asarray(neural, dtype=np.float64)  # (T, N)
    n = neural.shape[1]
    s, f, v, q = np.zeros(n), np.ones(n), np.ones(n), np.ones(n)  # (N,) each
    h = dt / substeps
    out = np.empty_like(neural)
    for t in range(neural.shape[0]):
        u = neural[t]
        for _ in range(substeps):
            extraction = 1.0 - (1.0 - e0) ** (1.0 / f)
            ds = u - k * s - g * (f - 1.0)
            dv = (f - v ** (1.0 / alpha)) / tau
            dq = (f * extraction / e0 - v ** (1.0 / alpha) * q / v) / tau
            s, f = s + h * ds, np.maximum(f + h * s, 0.05)
            v, q = np.maximum(v + h * dv, 0.05), np.maximum(q + h * dq, 0.05)
        out[t] = v0 * (k1 * (1.0 - q) + k2 * (1.0 - q / v) + k3 * (1.0 - v))
    return out

"""Observation filters: haemodynamic responses (BOLD) and Ca²⁺ indicator kernels.

Every filter is a causal FIR kernel ``h`` sampled at the recording's sampling period, ``h[0]`` at lag 0,
normalised to sum 1, so that ``x_t = Σ_k h[k] z_{t-k}`` keeps the scale of ``z``
(the convSSM's decoder, :mod:`dsr.models.convssm`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import gamma

from dsr.errors import ConfigError, InputError

#: SPM canonical HRF parameters: response delay, undershoot delay, response dispersion,
#: undershoot dispersion, response/undershoot ratio, onset, kernel length (all seconds except ratio).
SPM_HRF_PARAMS = (6.0, 16.0, 1.0, 1.0, 6.0, 0.0, 32.0)

#: Decay time constant τ (seconds) of common genetically encoded Ca²⁺ indicators.
INDICATOR_TAU = {
    "GCaMP6f": 0.7,
    "GCaMP6m": 1.0,
    "GCaMP6s": 1.25,  # reported 1.25–1.5 s
}

FILTER_KINDS = ("spm", "glover", "calcium", "none")


def _check_dt(dt: float, name: str = "TR") -> float:
    """Return ``dt`` as a float, or raise InputError when it is not a positive finite number."""
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be > 0 seconds, got {dt!r}") from None
    if not math.isfinite(dt) or dt <= 0:
        raise InputError(f"{name} must be > 0 seconds, got {dt!r}")
    return dt


def _n_taps(length: float, dt: float) -> int:
    """Number of samples at 0, dt, 2dt, ... up to ``length`` (guarding against 31.999... rounding)."""
    return int(math.floor(length / dt + 1e-9)) + 1


def _n_taps_reference(length: float, dt: float) -> int:
    """Taps of the reference code's SPM HRF: ``floor(length / TR) + 1`` with the TR in float32.

    humml-lab/GTF-ConvSSM src/utilities/fMRI_helpers.jl ``spm_hrf`` takes the TR as parsed, a
    Float32 (src/parsing.jl), and divides in Float64: where the float32 TR lies just above a TR
    that divides the length (0.2, 0.4, 0.8, 0.1 s, ...) the last tap (at exactly 32 s) is dropped:
    160 taps at TR 0.2 s, not 161. Everywhere else this equals ``floor(length / TR) + 1``.
    """
    return int(math.floor(length / float(np.float32(dt)))) + 1


def _normalise(h: np.ndarray, what: str) -> np.ndarray:
    total = h.sum()
    if not np.isfinite(total) or total <= 0:
        raise InputError(f"{what} has no positive mass at this sampling period; is the TR too long?")
    return h / total


def spm_hrf(tr: float, params=SPM_HRF_PARAMS) -> np.ndarray:
    """SPM canonical double-gamma haemodynamic response, sampled every ``tr`` seconds.

    Parameters
    ----------
    tr : float
        Repetition time in seconds.
    params : sequence of 7 floats
        ``(delay, undershoot delay, dispersion, undershoot dispersion, ratio, onset, length)``.

    Returns
    -------
    h : ndarray, shape (K,), float64
        ``K = floor(length / tr) + 1`` taps at ``u = 0, tr, ...`` (minus onset), summing to 1; with
        the tap count of the reference code (:func:`_n_taps_reference`: 160 at TR 0.2 s).
    """
    tr = _check_dt(tr)
    p1, p2, p3, p4, p5, p6, p7 = (float(p) for p in params)
    u = np.arange(_n_taps_reference(p7, tr), dtype=np.float64) * tr - p6  # (K,)
    h = gamma.pdf(u, p1 / p3, scale=p3) - gamma.pdf(u, p2 / p4, scale=p4) / p5  # (K,)
    return _normalise(h, "the SPM HRF")


def glover_hrf(tr: float, length: float = 32.0, ratio: float = 0.48) -> np.ndarray:
    """Glover (1999) double-gamma haemodynamic response, in nilearn's parameterisation.

    ``h(t) = g(t; 6/0.9, 0.9) - ratio * g(t; 12/0.9, 0.9)`` with ``g(t; shape, scale)`` the gamma
    density (response delay 6 s, undershoot delay 12 s, both dispersions 0.9 s). nilearn uses
    ``ratio=0.48``, which reproduces the undershoot/peak amplitude (about -0.26) of Glover's
    original peak-normalised form with c = 0.35; nistats used 0.35 in the density form.

    Parameters
    ----------
    tr : float
        Repetition time in seconds.
    length : float
        Kernel length in seconds.
    ratio : float
        Weight of the undershoot density.

    Returns
    -------
    h : ndarray, shape (floor(length / tr) + 1,), float64
        Sampled at ``t = 0, tr, ...``, summing to 1.
    """
    tr = _check_dt(tr)
    t = np.arange(_n_taps(float(length), tr), dtype=np.float64) * tr  # (K,)
    h = gamma.pdf(t, 6.0 / 0.9, scale=0.9) - ratio * gamma.pdf(t, 12.0 / 0.9, scale=0.9)  # (K,)
    return _normalise(h, "the Glover HRF")


def indicator_tau(indicator: str) -> float:
    """Decay constant τ (s) of a named Ca²⁺ indicator (case-insensitive); ConfigError if unknown."""
    by_lower = {name.lower(): tau for name, tau in INDICATOR_TAU.items()}
    key = str(indicator).lower()
    if key not in by_lower:
        known = ", ".join(sorted(INDICATOR_TAU))
        raise ConfigError(f"unknown Ca2+ indicator {indicator!r}; known indicators: {known} "
                          "(or give tau in seconds)")
    return by_lower[key]


def calcium_kernel(dt: float, tau: float | None = None, indicator: str | None = None,
                   n_tau: float = 5.0) -> np.ndarray:
    """Exponential Ca²⁺ indicator kernel ``exp(-t / tau)``, normalised to sum 1.

    Parameters
    ----------
    dt : float
        Sampling period in seconds.
    tau : float, optional
        Decay time constant in seconds; takes precedence over ``indicator``.
    indicator : str, optional
        Indicator name, a key of :data:`INDICATOR_TAU`.
    n_tau : float
        Kernel length in units of ``tau``.

    Returns
    -------
    h : ndarray, shape (floor(n_tau * tau / dt) + 1,), float64
    """
    dt = _check_dt(dt, "sampling period")
    if tau is None:
        if indicator is None:
            raise ConfigError("the calcium kernel needs tau (seconds) or an indicator name; "
                              f"known indicators: {', '.join(sorted(INDICATOR_TAU))}")
        tau = indicator_tau(indicator)
    tau = float(tau)
    if not math.isfinite(tau) or tau <= 0:
        raise ConfigError(f"calcium kernel tau must be > 0 seconds, got {tau!r}")
    if not n_tau > 0:
        raise ConfigError(f"n_tau must be > 0, got {n_tau!r}")
    t = np.arange(_n_taps(n_tau * tau, dt), dtype=np.float64) * dt  # (K,)
    return _normalise(np.exp(-t / tau), "the calcium kernel")


def make_filter(kind: str, dt: float, tau: float | None = None,
                indicator: str | None = None) -> np.ndarray:
    """Build the observation filter named by ``kind``.

    Parameters
    ----------
    kind : {"spm", "glover", "calcium", "none"}
        Filter family; "none" is the identity filter ``[1.0]``.
    dt : float
        Sampling period (TR) in seconds.
    tau, indicator
        Passed to :func:`calcium_kernel` for ``kind="calcium"``.

    Returns
    -------
    h : ndarray, shape (K,), float64, summing to 1
    """
    dt = _check_dt(dt)
    key = str(kind).lower()
    if key == "spm":
        return spm_hrf(dt)
    if key == "glover":
        return glover_hrf(dt)
    if key == "calcium":
        return calcium_kernel(dt, tau=tau, indicator=indicator)
    if key == "none":
        return np.array([1.0])
    raise ConfigError(f"unknown filter kind {kind!r}; choose one of {', '.join(FILTER_KINDS)}")

"""Region-level ground-truth dynamics with one subject-specific parameter.

- ``lorenz96``: Lorenz-96 ring, one variable per region, ``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F``.
  The forcing ``F`` is the subject parameter: weakly chaotic near 4, strongly chaotic at 10 (λ_max ≈ 0.3
  → 2.1 per model time unit for 8 regions). One model time unit lasts ``seconds_per_unit`` seconds
  (default 8 s, which puts the spectral peak near 0.045 Hz, where BOLD carries power).
- ``hopf``: whole-brain network of noisy Stuart–Landau (Hopf) oscillators near the bifurcation
  (``a = -0.02``), 0.04–0.07 Hz, coupled through a random symmetric connectome with global coupling
  ``G`` (the subject parameter).
"""
from __future__ import annotations

import numpy as np

SYSTEMS = {"lorenz96": "forcing", "hopf": "coupling"}
#: Range of the subject parameter drawn by the dataset generator.
PARAM_RANGE = {"lorenz96": (4.5, 10.0), "hopf": (0.0, 0.5)}


def _l96(x: np.ndarray, forcing: float) -> np.ndarray:
    return (np.roll(x, -1) - np.roll(x, 2)) * np.roll(x, 1) - x + forcing  # (N,)


def lorenz96(n_regions: int, forcing: float, duration: float, dt: float, *, rng: np.random.Generator,
             seconds_per_unit: float = 8.0, transient: float = 400.0) -> np.ndarray:
    """Integrate Lorenz-96 with RK4 and sample it every ``dt`` seconds.

    Parameters
    ----------
    n_regions : int
        Ring size N (≥ 4).
    forcing : float
        F, the subject parameter.
    duration : float
        Seconds to return.
    dt : float
        Output sampling period in seconds.
    rng : numpy Generator
        Draws the initial state.
    seconds_per_unit : float
        Seconds per model time unit.
    transient : float
        Seconds discarded first.

    Returns
    -------
    ndarray, shape (round(duration / dt), N)
    """
    h = 0.02  # RK4 step in model units
    per_sample = max(1, int(round(dt / seconds_per_unit / h)))
    h = dt / seconds_per_unit / per_sample
    n_out, n_skip = int(round(duration / dt)), int(round(transient / dt))
    x = forcing + rng.normal(0.0, 0.5, n_regions)  # (N,)
    out = np.empty((n_out, n_regions))
    for i in range(n_skip + n_out):
        for _ in range(per_sample):
            k1 = _l96(x, forcing)
            k2 = _l96(x + 0.5 * h * k1, forcing)
            k3 = _l96(x + 0.5 * h * k2, forcing)
            k4 = _l96(x + h * k3, forcing)
            x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        if i >= n_skip:
            out[i - n_skip] = x
    return out


def connectome(n_regions: int, rng: np.random.Generator, density: float = 0.5) -> np.ndarray:
    """Random symmetric non-negative connectome with zero diagonal, rows scaled to mean 1 strength."""
    w = rng.uniform(0, 1, (n_regions, n_regions)) * (rng.uniform(0, 1, (n_regions, n_regions)) < density)
    w = np.triu(w, 1)
    w = w + w.T  # (N, N)
    return w / max(w.sum(axis=1).mean(), 1e-12)


def hopf(n_regions: int, coupling: float, duration: float, dt: float, *, rng: np.random.Generator,
         a: float = -0.02, noise: float = 0.02, weights: np.ndarray | None = None,
         transient: float = 200.0) -> np.ndarray:
    """Noisy Stuart–Landau network (Euler–Maruyama, 0.1 s steps), real parts sampled every ``dt`` s.

    ``dz_j = [(a + iω_j − |z_j|²) z_j + G Σ_k C_jk (z_k − z_j)] dt + noise dW``.

    Returns
    -------
    ndarray, shape (round(duration / dt), N)
    """
    h = 0.1
    per_sample = max(1, int(round(dt / h)))
    h = dt / per_sample
    c = connectome(n_regions, rng) if weights is None else np.asarray(weights, dtype=float)  # (N, N)
    omega = 2 * np.pi * rng.uniform(0.04, 0.07, n_regions)  # (N,)
    n_out, n_skip = int(round(duration / dt)), int(round(transient / dt))
    z = 0.1 * (rng.normal(size=n_regions) + 1j * rng.normal(size=n_regions))  # (N,)
    out = np.empty((n_out, n_regions))
    strength = c.sum(axis=1)  # (N,)
    for i in range(n_skip + n_out):
        for _ in range(per_sample):
            drift = (a + 1j * omega - np.abs(z) ** 2) * z + coupling * (c @ z - strength * z)
            dw = rng.normal(size=n_regions) + 1j * rng.normal(size=n_regions)
            z = z + h * drift + noise * np.sqrt(h) * dw
        if i >= n_skip:
            out[i - n_skip] = z.real
    return out


def simulate(system: str, n_regions: int, param: float, duration: float, dt: float, *,
             rng: np.random.Generator) -> np.ndarray:
    """Dispatch to :func:`lorenz96` or :func:`hopf`; returns (T, N) sampled every ``dt`` seconds."""
    if system == "lorenz96":
        return lorenz96(n_regions, param, duration, dt, rng=rng)
    if system == "hopf":
        return hopf(n_regions, param, duration, dt, rng=rng)
    raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")

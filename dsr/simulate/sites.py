"""Cohorts of region series with a hidden subject parameter, optionally acquired at several sites.

A subject's region BOLD comes from :func:`dsr.simulate.bids_dataset.simulate_region_bold` (Lorenz-96 or
Hopf dynamics through the HRF), sampled at its site's TR. A :class:`Site` then adds the acquisition:

* ``gain`` — scanner gain (per-region gains scattered ±10 % around it) and a baseline offset;
* ``noise`` — white thermal noise, in units of the clean BOLD's standard deviation;
* ``tr`` — repetition time: the same recording duration gives ``duration / tr`` volumes;
* ``motion`` — six random-walk motion traces (scaled by ``motion``) mixed into every region through
  random loadings, plus spikes (a ``motion``-dependent number of single-volume jumps).

The subject parameter is drawn from the same range at every site, so site is not confounded with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsr.simulate.bids_dataset import simulate_region_bold
from dsr.simulate.dynamics import PARAM_RANGE


@dataclass(frozen=True)
class Site:
    """Acquisition effects of one site."""

    name: str
    tr: float = 1.0  # seconds
    gain: float = 1.0
    noise: float = 0.0  # white-noise std / clean BOLD std
    motion: float = 0.0  # motion-trace scale (0 = none)


#: Four sites that differ in every effect (the cross-site benchmark's default).
DEFAULT_SITES = (Site("A", tr=0.8, gain=1.0, noise=0.2, motion=0.05),
                 Site("B", tr=1.0, gain=1.6, noise=0.4, motion=0.1),
                 Site("C", tr=1.5, gain=0.6, noise=0.3, motion=0.25),
                 Site("D", tr=2.0, gain=1.2, noise=0.6, motion=0.4))
CLEAN_SITE = Site("clean", tr=1.0, gain=1.0, noise=0.1, motion=0.0)


def apply_site(bold: np.ndarray, site: Site, rng: np.random.Generator) -> np.ndarray:
    """Acquisition of clean region BOLD (T, N) at ``site``: gain, offset, motion, spikes, noise."""
    T, N = bold.shape
    gains = site.gain * rng.uniform(0.9, 1.1, N)  # (N,)
    offset = 100.0 * site.gain  # scanner units
    x = bold * gains + offset  # (T, N)
    if site.motion > 0:
        traces = np.cumsum(rng.normal(0.0, 0.1, (T, 6)), 0)  # (T, 6) random walks
        traces -= traces.mean(0)
        x = x + site.motion * traces @ rng.normal(0.0, 1.0, (6, N)) * site.gain  # (T, N)
        n_spikes = rng.poisson(site.motion * T / 50)
        for t in rng.integers(0, T, n_spikes):
            x[t] += site.gain * rng.normal(0.0, 3.0 * site.motion * 10, N)
    return x + site.gain * site.noise * rng.standard_normal((T, N))


def simulate_cohort(n_subjects: int, *, seed: int, sites: tuple[Site, ...] = (CLEAN_SITE,),
                    system: str = "lorenz96", n_regions: int = 8, duration: float = 240.0) -> list[dict]:
    """A cohort of ``n_subjects`` per site.

    Parameters
    ----------
    n_subjects : int
        Subjects per site.
    seed : int
        Subject k of site s draws everything from ``SeedSequence([seed, s, k])``.
    sites : tuple of Site
    system : str
        ``"lorenz96"`` (parameter: forcing F) or ``"hopf"`` (coupling G).
    duration : float
        Seconds per recording (volumes = round(duration / TR)).

    Returns
    -------
    list of dict
        One per subject: ``subject``, ``site``, ``param`` (the hidden parameter), ``tr``, ``series`` (T, N).
    """
    lo, hi = PARAM_RANGE[system]
    out = []
    for s, site in enumerate(sites):
        for k in range(n_subjects):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), s, k]))
            param = float(rng.uniform(lo, hi))
            n_vol = int(round(duration / site.tr))
            _, bold = simulate_region_bold(system, param, n_regions, n_vol, site.tr, rng=rng)  # (T, N)
            out.append({"subject": f"{site.name}{k:03d}", "site": site.name, "param": param, "tr": site.tr,
                        "series": apply_site(bold, site, rng)})
    return out

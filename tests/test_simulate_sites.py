"""Site effects of the cohort generator (issue 19)."""
from __future__ import annotations

import numpy as np

from dsr.simulate.sites import CLEAN_SITE, DEFAULT_SITES, Site, apply_site, simulate_cohort


def test_cohort_per_site_tr_parameter_and_determinism():
    sites = (Site("fast", tr=1.0), Site("slow", tr=2.0, gain=2.0, noise=0.5, motion=0.2))
    c = simulate_cohort(2, seed=3, sites=sites, n_regions=5, duration=60.0)
    assert [r["subject"] for r in c] == ["fast000", "fast001", "slow000", "slow001"]
    assert [r["series"].shape for r in c] == [(60, 5), (60, 5), (30, 5), (30, 5)]
    assert all(4.5 <= r["param"] <= 10.0 for r in c)
    again = simulate_cohort(2, seed=3, sites=sites, n_regions=5, duration=60.0)
    assert all(np.array_equal(a["series"], b["series"]) for a, b in zip(c, again))
    other = simulate_cohort(2, seed=4, sites=sites, n_regions=5, duration=60.0)
    assert not np.array_equal(c[0]["series"], other[0]["series"])


def test_site_effects_gain_noise_motion():
    rng = np.random.default_rng(0)
    clean = np.sin(np.linspace(0, 20, 400))[:, None] * np.ones((1, 4))  # (T, N), smooth
    plain = apply_site(clean, CLEAN_SITE, np.random.default_rng(1))
    assert abs(plain.mean() - 100.0) < 0.1
    loud = apply_site(clean, Site("g", gain=2.0), np.random.default_rng(1))
    assert abs(loud.mean() - 200.0) < 0.1 and 1.7 < loud.std(0).mean() / clean.std(0).mean() < 2.3
    noisy = apply_site(clean, Site("n", noise=1.0), rng)
    rough = lambda x: np.diff(x, axis=0).std()  # noqa: E731 - high-frequency content
    assert rough(noisy) > 10 * rough(clean)
    moving = apply_site(clean, Site("m", motion=1.0), np.random.default_rng(2))
    drift = (moving - clean - 100.0)  # motion traces and spikes only (no noise)
    assert drift.std() > 0.3
    bare = apply_site(clean, Site("s"), rng)  # gain 1 (±10 % per region), no noise, no motion
    assert np.allclose(bare, clean + 100.0, atol=0.11)

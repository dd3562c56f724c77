"""Observation filters: SPM and Glover HRFs, Ca²⁺ kernels, the make_filter dispatcher."""

import math

import numpy as np
import pytest

from dsr.errors import ConfigError, InputError
from dsr.signal import INDICATOR_TAU, calcium_kernel, glover_hrf, make_filter, spm_hrf


def _spm_gpdf(x, h, l):
    """SPM's spm_Gpdf: gamma density with shape h and *rate* l, written with math only."""
    if x <= 0:
        return 0.0
    return math.exp((h - 1) * math.log(x) + h * math.log(l) - l * x - math.lgamma(h))


def _spm_hrf_reference(rt, fmri_t=16):
    """spm_hrf.m as SPM writes it: microtime grid dt = RT/16, rate dt/p3, then subsample."""
    p = [6.0, 16.0, 1.0, 1.0, 6.0, 0.0, 32.0]
    dt = rt / fmri_t
    n_micro = math.ceil(p[6] / dt)
    micro = []
    for i in range(n_micro + 1):
        u = i - p[5] / dt
        micro.append(_spm_gpdf(u, p[0] / p[2], dt / p[2]) - _spm_gpdf(u, p[1] / p[3], dt / p[3]) / p[4])
    hrf = [micro[j * fmri_t] for j in range(int(math.floor(p[6] / rt)) + 1)]
    total = sum(hrf)
    return np.array([v / total for v in hrf])


# taps as the reference code (GTF-ConvSSM fMRI_helpers.jl spm_hrf with a Float32 TR) builds them:
# one fewer than floor(32 / TR) + 1 where the float32 TR lies just above a divisor of 32 s
@pytest.mark.parametrize("tr, n_taps", [(1.0, 33), (0.2, 160), (0.5, 65), (1.4, 23), (0.4, 80), (0.8, 40),
                                        (0.1, 320), (0.25, 129), (0.64, 51), (2.0, 17)])
def test_spm_hrf_matches_spm_formula(tr, n_taps):
    h = spm_hrf(tr)
    assert h.dtype == np.float64 and h.shape == (n_taps,)
    ref = _spm_hrf_reference(tr)[:n_taps]  # SPM's taps up to the reference's count, renormalised
    np.testing.assert_allclose(h, ref / ref.sum(), rtol=1e-10, atol=1e-14)
    assert h.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("tr", [1.0, 0.2])
def test_spm_hrf_shape(tr):
    h = spm_hrf(tr)
    assert abs(np.argmax(h) * tr - 5.0) <= max(tr, 0.2) + 1e-9  # mode of gamma(6, 1) is 5 s
    assert h[0] == 0.0
    assert h.min() < 0  # undershoot
    assert 10.0 < np.argmin(h) * tr < 20.0


def test_spm_hrf_too_long_tr():
    with pytest.raises(InputError):
        spm_hrf(40.0)  # one tap at u = 0, where the HRF is zero


def test_glover_hrf():
    tr = 0.1
    h = glover_hrf(tr)
    assert h.shape == (321,)
    assert h.sum() == pytest.approx(1.0, abs=1e-12)
    peak = np.argmax(h) * tr
    assert 4.5 <= peak <= 5.5
    assert h.min() < 0 and 10.0 < np.argmin(h) * tr < 15.0
    assert h[-1] < 0 and abs(h[-1]) < 1e-3 * h.max()
    # undershoot/peak amplitude close to Glover's original form (c = 0.35 on peak-normalised terms)
    assert h.min() / h.max() == pytest.approx(-0.26, abs=0.02)


def test_glover_matches_nilearn_shape():
    hm = pytest.importorskip("nilearn.glm.first_level.hemodynamic_models")
    ref = hm.glover_hrf(1.0, oversampling=50, time_length=32.0)  # fine grid from 0 to 32 s
    t_ref = np.linspace(0, 32.0, ref.size)
    ours = glover_hrf(1.0 / 50)
    t_ours = np.arange(ours.size) / 50
    ref_i = np.interp(t_ours, t_ref, ref)
    np.testing.assert_allclose(ours / ours.max(), ref_i / ref_i.max(), atol=0.02)


def test_calcium_kernel_by_indicator():
    assert INDICATOR_TAU["GCaMP6f"] == 0.7
    assert INDICATOR_TAU["GCaMP6m"] == 1.0
    assert 1.25 <= INDICATOR_TAU["GCaMP6s"] <= 1.5
    dt = 0.05
    for name, tau in INDICATOR_TAU.items():
        h = calcium_kernel(dt, indicator=name)
        assert h.shape == (int(math.floor(5 * tau / dt + 1e-9)) + 1,)
        assert h.sum() == pytest.approx(1.0, abs=1e-12)
        ratio = h[1:] / h[:-1]
        np.testing.assert_allclose(ratio, math.exp(-dt / tau), rtol=1e-12)
    np.testing.assert_allclose(calcium_kernel(dt, indicator="gcamp6f"), calcium_kernel(dt, tau=0.7))
    assert calcium_kernel(0.1, tau=2.0, n_tau=3).shape == (61,)


def test_calcium_kernel_errors():
    with pytest.raises(ConfigError, match="GCaMP6f"):
        calcium_kernel(0.1, indicator="GCaMP99")
    with pytest.raises(ConfigError):
        calcium_kernel(0.1)
    with pytest.raises(ConfigError):
        calcium_kernel(0.1, tau=-1.0)


def test_make_filter():
    np.testing.assert_array_equal(make_filter("spm", 0.5), spm_hrf(0.5))
    np.testing.assert_array_equal(make_filter("glover", 0.5), glover_hrf(0.5))
    np.testing.assert_array_equal(make_filter("calcium", 0.1, indicator="GCaMP6m"),
                                  calcium_kernel(0.1, tau=1.0))
    np.testing.assert_array_equal(make_filter("none", 2.0), np.array([1.0]))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="TR must be > 0"):
            make_filter("spm", bad)
    with pytest.raises(ConfigError, match="spm"):
        make_filter("boxcar", 1.0)

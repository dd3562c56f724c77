"""Hand-computed cases for power spectra, D_H and peak frequencies."""
import numpy as np
import pytest

from dsr.analysis.spectrum import dh, peak_frequencies, power_spectrum


def _sines(freqs, t=10000, dt=1.0):
    s = np.arange(t) * dt
    return np.stack([np.sin(2 * np.pi * f * s) for f in freqs], 1)


def test_power_spectrum_normalised():
    x = np.random.default_rng(0).standard_normal((301, 3))
    ps = power_spectrum(x)
    assert ps.shape == (151, 3)
    assert np.allclose(ps.sum(0), 1.0) and (ps >= 0).all()


def test_dh_identical_is_zero():
    x = np.random.default_rng(0).standard_normal((1000, 3))
    assert dh(x, x) == pytest.approx(0.0, abs=1e-12)


def test_dh_different_sines_close_to_one_and_symmetric():
    x = _sines([0.05, 0.07])
    y = _sines([0.2, 0.3])
    d = dh(x, y)
    assert d > 0.99
    assert dh(y, x) == pytest.approx(d, abs=1e-12)


def test_dh_hand_case_no_smoothing():
    # x = [2, 0, -1, -1] has rfft power [0, 10, 4]; y = [1, -1, 1, -1] has [0, 0, 16]
    x = np.array([2.0, 0.0, -1.0, -1.0])[:, None]
    y = np.array([1.0, -1.0, 1.0, -1.0])[:, None]
    p = np.array([0.0, 10.0, 4.0]) / 14
    q = np.array([0.0, 0.0, 1.0])
    expected = np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)) / np.sqrt(2)
    assert np.allclose(power_spectrum(x, smoothing=1e-3)[:, 0], p)
    assert dh(x, y, smoothing=1e-3) == pytest.approx(expected, rel=1e-10)
    assert dh(x, y, smoothing=0.0) == pytest.approx(expected, rel=1e-10)


def test_dh_truncates_to_common_length_and_diverged():
    x = _sines([0.05])
    assert dh(x, x[:5000]) == pytest.approx(dh(x[:5000], x[:5000]), abs=1e-12)
    bad = x.copy()
    bad[3] = np.inf
    assert dh(x, bad) == 1.0


def test_dh_constant_generated_dim():
    x = _sines([0.05], t=2000)
    d = dh(x, np.zeros_like(x))
    assert np.isfinite(d) and d > 0.9


def test_peak_frequency():
    dt = 0.5
    x = _sines([0.1, 0.25], t=1000, dt=dt)
    df = 1.0 / (1000 * dt)
    assert np.allclose(peak_frequencies(x, dt), [0.1, 0.25], atol=df)

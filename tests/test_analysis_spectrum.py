"""Hand-computed cases for power spectra, D_H and peak frequencies."""
import numpy as np
import pytest

import torch

from dsr.analysis.spectrum import (dh, dh_batch, dh_ref, peak_frequencies, power_spectrum, power_spectrum_ref,
                                  smooth_spectra)


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


@pytest.mark.parametrize("n_freq", [5, 80, 81, 82, 161, 4001])
@pytest.mark.parametrize("smoothing", [20.0, 0.7])
@pytest.mark.parametrize("mode", ["mirror", "reflect"])
def test_spectrum_smoothing_equals_scipy(n_freq, smoothing, mode):
    """The padded-convolution smoothing equals scipy's filter in both border modes, also below the kernel radius."""
    from scipy.ndimage import gaussian_filter1d

    ps = np.random.default_rng(n_freq).random((2, n_freq, 3))  # (B, F, N)
    want = gaussian_filter1d(ps, smoothing, axis=1, mode=mode, truncate=4.0)
    got = smooth_spectra(torch.as_tensor(ps), smoothing, mode).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


def test_border_reflects_about_the_edge_sample():
    """The reference (pse.jl, ImageFiltering "reflect") pads c b | a b c: numpy's pad mode "reflect"."""
    ps = np.random.default_rng(1).random(50)
    r = 4  # radius of σ = 1
    k = np.exp(-0.5 * np.arange(-r, r + 1) ** 2)
    want = np.convolve(np.pad(ps, r, mode="reflect"), k / k.sum(), mode="valid")  # (50,)
    got = smooth_spectra(torch.as_tensor(ps)[None, :, None], 1.0)[0, :, 0].numpy()  # default border
    np.testing.assert_allclose(got, want, rtol=1e-12)
    edge_repeated = np.convolve(np.pad(ps, r, mode="symmetric"), k / k.sum(), mode="valid")
    assert not np.allclose(got[:r], edge_repeated[:r])


def test_batched_dh_equals_ref():
    rng = np.random.default_rng(2)
    refs = rng.standard_normal((2, 120, 3))  # (F, T, N)
    gens = rng.standard_normal((2, 3, 150, 3)).cumsum(2) * 0.1  # (F, R, T', N) longer: first 120 steps used
    gens[1, 2, 7, 1] = np.nan
    got = dh_batch(torch.as_tensor(refs), torch.as_tensor(gens), 1.0).numpy()
    want = np.array([[dh_ref(refs[f], gens[f, r, :120], 1.0) for r in range(3)] for f in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert got[1, 2] == 1.0
    np.testing.assert_allclose(power_spectrum(refs[0], 3.0), power_spectrum_ref(refs[0], 3.0), rtol=1e-10)

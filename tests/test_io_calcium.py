"""Ca²⁺ readers: round trips through simulated suite2p/NWB files, and every bad input.

Measured on the default simulation (20 cells, 120 s at 15 Hz, GCaMP6f, Poisson
spikes, noise 5 % of F₀, neuropil r = 0.7): median per-cell correlation of the
read ΔF/F with the noiseless convolved ground truth ≈ 0.93 (seeds 1–5: 0.925–0.94),
with the pre-indicator rates ≈ 0.64–0.71 — bounded by the indicator's low-pass
itself: the noiseless convolved truth correlates only ≈ 0.70–0.76 with the rates.
Thresholds tested: 0.90, 0.60 (and ≥ 85 % of that ceiling); 0.99 when spiking is
noiseless (expected counts, no read noise).
"""
from __future__ import annotations

import numpy as np
import pytest

from dsr.errors import ConfigError, InputError
from dsr.io.calcium import DffSettings, load_calcium
from dsr.io.calcium_suite2p import read_suite2p
from dsr.simulate.calcium import simulate_calcium, write_nwb, write_suite2p

pytest.importorskip("pynwb")

FS = 15.0
N_CELLS = 20
MIN_CORR_TRUE = 0.90  # ΔF/F vs noiseless convolved ground truth (measured 0.925 at seed 3)
MIN_CORR_RATES = 0.60  # ΔF/F vs pre-indicator rates (measured 0.64; ceiling 0.70)


def median_corr(a, b):
    a = (a - a.mean(0)) / a.std(0)  # (T, N)
    b = (b - b.mean(0)) / b.std(0)  # (T, N)
    return float(np.median((a * b).mean(0)))


@pytest.fixture(scope="module")
def gt():
    return simulate_calcium(fs=FS, n_cells=N_CELLS, duration=120.0, seed=3)


@pytest.fixture(scope="module")
def s2p_dir(gt, tmp_path_factory):
    root = tmp_path_factory.mktemp("s2p") / "suite2p"
    write_suite2p(gt, root)
    return root


@pytest.fixture(scope="module")
def nwb_path(gt, tmp_path_factory):
    return write_nwb(gt, tmp_path_factory.mktemp("nwb") / "sub-01_ophys.nwb")


def assert_names(excinfo, path):
    """The error is one line and names the file."""
    msg = str(excinfo.value)
    assert str(path) in msg and "\n" not in msg, msg


# --------------------------------------------------------------------------- round trips


def test_suite2p_round_trip(gt, s2p_dir):
    rec = load_calcium(s2p_dir)
    assert rec.shape == (gt.F.shape[0], N_CELLS)  # non-cells dropped
    assert rec.roi_ids == list(range(N_CELLS))
    assert rec.fs == FS and rec.meta["fs_source"] == "ops.npy"
    assert rec.meta["neuropil_coef"] == 0.7 and rec.meta["indicator"] == "GCaMP6f"
    c_true, c_rate = median_corr(rec.traces, gt.calcium_true), median_corr(rec.traces, gt.rates)
    print(f"suite2p ΔF/F corr: convolved truth {c_true:.3f}, rates {c_rate:.3f}")
    assert c_true >= MIN_CORR_TRUE and c_rate >= MIN_CORR_RATES
    assert c_rate >= 0.85 * median_corr(gt.calcium_true, gt.rates)  # near the indicator's ceiling
    assert 0.5 < rec.traces.mean() / gt.calcium_true.mean() < 1.5  # ΔF/F scale is right
    np.testing.assert_allclose(rec.kernel.sum(), 1.0)


def test_suite2p_plane_folder_and_caller_fs(s2p_dir):
    (s2p_dir / "plane0" / "ops.npy").rename(s2p_dir / "ops.bak")
    try:
        rec = read_suite2p(s2p_dir / "plane0", fs=FS)  # ops.npy never unpickled
        assert rec.meta["fs_source"] == "caller"
        with pytest.raises(InputError, match="no sampling rate") as ei:
            load_calcium(s2p_dir)
        assert_names(ei, s2p_dir)
    finally:
        (s2p_dir / "ops.bak").rename(s2p_dir / "plane0" / "ops.npy")
    assert load_calcium(s2p_dir, fs=2 * FS).fs == 2 * FS  # caller wins


def test_fs_mismatch_is_warned(nwb_path):
    with pytest.warns(UserWarning, match="sampling rate 30.0 Hz given, the file says 15.0 Hz"):
        assert load_calcium(nwb_path, fs=2 * FS).meta["fs_source"] == "caller"


def test_nwb_round_trip_matches_suite2p(gt, nwb_path, s2p_dir):
    rec = load_calcium(nwb_path)
    assert rec.meta["series"] == "Fluorescence/Fluorescence" and rec.meta["neuropil_coef"] == 0.7
    assert rec.fs == FS and rec.roi_ids == list(range(N_CELLS))  # iscell column used
    c_true = median_corr(rec.traces, gt.calcium_true)
    print(f"NWB ΔF/F corr: convolved truth {c_true:.3f}, rates {median_corr(rec.traces, gt.rates):.3f}")
    assert c_true >= MIN_CORR_TRUE
    np.testing.assert_allclose(rec.traces, load_calcium(s2p_dir).traces, rtol=1e-6, atol=1e-6)


def test_nwb_timestamps_and_dfoverf(gt, tmp_path):
    dff = gt.calcium_true + 0.01  # (T, N_CELLS)
    p = write_nwb(gt, tmp_path / "ts.nwb", with_rate=False, dff=dff)
    rec = load_calcium(p)  # DfOverF preferred and taken as is
    assert rec.meta["container"] == "DfOverF" and rec.meta["fs_source"] == "series timestamps"
    assert abs(rec.fs - FS) < 1e-6
    np.testing.assert_allclose(rec.traces, dff, rtol=1e-5)
    raw = load_calcium(p, series="Fluorescence")
    assert raw.meta["signal"] == "raw" and median_corr(raw.traces, gt.calcium_true) >= MIN_CORR_TRUE


def test_noiseless_spiking_is_recovered(tmp_path):
    gt = simulate_calcium(fs=FS, n_cells=6, duration=60.0, poisson=False, noise=0.0, n_noncells=1, seed=1)
    rec = load_calcium(write_suite2p(gt, tmp_path))
    assert median_corr(rec.traces, gt.calcium_true) >= 0.99


@pytest.mark.parametrize("baseline", ["percentile", "constant"])
def test_other_baselines(gt, s2p_dir, baseline):
    rec = load_calcium(s2p_dir, settings=DffSettings(baseline=baseline, window=30.0))
    assert median_corr(rec.traces, gt.calcium_true) >= MIN_CORR_TRUE


def test_arrays(gt, tmp_path):
    x = gt.calcium_true  # (T, N)
    np.save(tmp_path / "a.npy", x)
    rec = load_calcium(tmp_path / "a.npy", fs=FS, tau=1.0)
    np.testing.assert_array_equal(rec.traces, x)
    assert rec.kernel.size == int(5 * 1.0 * FS) + 1 and rec.meta["tau"] == 1.0
    t = np.arange(x.shape[0]) / FS
    head = "time," + ",".join(f"roi{i}" for i in range(x.shape[1]))
    np.savetxt(tmp_path / "a.csv", np.column_stack([t, x]), delimiter=",", header=head, comments="")
    rec = load_calcium(tmp_path / "a.csv", indicator="GCaMP6s")  # fs from the time column
    assert abs(rec.fs - FS) < 1e-6 and rec.roi_ids[0] == "roi0"
    np.testing.assert_allclose(rec.traces, x, rtol=1e-6)
    f = 200.0 * (1.0 + x)
    np.savetxt(tmp_path / "f.tsv", f, delimiter="\t")
    rec = load_calcium(tmp_path / "f.tsv", fs=FS, signal="raw")
    assert rec.roi_ids == list(range(x.shape[1])) and median_corr(rec.traces, x) > 0.99


def test_indicator_choice(tmp_path, gt):
    np.save(tmp_path / "a.npy", gt.calcium_true)
    fast = load_calcium(tmp_path / "a.npy", fs=FS, indicator="GCaMP6f").kernel
    slow = load_calcium(tmp_path / "a.npy", fs=FS, indicator="gcamp6s").kernel
    assert slow.size > fast.size
    with pytest.raises(ConfigError):
        load_calcium(tmp_path / "a.npy", fs=FS, indicator="jRGECO-unknown")


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def s2p_copy(gt, tmp_path):
    return write_suite2p(gt, tmp_path / "s2p_bad")


def test_suite2p_missing_F(s2p_copy):
    (s2p_copy / "F.npy").unlink()
    with pytest.raises(InputError, match="missing suite2p file F.npy") as ei:
        load_calcium(s2p_copy.parent)
    assert_names(ei, s2p_copy / "F.npy")


def test_suite2p_mismatched_fneu(s2p_copy):
    np.save(s2p_copy / "Fneu.npy", np.ones((3, 10), np.float32))
    with pytest.raises(InputError, match="does not match") as ei:
        load_calcium(s2p_copy)
    assert_names(ei, s2p_copy / "Fneu.npy")


def test_suite2p_no_cells(s2p_copy):
    iscell = np.load(s2p_copy / "iscell.npy")
    iscell[:, 0] = 0
    np.save(s2p_copy / "iscell.npy", iscell)
    with pytest.raises(InputError, match="no cells") as ei:
        load_calcium(s2p_copy)
    assert_names(ei, s2p_copy / "iscell.npy")


def test_suite2p_truncated_F(s2p_copy):
    data = (s2p_copy / "F.npy").read_bytes()
    (s2p_copy / "F.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as ei:
        load_calcium(s2p_copy)
    assert_names(ei, s2p_copy / "F.npy")


def test_suite2p_nan(s2p_copy):
    F = np.load(s2p_copy / "F.npy")
    F[2, 100] = np.nan
    np.save(s2p_copy / "F.npy", F)
    with pytest.raises(InputError, match="NaN") as ei:
        load_calcium(s2p_copy)
    assert_names(ei, s2p_copy / "F.npy")


def test_corrupt_nwb(nwb_path, tmp_path):
    junk = tmp_path / "junk.nwb"
    junk.write_bytes(b"this is not HDF5" * 100)
    trunc = tmp_path / "trunc.nwb"
    data = nwb_path.read_bytes()
    trunc.write_bytes(data[: len(data) // 3])
    for p in (junk, trunc):
        with pytest.raises(InputError, match="NWB") as ei:
            load_calcium(p)
        assert_names(ei, p)


def test_nwb_without_roi_response_series(tmp_path):
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    p = tmp_path / "empty.nwb"
    with NWBHDF5IO(str(p), mode="w") as io:
        io.write(NWBFile(session_description="empty", identifier="x",
                         session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc)))
    with pytest.raises(InputError, match="no RoiResponseSeries") as ei:
        load_calcium(p)
    assert_names(ei, p)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_array_nan_inf(tmp_path, value):
    x = np.random.default_rng(0).standard_normal((200, 3))
    x[50, 1] = value
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(InputError, match="NaN/Inf") as ei:
        load_calcium(tmp_path / "x.npy", fs=FS)
    assert_names(ei, tmp_path / "x.npy")


def test_array_problems(tmp_path):
    x = np.random.default_rng(0).standard_normal((200, 3))
    p = tmp_path / "x.npy"
    np.save(p, x)
    cases = [(dict(), "no sampling rate"), (dict(fs=-1.0), "positive")]
    for kw, msg in cases:
        with pytest.raises(InputError, match=msg) as ei:
            load_calcium(p, **kw)
        assert_names(ei, p)
    short = tmp_path / "short.npy"
    np.save(short, x[:20])  # GCaMP6f at 15 Hz: 53 taps
    with pytest.raises(InputError, match="fewer than the 53-tap") as ei:
        load_calcium(short, fs=FS, indicator="GCaMP6f")
    assert_names(ei, short)
    x[:, 2] = 1.0
    np.save(p, x)
    with pytest.raises(InputError, match="constant") as ei:
        load_calcium(p, fs=FS)
    assert_names(ei, p)


def test_bad_tables_and_paths(tmp_path):
    irregular = tmp_path / "irr.csv"
    irregular.write_text("time,a\n0,1\n0.1,2\n0.5,3\n0.6,1\n")
    text = tmp_path / "text.tsv"
    text.write_text("1\t2\nfoo\t3\n")
    for p, msg in [(irregular, "regularly sampled"), (text, "non-numeric"),
                   (tmp_path / "missing.nwb", "no such"), (tmp_path / "x.mat", "no such")]:
        with pytest.raises(InputError, match=msg) as ei:
            load_calcium(p)
        assert_names(ei, p)
    odd = tmp_path / "x.mat"
    odd.write_bytes(b"\0")
    with pytest.raises(InputError, match="unknown Ca") as ei:
        load_calcium(odd)
    assert_names(ei, odd)
    with pytest.raises(InputError, match="not a suite2p folder") as ei:
        load_calcium(tmp_path)
    assert_names(ei, tmp_path)

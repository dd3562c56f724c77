"""Ground-truth Ca²⁺ imaging data: latent activity → spikes → fluorescence → files.

The chain is the forward model the readers invert::

    latent (T, N) → rates r = r_max·(1 + tanh(β(z − θ)))/2 → Poisson spikes per frame
    → indicator calcium c = a·(spikes ⊛ h/h₀)          (ΔF/F, a per spike)
    → F = F₀·(1 + c) + r_np·Fneu + noise,  Fneu = shared slow neuropil + noise

with ``h`` the exponential indicator kernel of ``dsr.signal.filters``. The
ground truth kept for tests is the rate and its noiseless convolution
``calcium_true = a·(r/fs ⊛ h/h₀)``. Files are written as a suite2p plane folder
and as an NWB file (``processing/ophys/Fluorescence``).
"""
from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsr.io.atomic import write_npy
from dsr.signal.convolution import convolve_np
from dsr.signal.filters import calcium_kernel, indicator_tau


@dataclass
class CalciumGroundTruth:
    """Simulated recording and its ground truth (time on axis 0).

    Attributes
    ----------
    fs : float
        Frame rate in Hz.
    indicator : str or None
    tau : float
        Indicator decay time in seconds.
    kernel : ndarray, shape (K,)
        Indicator kernel (sum 1).
    latent : ndarray, shape (T, N)
        Latent activity driving the cells.
    rates : ndarray, shape (T, N)
        Firing rates in Hz (pre-indicator ground truth).
    spikes : ndarray, shape (T, N)
        Spike counts per frame.
    calcium_true : ndarray, shape (T, N)
        Noiseless ΔF/F expected from the rates (rates convolved with the kernel).
    F, Fneu : ndarray, shape (T, R)
        ROI and neuropil fluorescence of all R ROIs (cells first).
    iscell : ndarray of bool, shape (R,)
    neuropil_coef : float
        The true contamination r_np.
    """

    fs: float
    indicator: str | None
    tau: float
    kernel: np.ndarray  # (K,)
    latent: np.ndarray  # (T, N)
    rates: np.ndarray  # (T, N)
    spikes: np.ndarray  # (T, N)
    calcium_true: np.ndarray  # (T, N)
    F: np.ndarray  # (T, R)
    Fneu: np.ndarray  # (T, R)
    iscell: np.ndarray  # (R,)
    neuropil_coef: float


def simulate_rate_network(n_units: int, n_steps: int, dt: float, g: float = 1.5, tau: float = 0.5,
                          noise: float = 0.05, seed: int = 0, transient: float = 10.0) -> np.ndarray:
    """Chaotic random rate network, τ ẋ = −x + g·J·tanh(x) + noise (Sompolinsky et al. 1988).

    Parameters
    ----------
    n_units, n_steps : int
        Units N and output samples T.
    dt : float
        Output sampling period in seconds (integrated with Euler sub-steps ≤ τ/10).
    g : float
        Coupling gain, the subject parameter: g < 1 decays to noise-driven
        fluctuations, g > 1 is chaotic with faster, richer dynamics as g grows.
    tau : float
        Unit time constant in seconds.
    noise : float
        Standard deviation of the additive white noise (per √s).
    seed : int
    transient : float
        Seconds simulated and discarded first.

    Returns
    -------
    ndarray, shape (T, N)
    """
    rng = np.random.default_rng(seed)
    J = rng.standard_normal((n_units, n_units)) / np.sqrt(n_units)  # (N, N)
    np.fill_diagonal(J, 0.0)
    sub = max(1, int(np.ceil(dt / (tau / 10))))
    h = dt / sub
    x = rng.standard_normal(n_units)  # (N,)
    n_skip = int(round(transient / dt))
    out = np.empty((n_steps, n_units))  # (T, N)
    for t in range(-n_skip, n_steps):
        for _ in range(sub):
            x = x + h / tau * (-x + g * J @ np.tanh(x)) + noise * np.sqrt(h) * rng.standard_normal(n_units)
        if t >= 0:
            out[t] = x
    return out


def simulate_calcium(latent: np.ndarray | None = None, fs: float = 15.0, *, n_cells: int = 20,
                     duration: float = 120.0, g: float = 1.5, indicator: str | None = "GCaMP6f",
                     tau: float | None = None, max_rate: float = 20.0, threshold: float = 1.0,
                     gain: float = 2.0, poisson: bool = True, spike_amplitude: float = 0.5,
                     noise: float = 0.05, neuropil_coef: float = 0.7, n_noncells: int = 4,
                     seed: int = 0) -> CalciumGroundTruth:
    """Simulate a Ca²⁺ recording with known ground truth.

    Parameters
    ----------
    latent : ndarray, shape (T, N), optional
        Latent activity sampled at ``fs`` (one column per cell, z-scored here);
        default: :func:`simulate_rate_network` with gain ``g``.
    fs : float
        Frame rate in Hz.
    n_cells, duration : int, float
        Used only without ``latent``.
    g : float
        Subject parameter of the default network.
    indicator, tau : optional
        Indicator kernel by name or decay time (``tau`` wins).
    max_rate, threshold, gain : float
        Rates are ``max_rate·(1 + tanh(gain·(z − threshold)))/2`` of the
        z-scored latent: sparse firing (near 0 Hz below threshold, bursts above),
        so that the calcium returns to baseline between events as in cortex.
    poisson : bool
        Draw Poisson spike counts (True) or use the expected counts r/fs.
    spike_amplitude : float
        ΔF/F of one spike at its peak.
    noise : float
        Shot/read noise standard deviation as a fraction of F₀.
    neuropil_coef : float
        True neuropil contamination r_np.
    n_noncells : int
        Extra ROIs that carry neuropil only (``iscell`` False).
    seed : int

    Returns
    -------
    CalciumGroundTruth
    """
    rng = np.random.default_rng(seed + 1)
    if latent is None:
        latent = simulate_rate_network(n_cells, int(round(duration * fs)), 1.0 / fs, g=g, seed=seed)
    latent = np.asarray(latent, dtype=np.float64)  # (T, N)
    T, N = latent.shape
    kernel = calcium_kernel(1.0 / fs, tau=tau, indicator=indicator)  # (K,)
    tau_used = float(tau) if tau is not None else indicator_tau(indicator)
    peak1 = kernel / kernel[0]  # (K,), one spike → peak 1
    z = (latent - latent.mean(0)) / (latent.std(0) + 1e-12)  # (T, N)
    rates = max_rate * 0.5 * (1.0 + np.tanh(gain * (z - threshold)))  # (T, N) Hz
    spikes = rng.poisson(rates / fs).astype(np.float64) if poisson else rates / fs  # (T, N)
    calcium = spike_amplitude * convolve_np(spikes, peak1)  # (T, N)
    calcium_true = spike_amplitude * convolve_np(rates / fs, peak1)  # (T, N)

    R = N + n_noncells
    t = np.arange(T) / fs
    slow = convolve_np(rng.standard_normal((T, 1)), np.exp(-np.arange(int(5 * fs) + 1) / (2 * fs)))  # (T, 1)
    slow = 0.2 * slow / (slow.std() + 1e-12) + 0.05 * np.sin(2 * np.pi * t / 40.0)[:, None]  # (T, 1)
    fn0 = rng.uniform(80.0, 160.0, R)  # (R,)
    Fneu = fn0 * (1.0 + slow) + noise * fn0 * rng.standard_normal((T, R))  # (T, R)
    f0 = rng.uniform(150.0, 300.0, R)  # (R,)
    dff = np.concatenate([calcium, np.zeros((T, n_noncells))], axis=1)  # (T, R)
    F = f0 * (1.0 + dff) + neuropil_coef * Fneu + noise * f0 * rng.standard_normal((T, R))  # (T, R)
    iscell = np.arange(R) < N  # (R,)
    return CalciumGroundTruth(fs=float(fs), indicator=indicator if tau is None else None, tau=tau_used,
                              kernel=kernel, latent=latent, rates=rates, spikes=spikes,
                              calcium_true=calcium_true, F=F, Fneu=Fneu, iscell=iscell,
                              neuropil_coef=float(neuropil_coef))


def write_suite2p(gt: CalciumGroundTruth, folder, plane: int = 0) -> Path:
    """Write ``folder/plane{plane}/`` as suite2p does (ROIs × frames float32).

    Files: F.npy, Fneu.npy, iscell.npy (R × 2: flag, probability) and ops.npy
    (a pickled dict with ``fs``, ``nframes``, ``tau``, as suite2p stores it).
    Returns the plane folder.
    """
    pdir = Path(folder) / f"plane{plane}"
    pdir.mkdir(parents=True, exist_ok=True)
    prob = np.where(gt.iscell, 0.9, 0.1)  # (R,)
    write_npy(pdir / "F.npy", gt.F.T.astype(np.float32))  # (R, T)
    write_npy(pdir / "Fneu.npy", gt.Fneu.T.astype(np.float32))  # (R, T)
    write_npy(pdir / "iscell.npy", np.stack([gt.iscell.astype(np.float64), prob], axis=1))  # (R, 2)
    ops = {"fs": gt.fs, "nframes": int(gt.F.shape[0]), "tau": gt.tau, "neucoeff": 0.7,
           "nplanes": 1, "save_path": str(pdir)}
    write_npy(pdir / "ops.npy", np.array(ops, dtype=object))
    return pdir


def write_nwb(gt: CalciumGroundTruth, path, *, subject_id: str = "01", with_neuropil: bool = True,
              with_rate: bool = True, dff: np.ndarray | None = None, session_start=None) -> Path:
    """Write an NWB file with the raw traces under ``processing/ophys/Fluorescence``.

    The RoiResponseSeries "Fluorescence" (T × R) references a PlaneSegmentation
    with one pixel-mask ROI per trace and an ``iscell`` column (as suite2p's
    export); "Neuropil" sits beside it when ``with_neuropil``. With
    ``with_rate=False`` the series carry timestamps instead of a rate. ``dff``
    (T × cells) adds a ``DfOverF`` container over the cell ROIs. The file
    is written to a temporary name and renamed into place.
    """
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.file import Subject
    from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, OpticalChannel, RoiResponseSeries

    path = Path(path)
    T, R = gt.F.shape
    start = session_start or datetime(2024, 1, 1, tzinfo=timezone.utc)
    nwb = NWBFile(session_description="dsr simulated Ca2+ recording", identifier=f"dsr-sim-{subject_id}",
                  session_start_time=start, subject=Subject(subject_id=subject_id, species="Mus musculus"))
    device = nwb.create_device(name="Microscope", description="simulated two-photon microscope")
    channel = OpticalChannel(name="OpticalChannel", description="green", emission_lambda=510.0)
    plane = nwb.create_imaging_plane(name="ImagingPlane", optical_channel=channel, device=device,
                                     description="simulated plane", excitation_lambda=920.0,
                                     imaging_rate=gt.fs, indicator=gt.indicator or f"tau={gt.tau:g}s",
                                     location="cortex")
    ophys = nwb.create_processing_module(name="ophys", description="optical physiology")
    seg = ImageSegmentation(name="ImageSegmentation")
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="simulated ROIs",
                                       imaging_plane=plane)
    ps.add_column(name="iscell", description="1 if the ROI is a cell (suite2p convention)")
    ncol = int(np.ceil(np.sqrt(R)))
    for i in range(R):
        y, x = divmod(i, ncol)
        ps.add_roi(pixel_mask=[(4 * x + dx, 4 * y + dy, 1.0) for dx in range(2) for dy in range(2)],
                   iscell=int(gt.iscell[i]))
    ophys.add(seg)
    region = ps.create_roi_table_region(region=list(range(R)), description="all ROIs")
    timing = {"rate": gt.fs} if with_rate else {"timestamps": np.arange(T) / gt.fs}
    fl = Fluorescence(name="Fluorescence")
    ophys.add(fl)
    fl.add_roi_response_series(RoiResponseSeries(name="Fluorescence", data=gt.F.astype(np.float32),
                                                 rois=region, unit="a.u.", **timing))
    if with_neuropil:
        fl.add_roi_response_series(RoiResponseSeries(name="Neuropil", data=gt.Fneu.astype(np.float32),
                                                     rois=region, unit="a.u.", **timing))
    if dff is not None:
        cells = ps.create_roi_table_region(region=np.flatnonzero(gt.iscell).tolist(), description="cells")
        dfo = DfOverF(name="DfOverF")
        ophys.add(dfo)
        dfo.add_roi_response_series(RoiResponseSeries(name="DfOverF", data=np.asarray(dff, np.float32),
                                                      rois=cells, unit="1", **timing))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not end in '.nwb'")
            with NWBHDF5IO(tmp, mode="w") as io:
                io.write(nwb)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

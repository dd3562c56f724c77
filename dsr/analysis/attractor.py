"""Features of one fitted model, read from the files the participant level wrote.

A fit ``{base}_desc-convssm_*`` in a ``func`` folder holds the model (safetensors + JSON), ``metrics.json``
(D_stsp and D_H against the subject's own data), the generated series and the training curve; the data the
model was fitted to is ``{base}_desc-cleaned_timeseries.tsv``. :func:`analyse_fit` reruns the model from
the end of its generated orbit and computes the attractor's features:

- Lyapunov spectrum (per second) and Kaplan–Yorke dimension;
- the attractor's kind: fixed point, cycle, quasi-periodic, chaotic or divergent (λ_max and recurrence);
- power-spectrum peak frequency (Hz) and autocorrelation time (s) of the long orbit seen through the
  decoder (``peak_freq_hz``, ``autocorr_time_s``; NaN at a fixed point), of the saved generated series
  (``gen_*``) and of the data (``data_*``);
- fixed points and 2-cycles (SCYFI) with their stability, for the PLRNN family.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dsr.analysis.fixed_points import Cycle, model_cycles, summarise
from dsr.analysis.lyapunov import kaplan_yorke_dimension, lyapunov_spectrum
from dsr.analysis.spectrum import peak_frequencies
from dsr.io.derivatives import fit_paths
from dsr.models.convssm import ConvSSM

KINDS = ("fixed_point", "cycle", "quasi_periodic", "chaotic", "divergent")
# What each feature of :func:`analyse_fit` and of the group tables is.
FEATURE_DOC = {
    "lyapunov_max": "maximal Lyapunov exponent (1/s; the group level takes the fit's own, from metrics.json)",
    "lyapunov_sum": "sum of the Lyapunov spectrum (1/s)",
    "kaplan_yorke_dim": "Kaplan-Yorke dimension", "attractor_kind": "0 fixed point, 1 cycle, 2 quasi-periodic, "
    "3 chaotic, 4 divergent", "cycle_period": "period of a cycle (steps), 1 for a fixed point",
    "fp_count": "fixed points found (SCYFI)", "fp_stable_count": "stable fixed points",
    "fp_min_spectral_radius": "smallest spectral radius over fixed points", "cycle2_count": "2-cycles found",
    "dstsp": "D_stsp of generated vs own data", "dh": "D_H of generated vs own data",
    "peak_freq_hz": "median peak frequency of the long orbit through the decoder (Hz)",
    "autocorr_time_s": "median autocorrelation time (1/e) of the long orbit through the decoder (s)",
    "gen_peak_freq_hz": "median peak frequency of the saved generated series (Hz)",
    "gen_autocorr_time_s": "median autocorrelation time of the saved generated series (s)",
    "data_peak_freq_hz": "median peak frequency of the data (Hz)",
    "data_autocorr_time_s": "median autocorrelation time of the data (s)",
    "latent_amplitude": "mean standard deviation of the latent orbit", "n_fits": "fits averaged"}
PWL_MODELS = ("PLRNN", "mcPLRNN", "shPLRNN", "cshPLRNN", "dendPLRNN", "clipped_dendPLRNN")


def autocorrelation_time(x, dt: float = 1.0) -> np.ndarray:
    """Lag (in seconds) at which each dim's autocorrelation first falls below 1/e, (T, N) → (N,).

    The crossing is interpolated linearly between the two lags around it. A dim whose autocorrelation
    never falls below 1/e gets T·dt; a constant dim gets NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    T = x.shape[0]
    xc = x - x.mean(0)  # (T, N)
    f = np.fft.rfft(xc, n=2 * T, axis=0)  # (T+1, N)
    acf = np.fft.irfft(np.abs(f) ** 2, axis=0)[:T]  # (T, N)
    out = np.full(x.shape[1], np.nan)
    for i in range(x.shape[1]):
        if acf[0, i] <= 0:
            continue
        r = acf[:, i] / acf[0, i]
        below = np.flatnonzero(r < np.exp(-1))
        if not below.size:
            out[i] = T * dt
            continue
        j = below[0]  # r[j-1] >= 1/e > r[j], j >= 1
        out[i] = (j - 1 + (r[j - 1] - np.exp(-1)) / (r[j - 1] - r[j])) * dt
    return out


def classify_orbit(orbit: np.ndarray, lambda_max: float, chaos_threshold: float = 0.01,
                   max_period: int = 100, bound: float = 1e6) -> tuple[str, int]:
    """Kind of attractor an orbit settles on, from its maximal exponent (per step) and its recurrence.

    Parameters
    ----------
    orbit : ndarray (T, M)
        States after a transient.
    lambda_max : float
        Maximal Lyapunov exponent per step (NaN for a diverged orbit).
    chaos_threshold : float
        λ_max above this is chaos; |λ_max| below it with no recurrence is quasi-periodic.
    max_period : int
        Longest cycle period tested.
    bound : float
        States larger than this count as divergent.

    Returns
    -------
    kind : str
        One of :data:`KINDS`.
    period : int
        1 for a fixed point, the period of a cycle, 0 otherwise.
    """
    if not np.isfinite(orbit).all() or np.abs(orbit).max() > bound or not np.isfinite(lambda_max):
        return "divergent", 0
    scale = 1.0 + np.abs(orbit).max()
    tail = orbit[len(orbit) // 2:]  # (T/2, M)
    if np.ptp(tail, axis=0).max() < 1e-6 * scale:
        return "fixed_point", 1
    if lambda_max > chaos_threshold:
        return "chaotic", 0
    for p in range(1, min(max_period, len(tail) // 3) + 1):
        if np.abs(tail[p:] - tail[:-p]).max() < 1e-5 * scale:
            return "cycle", p
    if lambda_max < -chaos_threshold:  # contracting but slow: still converging to a point or a long cycle
        return ("fixed_point", 1) if np.ptp(tail[-len(tail) // 4:], axis=0).max() < 1e-3 * scale else ("cycle", 0)
    return "quasi_periodic", 0


def _long_run_statistics(model: ConvSSM, orbit: np.ndarray, tr: float) -> dict:
    """Peak frequency (Hz) and autocorrelation time (s) of the orbit seen through the decoder (median over
    channels); NaN for a diverged or constant orbit."""
    nan = {"peak_freq_hz": float("nan"), "autocorr_time_s": float("nan")}
    if len(orbit) < model.kernel_size + 8 or not np.isfinite(orbit).all():
        return nan
    with torch.no_grad():
        x = model.observe(torch.as_tensor(orbit)[None, None])[0, 0].numpy()  # (T-K+1, N)
    if not np.isfinite(x).all() or x.std(0).min() <= 1e-12 * (1 + np.abs(x).max()):
        return nan
    return {"peak_freq_hz": float(np.median(peak_frequencies(x, tr))),
            "autocorr_time_s": float(np.nanmedian(autocorrelation_time(x, tr)))}



@dataclass
class FitAnalysis:
    """Features of one fitted model and the arrays its report shows."""

    features: dict
    lyapunov: np.ndarray  # (M,) per second
    orbit: np.ndarray  # (T, M) latent orbit after the transient
    fixed_points: list[Cycle] = field(default_factory=list)
    cycles2: list[Cycle] = field(default_factory=list)
    kind: str = ""
    tr: float = 1.0
    paths: dict = field(default_factory=dict)


def read_tsv(path: Path) -> np.ndarray:
    """A numeric TSV with a header row as a float array (T, C)."""
    return pd.read_csv(path, sep="\t").to_numpy(dtype=np.float64)


def analyse_model(model: ConvSSM, z0: np.ndarray, n_steps: int = 2000, transient: int = 500,
                  cycles: bool = True, n_restarts: int = 100, seed: int = 0,
                  spectrum: np.ndarray | None = None, orbit: np.ndarray | None = None) -> FitAnalysis:
    """Dynamics features of one model (S = 1) from a latent state z0 (M,).

    Parameters
    ----------
    model : ConvSSM
    z0 : ndarray (M,)
        Initial latent state (e.g. the last generated state).
    n_steps, transient : int
        Orbit length analysed, after a discarded transient.
    cycles : bool
        Search fixed points and 2-cycles (PLRNN family only).
    n_restarts : int
        SCYFI restarts without a new find before it stops.
    spectrum : ndarray (M,) or None
        The model's Lyapunov spectrum per step where it is known already (the fit's evaluation computed it,
        ``metrics.json``); None computes it along the orbit.
    orbit : ndarray (n_steps, M) or None
        The orbit from z0 after the transient where it is generated already (:func:`fit_orbits`).
    """
    tr = float(model.spec.tr)
    m64 = ConvSSM(model.spec, {k: v.detach().double().cpu()[:1] for k, v in model.params.items()},
                  model.filter.double().cpu()[:1])
    z = torch.as_tensor(np.asarray(z0, dtype=np.float64)).reshape(1, 1, -1)  # (1, 1, M)
    if orbit is None:
        with torch.no_grad():
            orbit = m64.generate(z, transient + n_steps)[0, 0, transient:].numpy()  # (n_steps, M)
    step = lambda x: m64.step(x[None])[0]  # noqa: E731  (B, M) -> (B, M)
    jac = lambda x: m64.jacobian(x[None])[0]  # noqa: E731
    if spectrum is not None:
        lam_step = np.array(spectrum, dtype=np.float64)  # (M,)
    else:
        start = torch.as_tensor(np.nan_to_num(orbit[:1], nan=0.0, posinf=0.0, neginf=0.0))
        lam_step = lyapunov_spectrum(step, jac, start, n_steps=n_steps, transient=0)[0].numpy()  # (M,)
    if not np.isfinite(orbit).all():
        lam_step[:] = np.nan
    kind, period = classify_orbit(orbit, float(lam_step[0]))
    feats = {"lyapunov_max": float(lam_step[0] / tr), "lyapunov_sum": float(np.sum(lam_step) / tr),
             "kaplan_yorke_dim": kaplan_yorke_dimension(lam_step),
             "attractor_kind": float(KINDS.index(kind)), "cycle_period": float(period)}
    fin = orbit[np.isfinite(orbit).all(1)]
    feats["latent_amplitude"] = float(np.mean(fin.std(0))) if len(fin) > 1 else float("nan")
    feats.update(_long_run_statistics(m64, orbit, tr))
    fps, c2 = [], []
    if cycles and model.spec.latent_model in PWL_MODELS:
        fps = model_cycles(m64, 1, n_restarts=n_restarts, seed=seed)
        c2 = model_cycles(m64, 2, n_restarts=max(10, n_restarts // 2), seed=seed)
        feats.update(summarise(fps, "fp"))
        feats["cycle2_count"] = float(len(c2))
    return FitAnalysis(feats, lam_step / tr, orbit, fps, c2, kind, tr)


def stored_spectrum(metrics: dict, model: ConvSSM) -> np.ndarray | None:
    """The Lyapunov spectrum per step the fit's evaluation stored in ``metrics.json`` (median over its
    orbits; null entries are NaN), or None when it is absent or not one exponent per latent dimension."""
    spec = metrics.get("lyapunov_spectrum")
    if not isinstance(spec, list) or len(spec) != model.spec.latent_dim:
        return None
    return np.array([float("nan") if v is None else float(v) for v in spec])


def start_state(z_gen: np.ndarray) -> np.ndarray:
    """The last finite state of a fit's generated latents (T, M) → (M,) (the first state when none is)."""
    fin = np.flatnonzero(np.isfinite(z_gen).all(1))
    return z_gen[fin[-1]] if fin.size else z_gen[0]


def fit_orbits(model_paths: list, lengths: list[tuple[int, int]]) -> list[np.ndarray]:
    """The orbit :func:`analyse_fit` follows for each fit, (n_steps, M) each, ``lengths`` its (n_steps,
    transient): float64, from the fit's last generated state. Fits of one structure and lengths (a
    participant's seeds) are stacked and generated in one loop, a step of all of them at once."""
    items = []
    for path in model_paths:
        paths = fit_paths(path)
        items.append((ConvSSM.load(paths["model"]), start_state(read_tsv(paths["generated_latent"]))))
    groups: dict[tuple, list[int]] = {}
    for i, ((model, _), (n, transient)) in enumerate(zip(items, lengths)):
        shapes = tuple((k, tuple(v.shape[1:])) for k, v in sorted(model.params.items()))
        groups.setdefault((model.spec.latent_model, int(n), int(transient), shapes, model.kernel_size), []).append(i)
    out: list = [None] * len(items)
    for (_, n, transient, _, _), idx in groups.items():
        models = [items[i][0] for i in idx]
        stacked = ConvSSM(models[0].spec, {k: torch.cat([m.params[k].detach().double().cpu()[:1] for m in models])
                                           for k in models[0].params},
                          torch.cat([m.filter.double().cpu()[:1] for m in models]))
        z = torch.as_tensor(np.stack([items[i][1] for i in idx]).astype(np.float64))[:, None]  # (S, 1, M)
        with torch.no_grad():
            orbits = stacked.generate(z, transient + n)[:, 0, transient:].numpy()  # (S, n, M)
        for j, i in enumerate(idx):
            out[i] = orbits[j]
    return out


def analyse_fit(model_path: str | Path, n_steps: int = 2000, transient: int = 500, cycles: bool = True,
                n_restarts: int = 100, seed: int = 0, orbit: np.ndarray | None = None) -> FitAnalysis:
    """All features of one fit written by the participant level.

    Parameters
    ----------
    model_path : path
        ``{base}_desc-convssm_model.safetensors``; the other files are found beside it.
    n_steps, transient, cycles, n_restarts, seed, orbit
        See :func:`analyse_model` (``orbit`` from :func:`fit_orbits`).

    The Lyapunov spectrum is the one the fit's evaluation stored in ``metrics.json`` where there is one
    (the same orbits the fit's ``lyapunov_max`` comes from), else it is computed here.

    Returns
    -------
    FitAnalysis
        ``features`` also holds ``dstsp`` and ``dh`` (from metrics.json), and the peak frequency and
        autocorrelation time of the saved generated series (``gen_*``) and of the data (``data_*``).

    Raises
    ------
    OSError, ValueError, KeyError
        A missing or unreadable file.
    """
    paths = fit_paths(model_path)
    model = ConvSSM.load(paths["model"])
    metrics = json.loads(paths["metrics"].read_text())
    z0 = start_state(read_tsv(paths["generated_latent"]))
    x_gen = read_tsv(paths["generated_obs"])  # (T, N)
    res = analyse_model(model, z0, n_steps, transient, cycles, n_restarts, seed, stored_spectrum(metrics, model),
                        orbit)
    tr = res.tr
    f = res.features
    for key in ("dstsp", "dh", "dstsp_test", "dh_test", "pe_test"):
        v = metrics.get(key)
        f[key] = float(v) if isinstance(v, (int, float)) else float("nan")
    f["train_diverged"] = float(metrics.get("status", "ok") != "ok")
    if np.isfinite(x_gen).all() and x_gen.std(0).min() > 0:  # the generated series beside the data
        f["gen_peak_freq_hz"] = float(np.median(peak_frequencies(x_gen, tr)))
        f["gen_autocorr_time_s"] = float(np.nanmedian(autocorrelation_time(x_gen, tr)))
    else:
        f["gen_peak_freq_hz"] = f["gen_autocorr_time_s"] = float("nan")
    if paths["data"].is_file():
        x = read_tsv(paths["data"])
        x = x[np.isfinite(x).all(1)]
        if len(x) > 2 and x.std(0).min() > 0:
            f["data_peak_freq_hz"] = float(np.median(peak_frequencies(x, tr)))
            f["data_autocorr_time_s"] = float(np.nanmedian(autocorrelation_time(x, tr)))
    res.paths = paths
    return res

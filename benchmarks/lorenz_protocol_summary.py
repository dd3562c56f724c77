"""Floors and summaries of ``lorenz_protocol.py`` (issue 13): the estimators' floors from independent simulated
stretches of the true system, the per-group mean and median over seeds, and the printed table."""
from __future__ import annotations

import numpy as np

from dsr.analysis.dstsp import dstsp_bins
from dsr.signal.convolution import convolve_np
from reference_results import lorenz63_simulate

LAMBDA_REF = 0.9056  # Lorenz-63 λ_max per Lorenz time unit
DT = 0.01  # Lorenz time per sample of lorenz63.npy


def _floor_summary(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def floors(L: np.ndarray, h: np.ndarray, g1_len: int, g2_truth: np.ndarray, recordings: dict,
           n_sims: int, sim_steps: int, g0: bool = False) -> dict:
    """The estimators' floors from independent simulated trajectories (never a step shared with L).

    G1 BOLD: each recording against an independent trajectory through the same HRF plus the same noise
    level; G1 latent: the clean latent under the recording against an independent latent stretch;
    G2: the 90 000-step truth against independent 90 000-step stretches; ``g0``: the series itself (no filter,
    no noise) against independent stretches of its length.
    """
    K = len(h)
    sims = lorenz63_simulate(max(sim_steps, g1_len + K, len(g2_truth)), n_sims, seed=2024)  # (J, n, 3)
    rng = np.random.default_rng(99)
    out = {}
    for (length, nz), x in recordings.items():
        if length != g1_len:
            continue
        bold = [convolve_np(sim[:length + K], h)[K:] + nz * rng.standard_normal((length, 3)) for sim in sims]
        out[f"G1_bold_noise{nz:g}"] = _floor_summary([dstsp_bins(x, b) for b in bold])
    if g0:
        x = next(iter(recordings.values()))
        return {"G0": _floor_summary([dstsp_bins(x, _as_truth_units(sim[:len(x)], x)) for sim in sims])}
    truth = L[K:K + g1_len]
    out["G1_latent"] = _floor_summary([dstsp_bins(truth, _as_truth_units(sim[:g1_len], truth)) for sim in sims])
    out["G2_latent_90000"] = _floor_summary([dstsp_bins(g2_truth, _as_truth_units(sim[:len(g2_truth)], g2_truth))
                                             for sim in sims])
    return out


def _as_truth_units(a: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """A series standardised by the truth's mean and SD, as ``dstsp_latent_units`` compares (a is already
    in the units of lorenz63.npy)."""
    mu, sd = truth.mean(0), truth.std(0)
    return (a - mu) / sd


def _stats(values) -> dict:
    v = np.asarray([np.inf if x is None else x for x in values], dtype=float)
    fin = v[np.isfinite(v)]
    return {"mean": float(v.mean()) if v.size else float("nan"), "median": float(np.median(v)) if v.size else float("nan"),
            "mean_finite": float(fin.mean()) if fin.size else float("nan"), "n_finite": int(fin.size), "n": int(v.size)}


def summarise(fits: list[dict], rows: list[dict], fl: dict, g2_denominator: dict) -> dict:
    """Mean and median over seeds per group, with the floors beside them."""
    groups: dict = {}
    for f, r in zip(fits, rows):
        key = (f["part"], f["length"], f["noise"], f["loss_states"], f.get("alpha"), f.get("pick"), f.get("targets"))
        groups.setdefault(key, []).append(r)
    out = {}
    for (part, length, nz, ls, al, pick, tg), rs in groups.items():
        lam = np.array([r["lyapunov_max"] for r in rs], dtype=float) / DT  # per Lorenz time unit
        g = {"part": part, "length": length, "noise": nz, "loss_states": ls, "n_fits": len(rs),
             "n_ok": sum(r["status"] == "ok" for r in rs),
             "lyapunov_per_lorenz_time": {"median": float(np.nanmedian(lam)), "mean": float(np.nanmean(lam)),
                                          "rel_error_median": float(abs(np.nanmedian(lam) - LAMBDA_REF) / LAMBDA_REF)}}
        for k in ("dstsp", "dstsp_latent_units", "dstsp_latent", "dh_latent", "dh", "pe_test"):
            g[k] = _stats([r.get(k) for r in rs])
        if part == "G0":
            g["floor_dstsp"] = g["floor_dstsp_latent_units"] = fl.get("G0")
            name = "G0 no HRF"
        elif part == "G1":
            g["floor_dstsp"] = fl.get(f"G1_bold_noise{nz:g}")
            g["floor_dstsp_latent_units"] = fl.get("G1_latent")
            name = f"G1 σ{nz:g}"
        else:
            den = g2_denominator[length]
            ratios = [r["dstsp_latent_units"] / den for r in rs]
            g["training_stretch_vs_truth"] = den
            g["R"] = _stats(ratios)
            g["floor_dstsp_latent_units"] = fl.get("G2_latent_90000")
            name = f"G2 n_train {int(np.floor(0.75 * length))}"
        if al is not None:
            g["alpha"] = al
            name = f"{name} α{al:g}"
        if tg is not None:  # training targets other than the Wiener deconvolution
            g["targets"] = tg
            name = f"{name} {tg}"
        if pick is not None:
            g["pick"] = pick
            g["selected_epoch"] = _stats([r.get("selected_epoch") for r in rs])
            ls = f"{ls} {pick}"
        out[f"{name} {ls}"] = g
    return out


def table(summary: dict) -> str:
    """A short text table: one line per group."""
    lines = [f"{'group':<36} {'D_stsp BOLD mean/med (floor)':<30} {'latent units mean/med (floor)':<31} "
             f"{'λ/Lorenz t':<10} {'R med':<6} ok"]
    for name, g in summary.items():
        fd, fl = g.get("floor_dstsp"), g.get("floor_dstsp_latent_units")
        bold = f"{g['dstsp']['mean']:.3g}/{g['dstsp']['median']:.3g}" + (f" ({fd['median']:.3g})" if fd else "")
        lat = (f"{g['dstsp_latent_units']['mean']:.3g}/{g['dstsp_latent_units']['median']:.3g}"
               + (f" ({fl['median']:.3g})" if fl else ""))
        r = f"{g['R']['median']:.3g}" if "R" in g else "-"
        lines.append(f"{name:<36} {bold:<30} {lat:<31} {g['lyapunov_per_lorenz_time']['median']:<10.4g} {r:<6} "
                     f"{g['n_ok']}/{g['n_fits']}")
    return "\n".join(lines)

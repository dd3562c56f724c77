"""Floors and summaries of ``lorenz_protocol.py`` (issue 13): the estimators' floors from independent simulated
stretches of the true system, the per-group mean and median over seeds, and the printed table.

``python benchmarks/lorenz_protocol_summary.py --lyapunov-floor [--fits N]`` prints the λ_max floor alone (JSON);
``--lyapunov-floor --add-to FILE…`` adds it to earlier result files of ``lorenz_protocol.py``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dsr.analysis.dstsp import dstsp_bins
from dsr.analysis.lyapunov import lyapunov_spectrum
from dsr.signal.convolution import convolve_np
from reference_results import LORENZ_BETA as BETA
from reference_results import LORENZ_RHO as RHO
from reference_results import LORENZ_SIGMA as SIGMA
from reference_results import lorenz63_simulate, lorenz_rhs, lorenz_rk4_step

LAMBDA_REF = 0.9056  # Lorenz-63 λ_max per Lorenz time unit
DT = 0.01  # Lorenz time per sample of lorenz63.npy


def lorenz_rhs_jacobian(x: torch.Tensor, sigma: float = SIGMA, rho: float = RHO, beta: float = BETA) -> torch.Tensor:
    """Jacobian of :func:`reference_results.lorenz_rhs` (its σ, ρ, β): x (B, 3) -> (B, 3, 3)."""
    a, b, c = x.unbind(1)  # (B,) each
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    rows = [[-sigma * one, sigma * one, zero], [rho - c, -one, -a], [b, a, -beta * one]]
    return torch.stack([torch.stack(r, 1) for r in rows], 1)  # (B, 3, 3)


def lorenz_rk4_jacobian(x: torch.Tensor, **params) -> torch.Tensor:
    """Exact Jacobian of :func:`reference_results.lorenz_rk4_step` (dt 0.01; ``params``: σ, ρ, β) by the chain rule
    through its four stages: (B, 3) -> (B, 3, 3)."""
    eye = torch.eye(3, dtype=x.dtype).expand(len(x), 3, 3)  # (B, 3, 3)
    k1 = lorenz_rhs(x, **params)
    x2 = x + 0.5 * DT * k1
    k2 = lorenz_rhs(x2, **params)
    x3 = x + 0.5 * DT * k2
    x4 = x + DT * lorenz_rhs(x3, **params)
    j1 = lorenz_rhs_jacobian(x, **params)  # (B, 3, 3) dk1/dx
    j2 = lorenz_rhs_jacobian(x2, **params) @ (eye + 0.5 * DT * j1)
    j3 = lorenz_rhs_jacobian(x3, **params) @ (eye + 0.5 * DT * j2)
    j4 = lorenz_rhs_jacobian(x4, **params) @ (eye + DT * j3)
    return eye + DT / 6.0 * (j1 + 2 * j2 + 2 * j3 + j4)  # (B, 3, 3)


def lyapunov_floor(n_fits: int, orbits: int, steps: int, transient: int, seed: int = 7,
                   spin_up: int = 3000, params: dict | None = None) -> dict:
    """λ_max per Lorenz time unit of the true system through the evaluation's own estimator.

    Each of ``n_fits`` pseudo-fits is the median over ``orbits`` orbits of
    :func:`dsr.analysis.lyapunov.lyapunov_spectrum` (``steps`` after ``transient``, as ``eval.lyap_*``), like a
    fit's ``lyapunov_max``. The orbits start on the attractor (``spin_up`` RK4 steps from random states). The
    spread is the estimator's own at these settings; the median is what a perfect model would score.
    ``params`` (σ, ρ, β) gives the same for another member of the Lorenz family.
    """
    p = params or {}
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n_fits * orbits, 3, generator=gen, dtype=torch.float64) + torch.tensor([1.0, 1.0, 20.0],
                                                                                            dtype=torch.float64)
    for _ in range(spin_up):
        z = lorenz_rk4_step(z, **p)  # (F*O, 3)
    lam = lyapunov_spectrum(lambda v: lorenz_rk4_step(v, **p), lambda v: lorenz_rk4_jacobian(v, **p), z,
                            n_steps=steps, transient=transient, n_exponents=1)[:, 0] / DT  # (F*O,) per Lorenz t
    per_fit = lam.view(n_fits, orbits).median(dim=1).values.numpy()  # (F,)
    return dict(_floor_summary(per_fit), mean=float(per_fit.mean()), sd=float(per_fit.std()), steps=steps,
                transient=transient, orbits=orbits)


def _floor_summary(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def floors(L: np.ndarray, h: np.ndarray, g1_len: int, g2_truth: np.ndarray, recordings: dict,
           n_sims: int, sim_steps: int, g0: bool = False, eval_cfg=None, lyap_fits: int = 20) -> dict:
    """The estimators' floors from independent simulated trajectories (never a step shared with L).

    G1 BOLD: each recording against an independent trajectory through the same HRF plus the same noise
    level; G1 latent: the clean latent under the recording against an independent latent stretch;
    G2: the 90 000-step truth against independent 90 000-step stretches; ``g0``: the series itself (no filter,
    no noise) against independent stretches of its length. With ``eval_cfg``, also ``lyapunov``:
    :func:`lyapunov_floor` at its ``lyap_*`` settings for ``lyap_fits`` pseudo-fits.
    """
    K = len(h)
    sims = lorenz63_simulate(max(sim_steps, g1_len + K, len(g2_truth)), n_sims, seed=2024)  # (J, n, 3)
    rng = np.random.default_rng(99)
    lyap = {} if eval_cfg is None else {"lyapunov": lyapunov_floor(lyap_fits, eval_cfg.lyap_orbits,
                                                                     eval_cfg.lyap_steps, eval_cfg.lyap_transient)}
    out = dict(lyap)
    for (length, nz), x in recordings.items():
        if length != g1_len:
            continue
        bold = [convolve_np(sim[:length + K], h)[K:] + nz * rng.standard_normal((length, 3)) for sim in sims]
        out[f"G1_bold_noise{nz:g}"] = _floor_summary([dstsp_bins(x, b) for b in bold])
    if g0:
        x = next(iter(recordings.values()))
        return {**lyap, "G0": _floor_summary([dstsp_bins(x, _as_truth_units(sim[:len(x)], x)) for sim in sims])}
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
        if "lyapunov" in fl:  # the same estimator on the true system
            g["floor_lyapunov"] = fl["lyapunov"]
            g["lyapunov_per_lorenz_time"]["rel_error_median_vs_floor"] = float(
                abs(np.nanmedian(lam) - fl["lyapunov"]["median"]) / fl["lyapunov"]["median"])
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
             f"{'λ/Lorenz t (floor)':<18} {'R med':<6} ok"]
    for name, g in summary.items():
        fd, fl = g.get("floor_dstsp"), g.get("floor_dstsp_latent_units")
        bold = f"{g['dstsp']['mean']:.3g}/{g['dstsp']['median']:.3g}" + (f" ({fd['median']:.3g})" if fd else "")
        lat = (f"{g['dstsp_latent_units']['mean']:.3g}/{g['dstsp_latent_units']['median']:.3g}"
               + (f" ({fl['median']:.3g})" if fl else ""))
        r = f"{g['R']['median']:.3g}" if "R" in g else "-"
        flam = g.get("floor_lyapunov")
        lam = f"{g['lyapunov_per_lorenz_time']['median']:.4g}" + (f" ({flam['median']:.4g})" if flam else "")
        lines.append(f"{name:<36} {bold:<30} {lat:<31} {lam:<18} {r:<6} {g['n_ok']}/{g['n_fits']}")
    return "\n".join(lines)


def add_lyapunov_floor(path: Path) -> dict:
    """Add the λ_max floor to a result file of ``lorenz_protocol.py`` written before it had one (in place): the
    file's own ``eval.lyap_*`` settings and seed count; the summary is recomputed from its rows."""
    res = json.loads(path.read_text())
    e = res["config"]["eval"]
    res["floors"]["lyapunov"] = lyapunov_floor(res["setup"]["seeds"], e["lyap_orbits"], e["lyap_steps"],
                                               e["lyap_transient"])
    den = {int(length): v for length, v in res["g2_training_stretch_vs_truth"].items()}  # G2 recording length
    res["summary"] = summarise(res["fits"], res["fits"], res["floors"], den)
    path.write_text(json.dumps(res, indent=2, default=float))
    return res


def main(argv=None) -> dict:
    """``--lyapunov-floor``: print :func:`lyapunov_floor` at the evaluation's default settings as JSON;
    ``--add-to FILE…``: :func:`add_lyapunov_floor` for each file and print its table."""
    from dsr.config_sections import EvalConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lyapunov-floor", action="store_true", required=True)
    p.add_argument("--fits", type=int, default=40, help="pseudo-fits (each the median over eval.lyap_orbits orbits)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--add-to", type=Path, nargs="+", default=None, metavar="FILE",
                   help="result files of lorenz_protocol.py to add the floor to (in place)")
    args = p.parse_args(argv)
    if args.add_to:
        for path in args.add_to:
            print(f"{path}\n{table(add_lyapunov_floor(path)['summary'])}")
        return {}
    e = EvalConfig()
    res = lyapunov_floor(args.fits, e.lyap_orbits, e.lyap_steps, e.lyap_transient, seed=args.seed)
    res["truth"] = LAMBDA_REF
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()

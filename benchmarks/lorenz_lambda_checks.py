"""Where G1's λ_max overshoot could come from (issue 13): two checks against the true system, on the CPU.

``family``: members of the Lorenz family (ρ, σ or β changed) through the G1 recording's HRF and noise. For each,
λ_max through the evaluation's own estimator and settings (like ``lorenz_protocol_summary.lyapunov_floor``) and
the BOLD D_stsp (30 bins) of independent trajectories against the G1 recording: how much BOLD geometry a given
change in λ_max costs when the change comes from the equations.

``spectra``: the latent orbits of the G1 fits in a ``lorenz_protocol.py`` model file against the clean latent
under the recording: power (Welch) in the bands the HRF passes (|H(f)|² > 0.5 of its DC gain), damps (0.01–0.5)
and stops (< 0.01), as model / truth, and the x-lobe residence times; each beside the fits' λ_max from the run's
result file. Extra chaos that the HRF hides would show as extra power in the stop band.

    python benchmarks/lorenz_lambda_checks.py family [--sims 4] [--out F.json]
    python benchmarks/lorenz_lambda_checks.py spectra RUN_models.safetensors RUN.json [--noise 0.01] [--out F.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.signal import welch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lorenz_protocol_summary import lyapunov_floor  # noqa: E402
from reference_results import lorenz63_simulate, lorenz_recording  # noqa: E402

from dsr.analysis.dstsp import dstsp_bins  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import ConvSSM  # noqa: E402
from dsr.signal.convolution import convolve_np  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402

SHARED = Path(os.environ.get("DSR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FAMILY = [{}, {"rho": 30.0}, {"rho": 32.0}, {"rho": 35.0}, {"sigma": 11.0}, {"sigma": 12.0}, {"beta": 3.0}]


def family(L: np.ndarray, length: int, noise: float, members: list[dict], sims: int, lyap_fits: int,
           seed: int = 11) -> list[dict]:
    """Per Lorenz-family member: λ_max (median of ``lyap_fits`` pseudo-fits at the lorenz63 preset's eval.lyap_*)
    and the BOLD D_stsp of ``sims`` independent trajectories (own standardisation, like ``lorenz63.npy``) through
    the HRF plus noise σ ``noise`` against the G1 recording of ``length`` steps."""
    x, h = lorenz_recording(L, length, noise)  # (T, 3)
    K, e = len(h), load_config("lorenz63").eval
    rng = np.random.default_rng(seed)
    rows = []
    for params in members:
        lam = lyapunov_floor(lyap_fits, e.lyap_orbits, e.lyap_steps, e.lyap_transient, params=params)
        traj = lorenz63_simulate(length + K, sims, seed=seed, params=params)  # (J, T+K, 3)
        d = [dstsp_bins(x, convolve_np(t, h)[K:] + noise * rng.standard_normal((length, 3))) for t in traj]
        rows.append({"params": params, "lyapunov_max": lam["median"], "lyapunov_sd": lam["sd"], "dstsp": d,
                     "dstsp_median": float(np.median(d))})
        print(f"{params or 'σ 10, ρ 28, β 8/3'}: λ_max {lam['median']:.3f}, BOLD D_stsp median "
              f"{np.median(d):.3f} ({', '.join(f'{v:.3f}' for v in d)})", flush=True)
    return rows


def hrf_bands(h: np.ndarray, nperseg: int) -> dict[str, np.ndarray]:
    """Welch frequency masks (nperseg // 2 + 1,) by the HRF's power gain relative to its DC gain."""
    gain = np.abs(np.fft.rfft(h, n=nperseg)) ** 2
    gain = gain / gain[0]
    return {"pass": gain > 0.5, "damped": (gain <= 0.5) & (gain > 0.01), "stop": gain <= 0.01}


def band_power_ratios(orbit: np.ndarray, truth: np.ndarray, bands: dict[str, np.ndarray], nperseg: int) -> dict:
    """Power of ``orbit`` (T, N) over that of ``truth`` (T', N) in each band, summed over dimensions."""
    _, p = welch(orbit, nperseg=nperseg, axis=0)  # (F, N)
    _, q = welch(truth, nperseg=nperseg, axis=0)  # (F, N)
    return {k: float(p[m].sum() / q[m].sum()) for k, m in bands.items()}


def lobe_residence(orbit: np.ndarray, min_steps: int = 20) -> dict:
    """Residence in one lobe (sign of the first coordinate): mean steps, coefficient of variation, switches per
    10 000 steps; stays shorter than ``min_steps`` (chatter at the switching plane) are ignored."""
    switch = np.flatnonzero(np.diff(np.sign(orbit[:, 0])) != 0)
    r = np.diff(switch)
    r = r[r >= min_steps]
    if len(r) < 2:
        return {"mean": float("nan"), "cv": float("nan"), "per_10000": 0.0}
    return {"mean": float(r.mean()), "cv": float(r.std() / r.mean()), "per_10000": float(len(r) / len(orbit) * 1e4)}


def latent_orbits(model: ConvSSM, start: np.ndarray, steps: int, transient: int = 2000, seed: int = 0) -> np.ndarray:
    """Deterministic latent orbits of the S fits of ``model`` (:meth:`ConvSSM.generate`, float64), each from
    ``start`` (M,) plus N(0, 0.05²), after ``transient`` steps: (S, steps, M)."""
    S, M = model.n_subjects, len(start)
    z0 = torch.as_tensor(start, dtype=torch.float64) + 0.05 * torch.randn(
        S, M, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)  # (S, M)
    Z = model.to(dtype=torch.float64).generate(z0[:, None], transient + steps + 1)  # (S, 1, T+steps+1, M)
    return Z[:, 0, transient + 1:].numpy()  # (S, steps, M)


def spectra(models: Path, result: Path, L: np.ndarray, noise: float, steps: int, nperseg: int) -> dict:
    """Band power ratios and lobe residence of the G1 fits at ``noise`` in ``models`` against the clean latent,
    beside each fit's λ_max from ``result`` (same pick: ``_last_models`` files go with the 'last' rows)."""
    base = ConvSSM.load(models)
    fits = base.spec.meta["fits"]
    idx = [i for i, f in enumerate(fits) if f["part"] == "G1" and f["noise"] == noise]
    if not idx:
        raise SystemExit(f"{models}: no G1 fits at noise {noise}")
    pick = "last" if models.name.endswith("_last_models.safetensors") else "selected"
    lam = {r["seed"]: r["lyapunov_max"] for r in json.loads(result.read_text())["fits"]
           if r["part"] == "G1" and r["noise"] == noise and r["pick"] == pick}
    x, h = lorenz_recording(L, fits[idx[0]]["length"], noise)
    truth = L[len(h):len(h) + len(x)]  # (T, 3) the clean latent under the recording
    bands = hrf_bands(h, nperseg)
    mine = ConvSSM(base.spec, {k: v[idx] for k, v in base.params.items()}, base.filter[idx])  # the G1 fits
    orbits = latent_orbits(mine, truth[0], steps)  # (S, steps, M)
    rows = []
    for j, i in enumerate(idx):
        o = orbits[j]
        bounded = bool(np.isfinite(o).all() and np.abs(o).max() < 50)
        rows.append({"seed": fits[i]["seed"], "lyapunov_max_per_step": lam.get(fits[i]["seed"]), "bounded": bounded,
                     **({"power": band_power_ratios(o, truth, bands, nperseg), "residence": lobe_residence(o)}
                        if bounded else {})})
    ok = [r for r in rows if r["bounded"] and r["lyapunov_max_per_step"] is not None]
    lams = np.array([r["lyapunov_max_per_step"] for r in ok])
    _, q = welch(truth, nperseg=nperseg, axis=0)  # (F, 3)
    summary = {"bounded": len(ok), "n": len(rows), "lyapunov_max_median_per_lorenz_t": float(np.median(lams) / 0.01),
               "truth_power_share": {k: float(q[m].sum() / q.sum()) for k, m in bands.items()},
               "truth_residence": lobe_residence(truth)}
    for k in bands:
        v = np.array([r["power"][k] for r in ok])
        summary[f"power_{k}"] = {"median": float(np.median(v)), "q25": float(np.percentile(v, 25)),
                                 "q75": float(np.percentile(v, 75)),
                                 "spearman_with_lambda": float(spearmanr(v, lams)[0]) if len(v) > 2 else None}
    for k in ("mean", "cv", "per_10000"):
        summary[f"residence_{k}_median"] = float(np.nanmedian([r["residence"][k] for r in ok]))
    return {"models": str(models), "result": str(result), "noise": noise, "steps": steps, "nperseg": nperseg,
            "summary": summary, "fits": rows}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("family")
    f.add_argument("--sims", type=int, default=4, help="independent trajectories per member")
    f.add_argument("--lyap-fits", type=int, default=20)
    f.add_argument("--length", type=int, default=0, help="recording length (0: all of lorenz63.npy)")
    f.add_argument("--noise", type=float, default=0.01)
    f.add_argument("--members", type=int, default=len(FAMILY), help="the first N of the built-in list")
    s = sub.add_parser("spectra")
    s.add_argument("models", type=Path)
    s.add_argument("result", type=Path)
    s.add_argument("--noise", type=float, default=0.01)
    s.add_argument("--steps", type=int, default=60000)
    s.add_argument("--nperseg", type=int, default=4096)
    for p in (f, s):
        p.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    L = np.load(SHARED / "lorenz63.npy")
    if args.cmd == "family":
        length = args.length or len(L) - len(spm_hrf(0.2))  # all of it, as lorenz_protocol.py's G1
        res = {"length": length, "noise": args.noise,
               "rows": family(L, length, args.noise, FAMILY[:args.members], args.sims, args.lyap_fits)}
    else:
        res = spectra(args.models, args.result, L, args.noise, args.steps, args.nperseg)
        print(json.dumps(res["summary"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()

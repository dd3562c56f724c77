"""Simulated cohorts (issue 14, "Done when" 4): how a run's seeds are combined, and what λ_max could show.

Reads ``group_recovery.py`` outputs (each folder holding ``runs.tsv`` — the group level's one row per fit —
and the dataset's ``participants.tsv``, or the ``ds/`` and ``derivatives/group/`` folders of a run) and
reports, per cohort, Spearman ρ between the hidden Lorenz-96 forcing F and the fits' ``lyapunov_max``
combined over each subject's seeds four ways (mean: the product's ``seeds.combine = "mean"``; median;
mean of the middle six of ten; the seed with the lowest held-out D_stsp: ``"best"``), the spread over seeds
beside the spread between subjects, and the generator's true largest exponent at each F: Lorenz-96 on a ring
of the cohort's size, integrated with RK4 together with one tangent vector (Benettin), per model time unit
and per volume (``dsr.simulate.dynamics.lorenz96``: 8 s per model time unit).

    python benchmarks/sim_cohort_summary.py benchmarks/results/s12/cohort/d* --out benchmarks/results/s12/cohort_summary.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.simulate.dynamics import _l96  # noqa: E402  the generator's own right-hand side

SECONDS_PER_UNIT = 8.0  # dsr.simulate.dynamics.lorenz96's default


def _tangent(x, v):
    """Jacobian of Lorenz-96 at x applied to v, (N,)."""
    return (np.roll(v, -1) - np.roll(v, 2)) * np.roll(x, 1) + (np.roll(x, -1) - np.roll(x, 2)) * np.roll(v, 1) - v


def l96_lyapunov(forcing: float, n: int, units: float = 300.0, h: float = 0.01, seed: int = 0) -> float:
    """Largest Lyapunov exponent per model time unit of the n-variable Lorenz-96 ring at this forcing."""
    rng = np.random.default_rng(seed)
    x = forcing + rng.normal(0.0, 0.5, n)
    v = rng.normal(size=n)
    v /= np.linalg.norm(v)
    total = 0.0
    for i in range(int((units + 100.0) / h)):  # the first 100 units are a transient
        k1, l1 = _l96(x, forcing), _tangent(x, v)
        x2, v2 = x + 0.5 * h * k1, v + 0.5 * h * l1
        k2, l2 = _l96(x2, forcing), _tangent(x2, v2)
        x3, v3 = x + 0.5 * h * k2, v + 0.5 * h * l2
        k3, l3 = _l96(x3, forcing), _tangent(x3, v3)
        x4, v4 = x + h * k3, v + h * l3
        k4, l4 = _l96(x4, forcing), _tangent(x4, v4)
        x, v = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), v + h / 6 * (l1 + 2 * l2 + 2 * l3 + l4)
        norm = np.linalg.norm(v)
        v /= norm
        if i * h >= 100.0:
            total += np.log(norm)
    return total / units


def _files(folder: Path) -> tuple[Path, Path]:
    for runs, parts in ((folder / "runs.tsv", folder / "participants.tsv"),
                        (folder / "derivatives" / "group" / "runs.tsv", folder / "ds" / "participants.tsv")):
        if runs.is_file() and parts.is_file():
            return runs, parts
    raise SystemExit(f"{folder}: no runs.tsv and participants.tsv")


def summarise(folder: Path, tr: float, n_regions: int, cache: dict, units: float = 300.0) -> dict:
    """ρ(λ_max, F) per way of combining seeds, the spreads, and the true exponent per subject of one cohort."""
    runs_path, parts_path = _files(folder)
    runs = pd.read_csv(runs_path, sep="\t")
    forcing = pd.read_csv(parts_path, sep="\t").set_index("participant_id")["forcing"]
    lam = runs.groupby("participant_id")["lyapunov_max"]
    best = runs.loc[runs.groupby("participant_id")["dstsp_test"].idxmin()].set_index("participant_id")
    combined = {"mean": lam.mean(), "median": lam.median(),
                "trimmed": lam.apply(lambda v: np.sort(v.to_numpy())[len(v) // 5:len(v) - len(v) // 5].mean()),
                "best_dstsp_test": best["lyapunov_max"]}
    sd = lam.std()
    subjects = []
    for sub, f in forcing.sort_values().items():
        key = (round(float(f), 6), n_regions)
        if key not in cache:
            cache[key] = l96_lyapunov(float(f), n_regions, units=units)
        subjects.append({"participant_id": sub, "forcing": float(f), "lambda_mean": float(combined["mean"][sub]),
                         "lambda_median": float(combined["median"][sub]), "lambda_sd": float(sd[sub]),
                         "true_lambda_per_unit": cache[key],
                         "true_lambda_per_volume": cache[key] * tr / SECONDS_PER_UNIT})
    true = pd.Series({s["participant_id"]: s["true_lambda_per_unit"] for s in subjects})
    return {"folder": str(folder), "fits_per_subject": int(lam.size().max()),
            "rho": {k: float(spearmanr(v.loc[forcing.index], forcing)[0]) for k, v in combined.items()},
            "rho_true_lambda_vs_forcing": float(spearmanr(true.loc[forcing.index], forcing)[0]),
            "rho_mean_vs_true_lambda": float(spearmanr(combined["mean"].loc[true.index], true)[0]),
            "sd_within_subjects": float(sd.mean()), "sd_between_subject_means": float(combined["mean"].std()),
            "subjects": subjects}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tr", type=float, default=1.0, help="seconds per volume (group_recovery.py's --tr)")
    ap.add_argument("--regions", type=int, default=6, help="ring size (group_recovery.py's --regions)")
    ap.add_argument("--units", type=float, default=300.0, help="model time units of the true exponent's orbit")
    args = ap.parse_args(argv)
    cache, rows = {}, []
    for folder in args.folders:
        res = summarise(folder, args.tr, args.regions, cache, args.units)
        rows.append(res)
        print(f"{folder}: ρ(λ_max, F) " + ", ".join(f"{k} {v:.3f}" for k, v in res["rho"].items())
              + f"; true λ vs F {res['rho_true_lambda_vs_forcing']:.3f}; "
              f"sd over seeds {res['sd_within_subjects']:.4f},"
              f" between subjects {res['sd_between_subject_means']:.4f}", flush=True)
    out = {"tr": args.tr, "regions": args.regions, "units": args.units, "cohorts": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

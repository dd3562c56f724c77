"""Selected against last epoch, per group and paired per seed, from a ``lorenz_protocol.py`` JSON written with
``--train select_every=k`` (issue 13, checkpoint selection).

    python benchmarks/selection_summary.py benchmarks/results/g1s7/lorenz_protocol_g1s7_select.json

Per group (part, noise, α, loss_states): mean (finite) / median BOLD D_stsp against the recording and latent
D_stsp in data units for the selected and the last epoch's parameters, seeds ≤ 0.30 (BOLD), seeds where the
selected parameters score lower than the last ones (paired, same seed), the median selected epoch and the
median λ_max per Lorenz time unit, with the floors beside them.
"""
from __future__ import annotations

import json
import sys

import numpy as np


def _mm(v) -> str:
    v = np.asarray([np.inf if x is None else x for x in v], dtype=float)
    fin = v[np.isfinite(v)]
    return f"{fin.mean() if fin.size else np.inf:.3g} / {np.median(v):.3g}"


def summary_rows(res: dict) -> list[str]:
    """One markdown row per group of the run."""
    groups: dict = {}
    for f in res["fits"]:
        key = (f["part"], f.get("n_train", f["length"]), f["noise"], f.get("alpha"), f["loss_states"])
        groups.setdefault(key, {}).setdefault(f["pick"], []).append(f)
    rows = ["| group | BOLD D_stsp mean / median: selected | last | ≤ 0.30 sel / last | sel < last (BOLD) | "
            "latent units mean / median: selected | last | selected epoch (median) | λ_max sel / last | floors BOLD, latent |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for (part, n, nz, al, ls), picks in groups.items():
        sel = sorted(picks["selected"], key=lambda f: f["seed"])
        last = sorted(picks["last"], key=lambda f: f["seed"])
        b_s = np.array([np.inf if f["dstsp"] is None else f["dstsp"] for f in sel])
        b_l = np.array([np.inf if f["dstsp"] is None else f["dstsp"] for f in last])
        lam = [np.nanmedian(np.array([f["lyapunov_max"] for f in g], dtype=float)) / 0.01 for g in (sel, last)]
        fl = res["floors"].get(f"G1_bold_noise{nz:g}", {}).get("median", float("nan")) if part == "G1" else float("nan")
        fl_l = res["floors"].get("G1_latent" if part == "G1" else "G2_latent_90000", {}).get("median", float("nan"))
        name = f"{part} {'σ' + format(nz, 'g') if part == 'G1' else 'n_train ' + str(n)} α{al} {ls}"
        rows.append(f"| {name} | {_mm(b_s)} | {_mm(b_l)} | {int(np.sum(b_s <= 0.3))} / {int(np.sum(b_l <= 0.3))} | "
                    f"{int(np.sum(b_s < b_l))} / {len(sel)} | {_mm([f['dstsp_latent_units'] for f in sel])} | "
                    f"{_mm([f['dstsp_latent_units'] for f in last])} | "
                    f"{np.median([f['selected_epoch'] for f in sel]):.0f} | {lam[0]:.3f} / {lam[1]:.3f} | "
                    f"{fl:.3g}, {fl_l:.3g} |")
    return rows


if __name__ == "__main__":
    for path in sys.argv[1:]:
        res = json.loads(open(path).read())
        print(path, res["seconds"])
        print("\n".join(summary_rows(res)))

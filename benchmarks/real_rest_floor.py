"""Does a longer training part leave a nonlinear model room on real rest fMRI? (issue 14; CPU, seconds)

The product's own held-out protocol (:mod:`dsr.analysis.linear_reference`, as the subject report scores it):
each z-scored recording is split 3:1, VAR(1) is fitted to the training part and its samples are scored against
the test part, and so are stretches of the training part itself (the data floor). Where the floor is not
clearly below VAR(1), no model can be expected to beat VAR(1) there. Two splits of the same recordings:
the whole run (e.g. 1200 volumes: 900 for training) and its two halves (450 for training, the split-half
benchmark's length).

    python benchmarks/real_rest_floor.py .realdata/hcp16 --out benchmarks/results/s12/real_rest_floor.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_rest import load_folder  # noqa: E402

from dsr.analysis.linear_reference import data_floor, var1_reference  # noqa: E402
from dsr.config import load_config  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="rest_fmri", help="whose eval settings score (default rest_fmri)")
    ap.add_argument("--samples", type=int, default=20, help="VAR(1) samples per recording")
    args = ap.parse_args(argv)
    names, xs, tr = load_folder(args.folder, None, None)
    ev = load_config(args.preset).eval
    kw = dict(n_samples=args.samples, n_bins=ev.dstsp_bins, scaling=ev.dstsp_scaling,
              bins_max_dims=ev.bins_max_dims, smoothing=ev.spectrum_smoothing)
    out = {"folder": str(args.folder), "tr": tr, "preset": args.preset, "samples": args.samples, "splits": {}}
    for split in ("whole", "halves"):
        rows = []
        for name, x in zip(names, xs):
            half = len(x) // 2
            parts = [x] if split == "whole" else [x[:half], x[half:2 * half]]
            for i, p in enumerate(parts):
                p = (p - p.mean(0)) / p.std(0)  # z-scored, as the product's extraction leaves a run
                n_train = int(0.75 * len(p))
                ref, _ = var1_reference(p, n_train, tr, seed=0, **kw)
                floor = data_floor(p, n_train, seed=0, **kw)
                rows.append({"subject": name, "part": i + 1, "volumes": len(p), "n_train": n_train,
                             "var1": [ref["dstsp_test"], ref["dh_test"]],
                             "floor": [floor["dstsp_test"], floor["dh_test"]]})
        v, f = np.array([r["var1"] for r in rows]), np.array([r["floor"] for r in rows])
        out["splits"][split] = {
            "n": len(rows), "n_train": rows[0]["n_train"],
            "median_var1": np.median(v, 0).tolist(), "median_floor": np.median(f, 0).tolist(),
            "floor_below_var1": [int((f[:, 0] < v[:, 0]).sum()), int((f[:, 1] < v[:, 1]).sum())], "rows": rows}
        s = out["splits"][split]
        print(f"{split:6s} ({s['n']} recordings, {s['n_train']} training volumes): VAR(1) D_stsp / D_H "
              f"{s['median_var1'][0]:.3f} / {s['median_var1'][1]:.3f}, floor {s['median_floor'][0]:.3f} / "
              f"{s['median_floor'][1]:.3f}; floor below VAR(1): D_stsp {s['floor_below_var1'][0]} / {s['n']}, "
              f"D_H {s['floor_below_var1'][1]} / {s['n']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

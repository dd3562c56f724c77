"""Linear references alone on real rest fMRI halves, with and without a 0.01–0.1 Hz band-pass (CPU, ~1 min).

Same protocol as ``real_rest.py`` (fit on the first 75 % of each half, 20 samples scored against the
other half), without the convSSM: ``python benchmarks/real_rest_linear.py /tmp/hcp16``.
Writes ``benchmarks/results/real_rest/linear_band_pass.json``.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_rest import band_pass, load_folder  # noqa: E402

from dsr.analysis.heldout import score_samples  # noqa: E402
from dsr.models.linear import fit_gaussian, fit_lgssm, fit_var1  # noqa: E402
from dsr.signal.filters import make_filter  # noqa: E402


def main(folder: str) -> dict:
    names, xs, tr = load_folder(Path(folder), None, None)
    h = make_filter("spm", tr)
    out = {}
    for label, band in (("none", None), ("0.01-0.1 Hz", (0.01, 0.1))):
        scores = {k: [] for k in ("var1", "lgssm", "gaussian", "other_half_floor")}
        for x in xs:
            T2 = len(x) // 2
            halves = [x[:T2], x[T2:2 * T2]]
            if band:
                halves = [band_pass(a, tr, band) for a in halves]
            for i in (0, 1):
                train, other = halves[i][:int(0.75 * T2)], halves[1 - i]
                models = {"var1": fit_var1([train], tr), "lgssm": fit_lgssm([train], h, tr), "gaussian": fit_gaussian([train], tr)}
                for name, m in models.items():
                    sc = score_samples(other, m.generate(T2, seed=0, n_samples=20)[0])
                    scores[name].append([sc["dstsp"], sc["dh"]])
                sc = score_samples(other, [halves[i]])
                scores["other_half_floor"].append([sc["dstsp"], sc["dh"]])
        out[label] = {k: {"dstsp_median": float(np.median(np.array(v)[:, 0])), "dh_median": float(np.median(np.array(v)[:, 1]))}
                      for k, v in scores.items()}
    return out


if __name__ == "__main__":
    res = main(sys.argv[1])
    path = Path(__file__).resolve().parent / "results" / "real_rest" / "linear_band_pass.json"
    path.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))

"""Positive control for issue 14: on simulated nonlinear neural-mass BOLD (ALN, ``../shared/data/aln``), do the
fits of ``selection_aln.py`` beat the VAR(1) reference on the held-out test part, and how does the data's own
floor compare? (CPU, ~1 min)

The VAR(1) and the floor are scored as the product's subject report scores them
(:func:`dsr.analysis.linear_reference.var1_reference`, :func:`~dsr.analysis.linear_reference.data_floor`) on the
same prepared series, training part and metric settings (the ``aln`` preset, 10 samples) as the fits'
``dstsp_test`` / ``dh_test`` (per subject: the median over its seeds).

    python benchmarks/aln_linear_reference.py CONV_JSON NOCONV_JSON OUT_JSON
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection_aln import SHARED, _per_subject  # noqa: E402

from dsr.analysis.linear_reference import data_floor, var1_reference  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402


def _counts(scores: np.ndarray, var1: np.ndarray) -> dict:
    """Medians of (n, 2) D_stsp / D_H scores and how often each is below VAR(1)'s."""
    return dict(dstsp_median=float(np.median(scores[:, 0])), dh_median=float(np.median(scores[:, 1])),
                beats_var1_dstsp=int((scores[:, 0] < var1[:, 0]).sum()),
                beats_var1_dh=int((scores[:, 1] < var1[:, 1]).sum()))


def main(conv_json: str, noconv_json: str, out_json: str) -> dict:
    cfg = load_config("aln", eval={"n_rollouts": 10})
    ev = cfg.eval
    kw = dict(n_samples=ev.n_rollouts, n_bins=ev.dstsp_bins, scaling=ev.dstsp_scaling,
              bins_max_dims=ev.bins_max_dims, smoothing=ev.spectrum_smoothing)
    rows = []
    for s in sorted(_per_subject(conv_json, "last", "dstsp_test")):
        sd = prepare_subject(np.load(SHARED / "aln" / "bold" / f"{s}.npy")[:500], spm_hrf(0.5), cfg)
        ref, _ = var1_reference(sd.x, sd.n_train, 0.5, seed=0, **kw)
        fl = data_floor(sd.x, sd.n_train, seed=0, **kw)
        rows.append((s, ref["dstsp_test"], ref["dh_test"], fl["dstsp_test"], fl["dh_test"]))
    refs = np.array([r[1:] for r in rows])  # (n, 4): VAR(1) D_stsp, D_H, floor D_stsp, D_H
    res = {}
    for pick in ("selected", "last"):
        for name, path in (("conv", conv_json), ("noconv", noconv_json)):
            ds, dh = _per_subject(path, pick, "dstsp_test"), _per_subject(path, pick, "dh_test")
            res[f"{name}_{pick}"] = _counts(np.array([[ds[r[0]], dh[r[0]]] for r in rows]), refs[:, :2])
    res["var1"] = dict(dstsp_median=float(np.median(refs[:, 0])), dh_median=float(np.median(refs[:, 1])))
    res["floor"] = _counts(refs[:, 2:], refs[:, :2])
    res["n"] = len(rows)
    print(json.dumps(res, indent=1))
    Path(out_json).write_text(json.dumps({"summary": res, "per_subject": rows}, indent=1))
    return res


if __name__ == "__main__":
    main(*sys.argv[1:4])

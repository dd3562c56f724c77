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
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dsr.config import load_config
from dsr.signal.filters import spm_hrf
from dsr.training.data import prepare_subject
from dsr.analysis.linear_reference import var1_reference, data_floor
SH = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data")) / "aln"
cfg = load_config("aln", eval={"n_rollouts": 10})
ev = cfg.eval
kw = dict(n_samples=ev.n_rollouts, n_bins=ev.dstsp_bins, scaling=ev.dstsp_scaling, bins_max_dims=ev.bins_max_dims,
          smoothing=ev.spectrum_smoothing)
c = json.load(open(sys.argv[1]))
n = json.load(open(sys.argv[2]))
def med(d, pick, key):
    out = {}
    for f in d['fits']:
        out.setdefault(f['subject'], []).append(f[pick][key])
    return {k: float(np.median(v)) for k, v in out.items()}
rows = []
for s in sorted(med(c, 'last', 'dstsp_test')):
    sd = prepare_subject(np.load(SH / 'bold' / f'{s}.npy')[:500], spm_hrf(0.5), cfg)
    ref, _ = var1_reference(sd.x, sd.n_train, 0.5, seed=0, **kw)
    fl = data_floor(sd.x, sd.n_train, seed=0, **kw)
    rows.append((s, ref['dstsp_test'], ref['dh_test'], fl['dstsp_test'], fl['dh_test']))
res = {}
for pick in ('selected', 'last'):
    for name, d in (('conv', c), ('noconv', n)):
        ds, dh = med(d, pick, 'dstsp_test'), med(d, pick, 'dh_test')
        a = np.array([[ds[r[0]], dh[r[0]]] for r in rows])
        v = np.array([[r[1], r[2]] for r in rows])
        res[f'{name}_{pick}'] = dict(dstsp_median=float(np.median(a[:, 0])), dh_median=float(np.median(a[:, 1])),
                                     beats_var1_dstsp=int((a[:, 0] < v[:, 0]).sum()),
                                     beats_var1_dh=int((a[:, 1] < v[:, 1]).sum()))
v = np.array([[r[1], r[2], r[3], r[4]] for r in rows])
res['var1'] = dict(dstsp_median=float(np.median(v[:, 0])), dh_median=float(np.median(v[:, 1])))
res['floor'] = dict(dstsp_median=float(np.median(v[:, 2])), dh_median=float(np.median(v[:, 3])),
                    beats_var1_dstsp=int((v[:, 2] < v[:, 0]).sum()), beats_var1_dh=int((v[:, 3] < v[:, 1]).sum()))
res['n'] = len(rows)
print(json.dumps(res, indent=1))
json.dump({'summary': res, 'per_subject': rows}, open(sys.argv[3], 'w'), indent=1)

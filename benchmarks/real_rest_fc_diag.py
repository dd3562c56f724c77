"""How much of held-out D_stsp on real rest fMRI is the covariance (FC) of the generated states?

The split-half protocol of ``real_rest.py`` (halves, each model trained on the first 75 % of its half, scored
against the other half with GMM D_stsp σ² 1 and D_H σ 1) for the linear references and for static Gaussians
whose correlations are shrunk towards zero: Σ_a = a Σ + (1 − a) diag(Σ), Σ the training part's covariance
(a = 1: the static Gaussian; a = 0: independent regions with the right variances). Cross-region correlation
that a generator loses shows up in D_stsp as much as in the FC error; the per-region spectra (D_H) do
not see it.

Usage::

    python benchmarks/real_rest_fc_diag.py /tmp/hcp16 --subjects 4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dsr.analysis.heldout import score_samples  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.linear import LinearModel, fit_gaussian, fit_lgssm, fit_var1  # noqa: E402
from dsr.pipelines.fit_array import build_filter  # noqa: E402

N_SAMPLES = 20


def fc_error(g, ref) -> float:
    """Frobenius distance of the correlation matrix of pooled samples g (R, T, N) to ref's (T, N)."""
    return float(np.linalg.norm(np.corrcoef(np.concatenate(list(g)).T) - np.corrcoef(ref.T)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="folder of sub-*.npy (T, N) series with regions.json (tr)")
    ap.add_argument("--subjects", type=int)
    ap.add_argument("--preset", default="rest_fmri")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_rest import load_folder

    _, xs, tr = load_folder(Path(args.data), None, args.subjects)
    cfg = load_config(args.preset)
    T2 = min(len(x) for x in xs) // 2
    n_train = int(round(cfg.train.train_fraction * T2))
    halves = [(x[h * T2:(h + 1) * T2], x[(1 - h) * T2:(2 - h) * T2]) for x in xs for h in (0, 1)]
    train, other = [a[:n_train] for a, _ in halves], [b for _, b in halves]
    f = cfg.filter
    models = {"VAR(1)": fit_var1(train, tr), "linear-Gaussian SSM with HRF": fit_lgssm(train, build_filter(cfg, tr), tr,
                                                                                       f.cut_l, f.cut_r, f.min_noise)}
    g = fit_gaussian(train, tr)
    Sig, var = g.params["Sigma"], torch.diagonal(g.params["Sigma"], dim1=1, dim2=2)
    for a in (1.0, 0.8, 0.5, 0.0):
        models[f"static Gaussian, correlations × {a}"] = LinearModel(
            g.spec, {"mu": g.params["mu"], "Sigma": a * Sig + (1 - a) * torch.diag_embed(var)})
    print(f"{len(halves)} halves of {T2} volumes, training parts of {n_train}; medians over halves\n")
    print("| model | held-out D_stsp | held-out D_H | FC error vs training part | vs other half |")
    print("|---|---|---|---|---|")
    for name, m in models.items():
        smp = m.generate(T2, seed=0, n_samples=N_SAMPLES)  # (S, R, T2, N)
        sc = [score_samples(o, s) for o, s in zip(other, smp)]
        row = [np.median([c["dstsp"] for c in sc]), np.median([c["dh"] for c in sc]),
               np.median([fc_error(s, t) for s, t in zip(smp, train)]),
               np.median([fc_error(s, o) for s, o in zip(smp, other)])]
        print(f"| {name} | {row[0]:.3f} | {row[1]:.3f} | {row[2]:.2f} | {row[3]:.2f} |")
    floor = [score_samples(o, t[None]) for o, t in zip(other, [a for a, _ in halves])]
    print(f"| the other half itself (floor) | {np.median([c['dstsp'] for c in floor]):.3f} | "
          f"{np.median([c['dh'] for c in floor]):.3f} | | {np.median([fc_error(a[None], o) for a, o in halves]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Is there held-out structure beyond VAR(1) in real rest fMRI halves? (issue 14; CPU, a few minutes)

The convSSM has not beaten VAR(1) on held-out D_stsp / D_H of the HCP split halves in four full-scale runs.
This asks whether *any* model does, with the product's protocol (fit on the first 75 % of a half, 20 samples
of the half's length scored against the other half by :func:`dsr.analysis.heldout.score_samples`):

- VAR(p), p = 1 … 4, least squares with Gaussian innovations of the residual covariance;
- a nonlinear AR(1) fitted by one-step maximum likelihood (Gaussian innovations): x' = c + A x + W1 relu(W2 x + b2),
  L hidden units, A started at the VAR(1) solution, early-stopped on the training part's last 20 %;
- the static Gaussian and the other half itself (floor).

Beside the generative scores it reports the one-step prediction R² on the other half (the criterion of
Nozari et al. 2024, Nat. Biomed. Eng., "Macroscopic resting-state brain dynamics are best described by linear
models"): how much of the held-out next volume each model predicts.

Usage: ``python benchmarks/real_rest_ceiling.py .realdata/hcp16 --out benchmarks/results/s9/real_rest_ceiling.json``
(``--band-pass 0.01 0.1``: each half band-passed first, as ``real_rest.py --band-pass``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_rest import band_pass, load_folder  # noqa: E402

from dsr.analysis import distances as dist  # noqa: E402
from dsr.analysis.group_stats import icc  # noqa: E402
from dsr.analysis.heldout import score_samples  # noqa: E402
from dsr.models.linear import fit_gaussian  # noqa: E402


def fit_varp(x: np.ndarray, p: int) -> dict:
    """VAR(p) by least squares on (T, N) ``x``: coefficient matrices A (p, N, N), intercept c (N,), innovations Q."""
    T, N = x.shape
    lagged = np.concatenate([x[p - k - 1:T - k - 1] for k in range(p)] + [np.ones((T - p, 1))], axis=1)  # (T-p, pN+1)
    coef, *_ = np.linalg.lstsq(lagged, x[p:], rcond=None)  # (pN+1, N)
    res = x[p:] - lagged @ coef  # (T-p, N)
    A = np.stack([coef[k * N:(k + 1) * N].T for k in range(p)])  # (p, N, N)
    return {"A": A, "c": coef[-1], "Q": np.cov(res.T, bias=True)}


def varp_predict(m: dict, x: np.ndarray) -> np.ndarray:
    """One-step predictions of x[p:] from the p previous volumes, (T-p, N)."""
    p = len(m["A"])
    return m["c"] + sum(x[p - k - 1:len(x) - k - 1] @ m["A"][k].T for k in range(p))


def varp_generate(m: dict, T: int, n: int, rng: np.random.Generator, burn: int = 300) -> np.ndarray:
    """n samples (n, T, N) from the stationary process (started at the mean, ``burn`` steps dropped)."""
    p, N = m["A"].shape[:2]
    L = np.linalg.cholesky(m["Q"] + 1e-10 * np.eye(N))
    mu = np.linalg.solve(np.eye(N) - m["A"].sum(0), m["c"])
    out = np.empty((n, burn + T, N))
    out[:, :p] = mu
    for t in range(p, burn + T):
        out[:, t] = m["c"] + sum(out[:, t - k - 1] @ m["A"][k].T for k in range(p)) + rng.standard_normal((n, N)) @ L.T
    return out[:, burn:]


class NonlinearAR(torch.nn.Module):
    """x' = c + A x + W1 relu(W2 x + b2): a shallow-PLRNN-like one-step map in data space."""

    def __init__(self, A: np.ndarray, c: np.ndarray, hidden: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        N = len(c)
        self.A = torch.nn.Parameter(torch.as_tensor(A, dtype=torch.float64).clone())  # (N, N)
        self.c = torch.nn.Parameter(torch.as_tensor(c, dtype=torch.float64).clone())  # (N,)
        self.W2 = torch.nn.Parameter(torch.randn(hidden, N, generator=g, dtype=torch.float64) / N ** 0.5)  # (L, N)
        self.b2 = torch.nn.Parameter(torch.randn(hidden, generator=g, dtype=torch.float64) * 0.5)  # (L,)
        self.W1 = torch.nn.Parameter(torch.zeros(N, hidden, dtype=torch.float64))  # (N, L)

    def forward(self, x):  # (..., N) -> (..., N)
        return self.c + x @ self.A.T + torch.relu(x @ self.W2.T + self.b2) @ self.W1.T


def fit_nlar(x: np.ndarray, hidden: int, seed: int, decay: float, steps: int = 3000) -> tuple[NonlinearAR, np.ndarray]:
    """Fit NonlinearAR to (T, N) ``x`` by one-step least squares (Gaussian ML), early-stopped on the last 20 %;
    returns the model (best validation) and the innovations covariance of the training residuals."""
    v1 = fit_varp(x, 1)
    model = NonlinearAR(v1["A"][0], v1["c"], hidden, seed)
    xt = torch.as_tensor(x)
    n_fit = int(0.8 * len(x))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    best, best_state = np.inf, None
    for step in range(steps):
        opt.zero_grad()
        loss = ((model(xt[:n_fit - 1]) - xt[1:n_fit]) ** 2).mean() + decay * (model.W1 ** 2).sum()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            with torch.no_grad():
                val = float(((model(xt[n_fit - 1:-1]) - xt[n_fit:]) ** 2).mean())
            if val < best:
                best, best_state = val, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    with torch.no_grad():
        res = (xt[1:] - model(xt[:-1])).numpy()  # (T-1, N)
    return model, np.cov(res.T, bias=True)


def nlar_generate(model: NonlinearAR, Q: np.ndarray, x0: np.ndarray, T: int, n: int, rng, burn: int = 300):
    L = torch.as_tensor(np.linalg.cholesky(Q + 1e-10 * np.eye(len(Q))))
    z = torch.as_tensor(np.repeat(x0[None], n, 0))  # (n, N)
    out = []
    with torch.no_grad():
        for t in range(burn + T):
            z = model(z) + torch.as_tensor(rng.standard_normal(z.shape)) @ L.T
            out.append(z)
    return torch.stack(out[burn:], 1).numpy()  # (n, T, N)


def r2(pred: np.ndarray, target: np.ndarray) -> float:
    """One-step R² pooled over regions: 1 − residual / total sum of squares (target centred)."""
    return float(1 - ((target - pred) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--subjects", type=int, default=None)
    ap.add_argument("--hidden", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--decay", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--band-pass", type=float, nargs=2, metavar=("LOW", "HIGH"),
                    help="Hz, each half filtered on its own (as real_rest.py --band-pass)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names, xs, tr = load_folder(args.folder, None, args.subjects)
    t0 = time.perf_counter()
    rows = []
    for name, x in zip(names, xs):
        T2 = len(x) // 2
        halves = [x[:T2], x[T2:2 * T2]]
        if args.band_pass:
            halves = [band_pass(h, tr, args.band_pass) for h in halves]
        for i in (0, 1):
            train, other = halves[i][:int(0.75 * T2)], halves[1 - i]
            mean, sd = train.mean(0), train.std(0)
            tz, oz = (train - mean) / sd, (other - mean) / sd  # standardised by the training part
            rng = np.random.default_rng(0)
            row = {"subject": name, "half": i + 1, "scores": {}, "r2_heldout": {}}

            def score(label, gz):
                sc = score_samples(other, gz * sd + mean)
                row["scores"][label] = [sc["dstsp"], sc["dh"]]

            for p in (1, 2, 3, 4):
                m = fit_varp(tz, p)
                if p == 1:  # the linear model's features: its largest Lyapunov exponent and its coupling matrix
                    row["var1_lambda"] = float(np.log(np.abs(np.linalg.eigvals(m["A"][0])).max()) / tr)
                    row["var1_A"] = m["A"][0].ravel().tolist()
                    row["fc"] = dist.fc_vector(halves[i]).tolist()  # FC fingerprint of the whole half
                    row["fc_train"] = dist.fc_vector(train).tolist()  # of what a model is fitted to
                score(f"var{p}", varp_generate(m, T2, args.samples, rng))
                row["r2_heldout"][f"var{p}"] = r2(varp_predict(m, oz), oz[p:])
            for hidden in args.hidden:
                model, Q = fit_nlar(tz, hidden, seed=0, decay=args.decay)
                score(f"nlar{hidden}", nlar_generate(model, Q, tz[-1], T2, args.samples, rng))
                with torch.no_grad():
                    pred = model(torch.as_tensor(oz[:-1])).numpy()
                row["r2_heldout"][f"nlar{hidden}"] = r2(pred, oz[1:])
            g = fit_gaussian([train], tr).generate(T2, seed=0, n_samples=args.samples)[0]
            sc = score_samples(other, g)
            row["scores"]["gaussian"] = [sc["dstsp"], sc["dh"]]
            sc = score_samples(other, [halves[i]])
            row["scores"]["floor"] = [sc["dstsp"], sc["dh"]]
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("subject", "half")}),
                  {k: [round(a, 3) for a in v] for k, v in row["scores"].items()},
                  {k: round(v, 3) for k, v in row["r2_heldout"].items()}, flush=True)
    labels = list(rows[0]["scores"])
    summary = {}
    for lab in labels:
        s = np.array([r["scores"][lab] for r in rows])  # (n, 2)
        v = np.array([r["scores"]["var1"] for r in rows])
        summary[lab] = {"dstsp_median": float(np.median(s[:, 0])), "dh_median": float(np.median(s[:, 1])),
                        "beats_var1_dstsp": int((s[:, 0] < v[:, 0]).sum()),
                        "beats_var1_dh": int((s[:, 1] < v[:, 1]).sum()), "n": len(rows)}
        if lab in rows[0]["r2_heldout"]:
            r = np.array([row["r2_heldout"][lab] for row in rows])
            r1 = np.array([row["r2_heldout"]["var1"] for row in rows])
            summary[lab].update(r2_heldout_median=float(np.median(r)), beats_var1_r2=int((r > r1).sum()))
    subjects = [r["subject"] for r in rows]
    halves = [r["half"] for r in rows]
    features = {k: [np.array(r[k]) for r in rows] for k in ("var1_A", "fc", "fc_train")}
    reliability = {"icc_var1_lambda": icc([r["var1_lambda"] for r in rows], subjects)["icc"]}
    for name, vecs in features.items():
        D = dist.pairwise(vecs, lambda a, b: float(1 - np.corrcoef(a, b)[0, 1]))  # correlation distance
        reliability[f"identification_{name}"] = dist.identification_accuracy(D, subjects, halves)
    for r in rows:
        del r["var1_A"], r["fc"], r["fc_train"]
    print(json.dumps(reliability))
    out = {"folder": str(args.folder), "tr": tr, "band_pass": args.band_pass, "hidden": args.hidden,
           "decay": args.decay, "samples": args.samples, "seconds": time.perf_counter() - t0, "summary": summary,
           "reliability": reliability, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    for lab, s in summary.items():
        print(f"{lab:10s} D_stsp {s['dstsp_median']:.3f}  D_H {s['dh_median']:.3f}  beats VAR(1) "
              f"{s['beats_var1_dstsp']}/{s['n']}, {s['beats_var1_dh']}/{s['n']}"
              + (f"  held-out one-step R² {s['r2_heldout_median']:.3f} (beats VAR(1) {s['beats_var1_r2']})"
                 if "r2_heldout_median" in s else ""))
    return out


if __name__ == "__main__":
    main()

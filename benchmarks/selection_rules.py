"""Checkpoint-selection rules studied offline on the checkpoints a G1/G2 run kept (issue 13).

    python benchmarks/selection_rules.py lyapunov RUN_G1_snapshots.safetensors [--out F.npz]
    python benchmarks/selection_rules.py candidates RUN_G1_snapshots.safetensors --models RUN_models.safetensors \
        --noise 0.01 --top 6 [--device cuda] [--out F.json]      # or RUN_G2_snapshots... --g2-train 5000
    python benchmarks/selection_rules.py rules F.npz [F.json]

``lorenz_protocol.py --snapshots N`` keeps every N-th scored checkpoint of every fit (parameters and the selection
score: the mean D_stsp of ``train.select_rollouts`` deterministic rollouts against the training part).

* ``lyapunov`` estimates λ_max (per Lorenz time unit, one step = 0.01) of every kept checkpoint from short orbits
  (3 orbits of 2500 steps after 400, started near the clean latent; the evaluation uses 10 × 5000): the λ of the
  epoch each rule would pick, without re-training.
* ``candidates`` scores, per G1 fit at one noise level (or, with ``--g2-train N``, per G2 fit of N training
  steps), its ``--top`` checkpoints by selection score with the product's metric engine
  (:func:`dsr.analysis.evaluate.evaluate`, the run's evaluation settings with ``--rollouts`` rollouts: D_stsp
  against the whole recording, and ``dstsp_train`` against the training part only, which a selection rule may
  use; for G2 also the latent D_stsp against the held-out truth and R's denominator).
* ``rules`` prints, per rule, the median λ_max over fits and its distance from the truth (0.9056), and with a
  candidates file the evaluated D_stsp of the picks.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dsr.analysis.lyapunov import lyapunov_spectrum  # noqa: E402
from dsr.models import latent  # noqa: E402

TRUE_LAMBDA = 0.9056  # per Lorenz time unit
SHARED = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
KEYS = ("dstsp", "dstsp_median", "dstsp_train", "dstsp_test", "dstsp_latent_units", "lyapunov_max",
        "diverged_rollouts")


class TimedScorer:
    """A checkpoint scorer that counts its calls and their seconds (device work finished before the clock stops)."""

    def __init__(self, scorer):
        self.scorer, self.seconds, self.calls = scorer, 0.0, 0

    def __call__(self, model):
        t = time.perf_counter()
        out = self.scorer(model)  # NumPy: the device work is done when it returns
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


class SnapshotScorer(TimedScorer):
    """A timed scorer that also keeps every ``keep_every``-th scored checkpoint's parameters and scores on the CPU
    (``lorenz_protocol.py --snapshots``)."""

    def __init__(self, scorer, keep_every: int = 1):
        super().__init__(scorer)
        self.keep_every, self.params, self.scores, self.kept = keep_every, [], [], []

    def __call__(self, model):
        out = super().__call__(model)
        if (self.calls - 1) % self.keep_every == 0:
            self.params.append({k: v.detach().to("cpu", torch.float32, copy=True) for k, v in model.params.items()})
            self.scores.append(np.asarray(out, dtype=np.float64))
            self.kept.append(self.calls - 1)
        return out

    def save(self, out_dir: Path, tag: str, fits: list[dict], epochs: list[int]) -> None:
        """One file per part (G1, G2): ``lorenz_protocol<tag>_<part>_snapshots.safetensors`` with each parameter
        (C, F_part, ...), ``epoch`` (C,), ``score`` (C, F_part) and ``fit`` (F_part,) the fits' indices."""
        from safetensors.torch import save_file

        for part in sorted({f["part"] for f in fits}):
            idx = torch.tensor([i for i, f in enumerate(fits) if f["part"] == part])
            t = {k: torch.stack([p[k][idx] for p in self.params]).contiguous() for k in self.params[0]}
            t["epoch"] = torch.tensor([epochs[c] for c in self.kept])  # (C,)
            t["score"] = torch.as_tensor(np.stack(self.scores))[:, idx].contiguous()  # (C, F_part)
            t["fit"] = idx
            save_file(t, str(out_dir / f"lorenz_protocol{tag}_{part}_snapshots.safetensors"))


def load_snapshots(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, torch.Tensor]]:
    """epochs (C,), scores (C, F), the fits' indices in the run (F,), latent parameters {name: (C, F, ...)}."""
    from safetensors.torch import load_file

    t = load_file(path)
    lat = {k[len("latent."):]: v for k, v in t.items() if k.startswith("latent.")}
    return t["epoch"].numpy(), t["score"].numpy(), t["fit"].numpy(), lat


def snapshot_lyapunov(lat: dict[str, torch.Tensor], start: np.ndarray, orbits: int = 3, steps: int = 2500,
                      transient: int = 400, kind: str = "cshPLRNN") -> np.ndarray:
    """λ_max per step of every checkpoint (C, F): the median over ``orbits`` orbits, each started at ``start`` (M,)
    plus N(0, 0.1²)."""
    C, F = next(iter(lat.values())).shape[:2]
    S, M = C * F, len(start)
    p = {k: v.double().reshape(S, *v.shape[2:]) for k, v in lat.items()}  # (S, ...)
    gen = torch.Generator().manual_seed(0)
    z0 = torch.as_tensor(start, dtype=torch.float64) + 0.1 * torch.randn(S, orbits, M, generator=gen,
                                                                         dtype=torch.float64)  # (S, O, M)
    lam = lyapunov_spectrum(lambda z: latent.step(kind, p, z.view(S, orbits, M)).reshape(S * orbits, M),
                            lambda z: latent.jacobian(kind, p, z.view(S, orbits, M)).reshape(S * orbits, M, M),
                            z0.reshape(S * orbits, M), n_steps=steps, transient=transient, n_exponents=1)  # (S*O, 1)
    return np.nanmedian(lam[:, 0].reshape(C, F, orbits).numpy(), axis=-1)  # (C, F)


def pick(epochs: np.ndarray, scores: np.ndarray, rule: str) -> np.ndarray:
    """The checkpoint index (F,) each fit's rule picks from its scores (C, F):

    ``min`` the lowest score (the product's rule); ``fromX`` the lowest at epochs ≥ X × the last; ``tolX`` the
    latest epoch within (1 + X) × the lowest score; ``last`` the last epoch.
    """
    s = np.where(np.isfinite(scores), scores, np.inf)  # (C, F)
    C, F = s.shape
    if rule == "last":
        return np.full(F, C - 1)
    if rule == "min":
        return np.argmin(s, axis=0)
    if rule.startswith("from"):
        lo = int(np.searchsorted(epochs, float(rule[4:]) * epochs[-1]))
        late = lo + np.argmin(s[lo:], axis=0)
        return np.where(np.isfinite(s[lo:]).any(0), late, np.argmin(s, axis=0))
    if rule.startswith("tol"):
        ok = s <= (1 + float(rule[3:])) * s.min(axis=0, keepdims=True)  # (C, F)
        return C - 1 - np.argmax(ok[::-1], axis=0)
    raise SystemExit(f"unknown rule {rule!r}")


def candidates(args) -> None:
    """Engine scores of each fit's ``--top`` checkpoints (by selection score), as JSON rows."""
    from dsr.analysis.evaluate import evaluate
    from dsr.config import load_config
    from dsr.models.convssm import ConvSSM
    from dsr.training.data import prepare_subject
    from reference_results import lorenz_recording

    epochs, scores, fit_idx, lat = load_snapshots(args.snapshots)
    base = ConvSSM.load(args.models)
    fits = base.spec.meta["fits"]
    if args.g2_train:  # G2 fits of that training length: the latent truth is the held-out stretch of the series
        mine = [j for j, i in enumerate(fit_idx) if fits[i]["part"] == "G2" and fits[i]["n_train"] == args.g2_train]
    else:
        mine = [j for j, i in enumerate(fit_idx) if fits[i]["part"] == "G1" and fits[i]["noise"] == args.noise]
    if not mine:
        raise SystemExit(f"{args.snapshots}: no fits of that part, noise or training length")
    L = np.load(SHARED / "lorenz63.npy")
    cfg = load_config("lorenz63", train=base.spec.meta["config"]["train"],
                      eval={**base.spec.meta["config"]["eval"], "n_rollouts": args.rollouts,
                            **({"generation": args.generation} if args.generation else {})})
    first = fits[fit_idx[mine[0]]]
    x, h = lorenz_recording(L, first["length"], first["noise"])
    sd = prepare_subject(x, h, cfg, standardise=False)
    truth = L[args.g2_truth[0]:args.g2_truth[1]] if args.g2_train else L[len(h):len(h) + len(x)]
    pairs = [(j, int(c)) for j in mine for c in np.argsort(np.where(np.isfinite(scores[:, j]), scores[:, j],
                                                                     np.inf))[:args.top]]
    rows, head = [], {"snapshots": args.snapshots, "noise": first["noise"], "top": args.top, "g2_train": args.g2_train}
    if args.g2_train:  # R's denominator: the training stretch against the truth, in the truth's standardisation
        from dsr.analysis.dstsp import dstsp_bins

        mu, sd_t = truth.mean(0), truth.std(0)
        head["g2_denominator"] = float(dstsp_bins(truth, (L[len(h):len(h) + args.g2_train] - mu) / sd_t))
    for lo in range(0, len(pairs), args.chunk):
        part = pairs[lo:lo + args.chunk]
        params = {f"latent.{k}": torch.stack([v[c, j] for j, c in part]) for k, v in lat.items()}
        filt = base.filter[:1].expand(len(part), -1).clone()
        model = ConvSSM(base.spec, params, filt).to(args.device)
        seeds = [fits[fit_idx[j]]["seed"] for j, _ in part]
        res = evaluate(model, [sd] * len(part), cfg.eval, seeds, latent_truths=[truth] * len(part))
        for (j, c), seed, r in zip(part, seeds, res):
            met = r[0].to_json()
            rows.append(dict(fit=int(fit_idx[j]), seed=seed, epoch=int(epochs[c]), score=float(scores[c, j]),
                             **{k: met.get(k) for k in KEYS}))
        print(f"{len(rows)} of {len(pairs)} checkpoints scored", flush=True)
        Path(args.out).write_text(json.dumps(dict(head, rows=rows), indent=1, default=float))  # so far


def rules(args) -> None:
    """Median λ_max of each rule's picks, and the engine's D_stsp of the picks that were scored as candidates."""
    d = np.load(args.lyapunov)
    epochs, scores, lam, fit_idx = d["epoch"], d["score"], d["lam"] * 100, d["fit"]
    head = json.loads(Path(args.candidates).read_text()) if args.candidates else {"rows": []}
    rows = head["rows"]
    cand = {(r["fit"], r["epoch"]): r for r in rows}
    groups = [("all", np.arange(len(fit_idx)))]
    if rows:
        fits = sorted({r["fit"] for r in rows})
        groups = [("candidates' fits", np.flatnonzero(np.isin(fit_idx, fits)))]
    for name, cols in groups:
        print(f"{name}: {len(cols)} fits, {len(epochs)} checkpoints (epochs {epochs[0]}-{epochs[-1]})")
        for rule in args.rules:
            p = pick(epochs, scores[:, cols], rule)
            lp = lam[p, cols]
            med = float(np.nanmedian(lp))
            line = (f"  {rule:8s} λ median {med:.3f} ({100 * (med / TRUE_LAMBDA - 1):+.1f} %), within 5 %: "
                    f"{int(np.sum(np.abs(lp / TRUE_LAMBDA - 1) < 0.05))}, epoch median {np.median(epochs[p]):.0f}")
            got = [cand.get((int(fit_idx[c]), int(epochs[i]))) for i, c in zip(p, cols)]
            if rows and all(g is not None for g in got):
                ds = np.array([g["dstsp"] for g in got])
                line += f"; engine D_stsp mean {ds.mean():.3f} median {np.median(ds):.3f}"
            print(line)
    if rows:  # among each fit's candidates: the lowest engine D_stsp against the training part
        best = {}
        for r in rows:
            v = r["dstsp_train"] if np.isfinite(r["dstsp_train"]) else np.inf
            if r["fit"] not in best or v < best[r["fit"]][0]:
                best[r["fit"]] = (v, r)
        ds = np.array([b[1]["dstsp"] for b in best.values()])
        lm = np.array([b[1]["lyapunov_max"] for b in best.values()]) * 100
        print(f"  top-{head['top']} by score, then the lowest engine D_stsp "
              f"on the training part: D_stsp mean {ds.mean():.3f} median {np.median(ds):.3f}, λ median "
              f"{np.median(lm):.3f} ({100 * (np.median(lm) / TRUE_LAMBDA - 1):+.1f} %)")
        if "g2_denominator" in head:  # G2: R = latent D_stsp in data units / the training stretch's own
            first = {}
            for r in rows:
                if r["fit"] not in first or r["score"] < first[r["fit"]]["score"]:
                    first[r["fit"]] = r
            for name, picked in (("lowest score", list(first.values())), ("rescored", [b[1] for b in best.values()])):
                R = np.array([r["dstsp_latent_units"] for r in picked]) / head["g2_denominator"]
                print(f"  G2 {head['g2_train']} steps, {name}: R median {np.median(R):.3f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("lyapunov")
    a.add_argument("snapshots")
    a.add_argument("--out", default=None)
    b = sub.add_parser("candidates")
    b.add_argument("snapshots")
    b.add_argument("--models", required=True, help="the run's models file (its sidecar holds the fits)")
    b.add_argument("--noise", type=float, default=0.01)
    b.add_argument("--g2-train", type=int, default=0, help="the G2 fits of this training length instead of G1")
    b.add_argument("--g2-truth", type=int, nargs=2, default=[10000, 100000], help="G2 held-out truth steps")
    b.add_argument("--top", type=int, default=6)
    b.add_argument("--rollouts", type=int, default=10)
    b.add_argument("--generation", default=None, choices=["deterministic", "stochastic"],
                   help="the rollouts' generation (default: the run's eval.generation)")
    b.add_argument("--chunk", type=int, default=40, help="checkpoints per engine call")
    b.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    b.add_argument("--out", default=None)
    c = sub.add_parser("rules")
    c.add_argument("lyapunov", help="the npz of the lyapunov command")
    c.add_argument("candidates", nargs="?", default=None, help="the JSON of the candidates command")
    c.add_argument("--rules", nargs="+", default=["min", "from0.25", "from0.5", "tol0.1", "tol0.2", "last"])
    args = p.parse_args(argv)
    if args.cmd == "lyapunov":
        epochs, scores, fit_idx, lat = load_snapshots(args.snapshots)
        start = np.load(SHARED / "lorenz63.npy")[200]
        lam = snapshot_lyapunov(lat, start)
        out = args.out or str(Path(args.snapshots).with_suffix("")) + "_lyapunov.npz"
        np.savez(out, epoch=epochs, score=scores, fit=fit_idx, lam=lam)
        print(f"wrote {out}")
    elif args.cmd == "candidates":
        what = f"g2_{args.g2_train}" if args.g2_train else f"{args.noise:g}"
        args.out = args.out or str(Path(args.snapshots).with_suffix("")) + f"_candidates_{what}.json"
        candidates(args)
    else:
        rules(args)


if __name__ == "__main__":
    main()

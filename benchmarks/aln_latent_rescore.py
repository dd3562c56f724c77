"""Re-score saved ALN fits in latent space only: D_stsp z-scored and in data units (issue 2).

    python benchmarks/aln_latent_rescore.py --tag _gpu5_s03 [--scalings 1.0 0.3] [--rollouts 100]

Loads ``benchmarks/results/aln_{conv,noconv}{tag}_models.safetensors`` (written by
``reference_results.py aln``), rebuilds each fit's data and seed exactly as that script does, and
computes the latent-space part of :func:`dsr.analysis.evaluate.evaluate`
(its latent metrics, same initial states and rollouts): ``dstsp_latent``
(each series z-scored) and ``dstsp_latent_units`` (generated latents in data units, both standardised
by the truth), for each GMM scaling. Prints, per selection rule, how many
subjects the convSSM wins, and writes ``aln_latent_rescore{tag}.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr.analysis.evaluate import evaluate  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import ConvSSM  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402

OUT = ROOT / "benchmarks" / "results"


def latent_scores(model, sd, truth, seed, rollouts, scalings):
    """{scaling: (z-scored, data-units)} latent D_stsp of one fit (S = 1), as ``evaluate`` computes it."""
    cfg = dataclasses.replace(load_config("aln").eval, n_rollouts=rollouts, lyap_steps=1, lyap_transient=0,
                              lyap_orbits=1)  # the latent metrics only: no Lyapunov run to speak of
    out = {}
    for s in scalings:
        met = evaluate(model, [sd], dataclasses.replace(cfg, dstsp_scaling=s), [seed], [truth])[0][0]
        out[s] = (met.dstsp_latent, met.dstsp_latent_units)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tag", default="_gpu5_s03")
    p.add_argument("--subjects", type=int, default=20)
    p.add_argument("--seeds-per-subject", type=int, default=5)
    p.add_argument("--scalings", type=float, nargs="+", default=[1.0, 0.3])
    p.add_argument("--rollouts", type=int, default=100)
    p.add_argument("--reuse", action="store_true", help="keep the variants already in the output file")
    args = p.parse_args(argv)
    shared = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
    ids = sorted(q.stem for q in (shared / "aln" / "bold").glob("sub-*.npy"))[:args.subjects]
    R = args.seeds_per_subject
    cfg = load_config("aln", train={"train_fraction": 0.75})
    truths = [np.load(shared / "aln" / "latent" / f"{s}.npy") for s in ids]
    out = OUT / f"aln_latent_rescore{args.tag}.json"
    scores = json.loads(out.read_text())["fits"] if args.reuse and out.exists() else {}
    for variant in [v for v in ("conv", "noconv") if v not in scores]:
        h = spm_hrf(0.5) if variant == "conv" else np.array([1.0])  # as reference_results.py prepares each
        subs = [prepare_subject(np.load(shared / "aln" / "bold" / f"{s}.npy")[:500], h, cfg) for s in ids]
        model = ConvSSM.load(OUT / f"aln_{variant}{args.tag}_models.safetensors")
        rows = []
        for r in range(R):
            for i, s in enumerate(ids):
                j = r * len(ids) + i  # fit order of reference_results.py: seed = subject index + 1000 r
                rows.append({"subject": s, "seed": i + 1000 * r,
                             **{f"{kind}_s{sc:g}": v[k] for sc, v in
                                latent_scores(model.subject(j), subs[i], truths[i], i + 1000 * r, args.rollouts,
                                              args.scalings).items()
                                for k, kind in enumerate(("zscored", "units"))}})
        scores[variant] = rows
        print(variant, "done", flush=True)
    summary = {}
    for key in scores["conv"][0]:
        if key in ("subject", "seed"):
            continue
        med = {v: {s: np.median([r[key] for r in scores[v] if r["subject"] == s]) for s in ids} for v in scores}
        wins = sum(med["conv"][s] < med["noconv"][s] for s in ids)
        summary[key] = {"conv_wins_median_over_seeds": f"{wins}/{len(ids)}",
                        "median_conv": float(np.median(list(med["conv"].values()))),
                        "median_noconv": float(np.median(list(med["noconv"].values())))}
        print(key, summary[key], flush=True)
    out.write_text(json.dumps({"setup": vars(args), "summary": summary, "fits": scores}, indent=1, default=float))


if __name__ == "__main__":
    main()

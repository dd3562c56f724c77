"""Checkpoint selection (issue 13, ``train.select_every``) on ALN subjects: the selected against the last epoch.

    python benchmarks/selection_aln.py [--subjects 3] [--seeds 5] [--epochs 300] [--select-every 10] \
        [--holdout 0.2] [--device cpu] [--out DIR] [--tag _x] [--variant conv|noconv]
    python benchmarks/selection_aln.py --compare selection_aln_conv.json selection_aln_noconv.json

The ``aln`` preset (convSSM, 16 regions, TR 0.5 s, the first 375 of 500 steps train) on the first
``--subjects`` recordings of ``../shared/data/aln``, ``--seeds`` seeds each (seed = subject index + 1000 r, as
``reference_results.py aln``), all in one stack, with checkpoint selection every ``--select-every`` epochs
(:func:`dsr.analysis.checkpoint_score.dstsp_scorer`: D_stsp, GMM estimator at 16 dimensions, of a free-running
generation against the training part). Training is not changed by selection, so both the selected and the
last epoch's parameters of the same fits are evaluated (one stack of 2S fits): latent D_stsp in data units
against the simulation's latent activity (held out: never seen in training), the held-out test part's
observation D_stsp, and latent D_H. Beside them, as a reference point, the same D_stsp of the latent truth's
training stretch against the whole latent truth. Writes ``selection_aln<tag>.json``.

``--variant noconv`` fits the same SSM without the decoder's convolution (filter [1]: the model's outputs are
its latent states), the comparison of the reference results (issue 13: the convSSM's latent D_stsp in data units
lower than the SSM without the decoder for ≥ 90 % of subjects). ``--compare`` counts, per subject (median over
its seeds), where the convSSM is lower, for the selected and for the last epoch's parameters.
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

from dsr.analysis.checkpoint_score import dstsp_scorer  # noqa: E402
from dsr.analysis.dstsp import dstsp  # noqa: E402
from dsr.analysis.evaluate import evaluate  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from dsr.training.loop import log_progress, train  # noqa: E402

SHARED = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
KEYS = ("dstsp_latent_units", "dstsp_latent", "dh_latent", "dstsp", "dstsp_test", "dh_test", "pe_test")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", type=int, default=3)
    p.add_argument("--first", type=int, default=0, help="index of the first subject")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--select-every", type=int, default=10)
    p.add_argument("--holdout", type=float, default=0.0, help="train.select_holdout (0: score on the whole training part)")
    p.add_argument("--rollouts", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tag", default="")
    p.add_argument("--variant", choices=["conv", "noconv"], default="conv")
    p.add_argument("--compare", nargs=2, default=None, metavar=("CONV_JSON", "NOCONV_JSON"))
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    ids = sorted(q.stem for q in (SHARED / "aln" / "bold").glob("sub-*.npy"))[args.first:args.first + args.subjects]
    cfg = load_config("aln", train={"epochs": args.epochs, "select_every": args.select_every,
                                    "select_holdout": args.holdout},
                      eval={"n_rollouts": args.rollouts})
    h = spm_hrf(0.5) if args.variant == "conv" else np.array([1.0])
    data = {s: prepare_subject(np.load(SHARED / "aln" / "bold" / f"{s}.npy")[:500], h, cfg) for s in ids}
    lat = {s: np.load(SHARED / "aln" / "latent" / f"{s}.npy")[:500] for s in ids}
    fits = [dict(subject=s, seed=args.first + i + 1000 * r) for r in range(args.seeds) for i, s in enumerate(ids)]
    subs, seeds, truths = [data[f["subject"]] for f in fits], [f["seed"] for f in fits], [lat[f["subject"]] for f in fits]
    spec = ConvSSMSpec(cfg.model.latent_model, cfg.model.latent_dim, cfg.model.hidden_dim, cfg.model.observation,
                       n_obs=16, tr=0.5)
    model = ConvSSM.initialise(spec, torch.as_tensor(h), seeds).to(args.device)
    print(f"{len(fits)} fits stacked on {args.device}: {args.epochs} epochs, selection every {args.select_every}",
          flush=True)
    t0 = time.perf_counter()
    scorer = dstsp_scorer(subs, seeds, cfg.eval, holdout=args.holdout)
    clock = {"s": 0.0, "n": 0}

    def timed(m):
        t = time.perf_counter()
        out = scorer(m)
        clock["s"] += time.perf_counter() - t
        clock["n"] += 1
        return out

    outcome = train(model, subs, cfg.train, seeds, progress=log_progress(every=50), scorer=timed)
    train_s = time.perf_counter() - t0
    both = ConvSSM(spec, {k: torch.cat([v, outcome.last_params[k].to(v.device)]) for k, v in model.params.items()},
                   torch.cat([model.filter, model.filter]))
    t1 = time.perf_counter()
    res = evaluate(both, subs * 2, cfg.eval, seeds * 2, latent_truths=truths * 2)
    eval_s = time.perf_counter() - t1
    S = len(fits)
    traces: dict = {}
    for r in outcome.curve:
        if "select_score" in r:
            traces.setdefault(r["fit"], []).append([r["epoch"], r["select_score"]])
    rows = []
    for i, f in enumerate(fits):
        sel, last = res[i][0].to_json(), res[S + i][0].to_json()
        rows.append(dict(f, status=outcome.status[i], selected_epoch=outcome.selected_epoch[i],
                         select_trace=traces.get(i, []), selected={k: sel.get(k) for k in KEYS},
                         last={k: last.get(k) for k in KEYS}))
    stretch = {s: dstsp((lat[s] - lat[s].mean(0)) / lat[s].std(0),
                        ((lat[s] - lat[s].mean(0)) / lat[s].std(0))[:data[s].n_train]) for s in ids}
    summary = {}
    for k in KEYS:
        a = np.array([r["selected"][k] for r in rows], dtype=float)
        b = np.array([r["last"][k] for r in rows], dtype=float)
        per_subject = [(np.median(a[[j for j, f in enumerate(fits) if f["subject"] == s]]),
                        np.median(b[[j for j, f in enumerate(fits) if f["subject"] == s]])) for s in ids]
        summary[k] = {"selected_median": float(np.median(a)), "last_median": float(np.median(b)),
                      "selected_mean": float(np.mean(a)), "last_mean": float(np.mean(b)),
                      "fits_selected_lower": int(np.sum(a < b)), "fits_equal": int(np.sum(a == b)),
                      "subjects_selected_lower": int(sum(x < y for x, y in per_subject)), "n_fits": S}
    out = {"setup": vars(args), "config": cfg.to_dict(), "fits": rows, "summary": summary,
           "latent_training_stretch_vs_truth": stretch,
           "selected_epoch": {"median": float(np.median(outcome.selected_epoch)),
                              "values": outcome.selected_epoch},
           "seconds": {"train_all_fits": train_s, "selection_scoring": clock["s"], "scorings": clock["n"],
                       "evaluate_all_fits": eval_s}}
    path = Path(args.out) / f"selection_aln{args.tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=float))
    print(f"wrote {path}; train {train_s:.0f} s (scoring {clock['s']:.1f} s in {clock['n']} calls), "
          f"evaluate {eval_s:.0f} s", flush=True)
    for k, v in summary.items():
        print(f"{k:<20} selected {v['selected_median']:.3g} (mean {v['selected_mean']:.3g})  last "
              f"{v['last_median']:.3g} (mean {v['last_mean']:.3g})  fits selected lower {v['fits_selected_lower']}"
              f"/{S} (equal {v['fits_equal']})", flush=True)
    return out


def _per_subject(path: str, pick: str, key: str) -> dict:
    rows = json.loads(Path(path).read_text())["fits"]
    out: dict = {}
    for r in rows:
        out.setdefault(r["subject"], []).append(r[pick][key])
    return {s: float(np.median(np.asarray(v, dtype=float))) for s, v in out.items()}


def compare(conv_path: str, noconv_path: str) -> dict:
    """Per subject (median over seeds): where the convSSM is lower than the SSM without the decoder."""
    out = {}
    for pick in ("selected", "last"):
        for key in ("dstsp_latent_units", "dstsp_latent", "dh_latent", "dstsp_test", "pe_test"):
            a, b = _per_subject(conv_path, pick, key), _per_subject(noconv_path, pick, key)
            subs = sorted(set(a) & set(b))
            wins = sum(a[s] < b[s] for s in subs)
            out[f"{pick} {key}"] = {"conv_lower": wins, "n_subjects": len(subs),
                                    "conv_median": float(np.median([a[s] for s in subs])),
                                    "noconv_median": float(np.median([b[s] for s in subs]))}
            print(f"{pick:<9} {key:<20} convSSM lower for {wins}/{len(subs)} subjects; medians "
                  f"{out[f'{pick} {key}']['conv_median']:.3g} / {out[f'{pick} {key}']['noconv_median']:.3g}")
    return out


if __name__ == "__main__":
    main()

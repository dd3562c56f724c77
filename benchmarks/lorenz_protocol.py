"""The paper's Lorenz-63 protocol (G1) and the short-data measure (G2) of issue 13, in one stacked run.

    python benchmarks/lorenz_protocol.py [--device cuda] [--epochs 1000|5000|10000] [--seeds 10] [--tag _x]
    python benchmarks/lorenz_protocol.py --smoke          # a few seconds on a CPU: checks the script
    python benchmarks/lorenz_protocol.py --parts g1 --noise 0.01 --alphas 0.1 0.15 --loss-states free reference \
        --train lr_end=1e-4 --seeds 3 --first-seed 3      # variants stacked as groups of one run

G1 (Volkmann et al., NeurIPS 2024, section 4.1; the reference code github humml-lab/GTF-ConvSSM ships
the 100 000-step series as example_data/lorenz.npy and splits 3:1, settings/defaults.json): the whole
``lorenz63.npy`` through the SPM HRF at TR 0.2 s (every sample with a full filter history, so
T = 100 000 − K), observation noise σ 0.01 and 0.1, 3:1 split, M 3, L 50, α 0.1, ≥ 10 seeds, with
``train.loss_states`` "free" and "forced" (or "reference"; ``--alphas`` and ``--train KEY=VALUE`` for other
settings; ``--targets wiener oracle`` adds fits trained on the clean latent instead of the Wiener-deconvolved
targets, to measure what the deconvolution's error costs). Scores per fit:

* ``dstsp`` -- 30-bin D_stsp of generated BOLD against the whole recording at equal length (the
  reference's comparison, src/measures/stsp_measure.jl), mean over rollouts;
* ``dstsp_latent_units`` -- latent D_stsp in data units against the clean latent under the recording;
* λ_max per Lorenz time unit: one sample is one step of 0.01 Lorenz time (the TR of 0.2 s only sets
  the HRF's sampling), so λ per step / 0.01, against 0.9056.

Each score comes with the same estimator's floor: independent stretches of the true system of equal
length (simulated trajectories, :func:`reference_results.lorenz63_simulate`; for BOLD through the same
HRF with the same noise level), median and range. λ_max's floor is the true system's own λ_max through the
evaluation's estimator at its settings (``eval.lyap_*``), as many pseudo-fits as seeds
(:func:`lorenz_protocol_summary.lyapunov_floor`): what a perfect model would score (about 0.89 at the
defaults, not 0.9056: 5 000 steps per orbit, median of 10 orbits).

G2 (beyond the paper): recordings of 3000 and 6667 steps (2250 and 5000 training steps), rollouts of
90 000 steps compared with the held-out clean steps 10 000–100 000; R = D_stsp(model) / D_stsp(training
stretch vs truth), both latent, in the truth's standardisation: how much of the attractor a model
recovers beyond what its data showed (R < 1: more than the data).

G0 (``--parts g0``, alone: it has no filter): the reference code's own Lorenz example, whose trained model the
reference repository ships (Results/Lorenz/test/001: args.json and checkpoints/model_5000.bson): the whole
series as the recording, no HRF (TR 0), no observation noise, 3:1 split, α 0.15, 5000 epochs. Same scores;
``dstsp`` compares generated states with the whole series. ``--reference-model model_5000.bson`` scores that
shipped model through the same metric engine (group "reference_code"): a check of dsr's training against
the reference's at the reference's own settings, apart from the HRF.

All fits (G1 and G2, every seed, noise level and loss_states) train in one stack
(:func:`dsr.training.loop.train`; stacked fits equal fits run alone). Writes
``benchmarks/results/lorenz_protocol<tag>.json`` (and the models) and prints a table last.

Checkpoint selection (``--train select_every=25 [select_steps=N]``, issue 13): every fit is scored by
:func:`dsr.analysis.checkpoint_score.dstsp_scorer` (D_stsp of a free-running generation against the
training part) and ends with its best epoch's parameters; the last epoch's parameters are kept too, and
both are evaluated, as groups "selected" and "last" of the same fits (selection does not change training).
``lorenz_protocol<tag>_train.json`` (selected epochs, score traces, times) is written as soon as training ends.
The preset's ``train.select_rescore`` is off here unless ``--train select_rescore=K`` asks for it (the device
scripts before it existed then run as they did); ``--snapshots N`` keeps every N-th scored checkpoint
(``benchmarks/selection_rules.py``).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
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

from dsr.analysis.checkpoint_score import selection_scorers  # noqa: E402
from dsr.analysis.dstsp import dstsp_bins  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import SubjectData, prepare_subject  # noqa: E402
from dsr.training.loop import log_progress, train  # noqa: E402
from lorenz_protocol_summary import floors, summarise, table  # noqa: E402
from selection_rules import SnapshotScorer, TimedScorer  # noqa: E402
from reference_results import lorenz_recording  # noqa: E402

SHARED = Path(os.environ.get("DSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "results"
KEYS = ("dstsp", "dstsp_median", "dstsp_test", "dh", "dstsp_latent", "dstsp_latent_units",
        "dstsp_latent_units_median", "dh_latent", "pe_train", "pe_test", "lyapunov_max", "diverged_rollouts")


def score_fits(model: ConvSSM, subjects, eval_cfg, seeds, truths) -> list[dict]:
    """Every metric of every fit of the stack: the one call into the metric engine."""
    from dsr.analysis.evaluate import evaluate

    return [met.to_json() for met, _, _ in evaluate(model, subjects, eval_cfg, list(seeds), latent_truths=truths)]


def protocol_fits(args, L: np.ndarray, K: int) -> list[dict]:
    """The fits of the run: one dict per fit (part, recording length, noise, loss_states, seed; alpha and
    targets where given)."""
    g1_len = args.g1_length or len(L) - K
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    fits = []
    for al, ls, tg in itertools.product(args.alphas or [None], args.loss_states, args.targets):
        group = []
        if "g0" in args.parts:
            group += [dict(part="G0", length=args.g1_length or len(L), noise=0.0, loss_states=ls, seed=s)
                      for s in seeds]
        if "g1" in args.parts:
            group += [dict(part="G1", length=g1_len, noise=nz, loss_states=ls, seed=s)
                      for nz in args.noise for s in seeds]
        if "g2" in args.parts:
            group += [dict(part="G2", length=int(np.ceil(n / 0.75)), n_train=n, noise=0.01, loss_states=ls, seed=s)
                      for n in args.g2_train for s in seeds]
        for f in group:
            if al is not None:
                f["alpha"] = al
            if tg != "wiener":  # the default leaves the fits' keys as before (saved stacks still load)
                f["targets"] = tg
        fits += group
    return fits


def oracle_targets(sd: SubjectData, L: np.ndarray, K: int) -> SubjectData:
    """``sd`` with its training targets replaced by the clean latent (sample t of a recording is the filtered
    L[K + t], ``lorenz_recording``), NaN where the Wiener targets are NaN: what the deconvolution should give."""
    d = sd.d.copy()  # (T, 3)
    ok = np.isfinite(d[:, 0])
    d[ok] = L[K + np.flatnonzero(ok)]
    return dataclasses.replace(sd, d=d)


def _prepare(job):
    x, h, cfg = job
    return prepare_subject(x, h, cfg, standardise=False)


def _prepare_all(recordings: dict, h: np.ndarray, cfg) -> dict:
    """prepare_subject of every recording, in parallel processes (the sliding test-part deconvolution of
    a 100 000-step series takes seconds)."""
    keys = list(recordings)
    jobs = [(recordings[k], h, cfg) for k in keys]
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers < 2 or sum(len(x) for x in recordings.values()) < 50000:  # short: not worth new processes
        return {k: _prepare(j) for k, j in zip(keys, jobs)}
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        return dict(zip(keys, pool.map(_prepare, jobs)))


def write_train_record(path: Path, fits: list[dict], outcome, meta: dict) -> None:
    """Right after training: each fit's selected epoch and score trace, and the times (a run killed during
    the evaluation still leaves them)."""
    traces = {}
    for r in outcome.curve:
        if "select_score" in r:
            traces.setdefault(r["fit"], []).append([r["epoch"], r["select_score"]])
    rows = [dict(f, status=st, selected_epoch=e, select_trace=traces.get(i, []))
            for i, (f, st, e) in enumerate(zip(fits, outcome.status, outcome.selected_epoch))]
    if outcome.rescored is not None:  # train.select_rescore: each fit's kept checkpoints, [epoch, score, rescore]
        for row, kept in zip(rows, outcome.rescored):
            row["select_rescored"] = kept
    path.write_text(json.dumps({"fits": rows, "seconds": {k: meta.get(k) for k in
                                                          ("prepare_seconds", "train_seconds", "select_seconds")},
                                "device": meta.get("device")}, indent=1, default=float))


def _overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` strings → a dict (true/false as bool, then int, then float, then the string itself)."""
    out = {}
    for item in items:
        key, _, val = item.partition("=")
        if not key or not _:
            raise SystemExit(f"--train wants KEY=VALUE, got {item!r}")
        if val.lower() in ("true", "false"):
            out[key] = val.lower() == "true"
            continue
        for conv in (int, float, str):
            try:
                out[key] = conv(val)
                break
            except ValueError:
                continue
    return out


def _with_reference_model(model: ConvSSM, fits, subs, seeds, truths, status, path):
    """The stack plus one fit holding the reference code's trained latent model (identity observation)."""
    from julia_bson import read_shallow_plrnn

    ref = read_shallow_plrnn(path)
    if model.spec.latent_model != "cshPLRNN" or ref["A"].shape[0] != model.spec.latent_dim \
            or ref["h2"].shape[0] != model.spec.hidden_dim:
        raise SystemExit(f"{path}: a clipped shallow PLRNN with M = {ref['A'].shape[0]}, L = {ref['h2'].shape[0]}; "
                         f"the fits are {model.spec.latent_model} with M = {model.spec.latent_dim}, "
                         f"L = {model.spec.hidden_dim}")
    one = ConvSSM.initialise(model.spec, model.filter[:1].cpu(), [0])
    params = {k: v.clone() for k, v in one.params.items()}
    for k, v in ref.items():
        params[f"latent.{k}"] = torch.as_tensor(v, dtype=params[f"latent.{k}"].dtype)[None]  # (1, ...)
    params = {k: torch.cat([model.params[k].cpu(), v]) for k, v in params.items()}
    both = ConvSSM(model.spec, params, torch.cat([model.filter.cpu(), one.filter]))
    first = fits[0]
    ref_fit = dict(first, seed=0, pick="reference_code", selected_epoch=None)
    return both, fits + [ref_fit], subs + [subs[0]], seeds + [0], truths + [truths[0]], list(status) + ["ok"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--eval-device", default=None, help="device of the evaluation (default: --device)")
    p.add_argument("--epochs", type=int, default=None, help="default: the lorenz63 preset's (10 000)")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed … first-seed + seeds − 1")
    p.add_argument("--parts", nargs="+", default=["g1", "g2"], choices=["g0", "g1", "g2"],
                   help="g0 (the reference's own example, no HRF) runs alone")
    p.add_argument("--reference-model", default=None,
                   help="G0: the reference code's trained model (BSON.jl file), scored beside the fits")
    p.add_argument("--noise", type=float, nargs="+", default=[0.01, 0.1], help="G1 observation noise levels")
    p.add_argument("--loss-states", nargs="+", default=["free", "forced"], choices=["free", "forced", "reference"])
    p.add_argument("--targets", nargs="+", default=["wiener"], choices=["wiener", "oracle"],
                   help="GTF targets of the G1/G2 fits: the Wiener deconvolution (the method), or the clean latent "
                        "itself (oracle: what deconvolution error costs), each a group of the same stack")
    p.add_argument("--alphas", type=float, nargs="+", default=None,
                   help="forcing strengths, each a group of fits in the same stack (default: the preset's α)")
    p.add_argument("--train", nargs="+", default=[], metavar="KEY=VALUE",
                   help="train config overrides, e.g. noise=0.0 lr_end=1e-5 (numbers parsed as float/int)")
    p.add_argument("--eval", nargs="+", default=[], metavar="KEY=VALUE",
                   help="eval config overrides, e.g. generation=stochastic (observation noise in the rollouts)")
    p.add_argument("--g2-train", type=int, nargs="+", default=[2250, 5000], help="G2 training steps")
    p.add_argument("--g1-length", type=int, default=0, help="G1 recording length (0: all of lorenz63.npy)")
    p.add_argument("--g2-truth", type=int, nargs=2, default=[10000, 100000], help="G2 held-out truth steps")
    p.add_argument("--rollouts", type=int, default=10, help="rollouts per fit (D_stsp is their mean)")
    p.add_argument("--floor-sims", type=int, default=4, help="independent simulated trajectories for the floors")
    p.add_argument("--snapshots", type=int, default=0, metavar="N",
                   help="with checkpoint selection: keep every N-th scored checkpoint's parameters (0: none)")
    p.add_argument("--tag", default="")
    p.add_argument("--phase", default="all", choices=["all", "train", "eval"],
                   help="train: fit and save the models only; eval: score the saved models (e.g. on the CPU "
                        "while the GPU trains something else)")
    p.add_argument("--out", default=str(OUT), help="folder of the JSON and the models")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run: 2 epochs, 2 seeds, short series")
    args = p.parse_args(argv)
    # no rescoring unless --train select_rescore=K: the runs before it existed (session 13) had none
    train_over: dict = {"select_rescore": 0} | ({} if args.epochs is None else {"epochs": args.epochs}) \
        | _overrides(args.train)
    eval_over: dict = {"n_rollouts": args.rollouts, **_overrides(args.eval)}
    sim_steps = 100000
    if args.smoke:
        args.seeds, args.g1_length, args.g2_train, args.g2_truth = 2, 1200, [400, 600], [10000, 12000]
        args.rollouts, args.floor_sims, sim_steps = 2, 2, 2000
        train_over.update(epochs=2, batches_per_epoch=2, batch_size=4)
        eval_over.update(n_rollouts=2, lyap_steps=100, lyap_transient=20, lyap_orbits=2)
        args.tag = args.tag or "_smoke"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    t_start = time.perf_counter()

    L = np.load(SHARED / "lorenz63.npy")  # (100000, 3), one sample per 0.01 Lorenz time
    g0 = "g0" in args.parts
    if g0 and len(args.parts) > 1:
        raise SystemExit("--parts g0 runs alone (no filter; G1 and G2 have the HRF)")
    if g0 and "oracle" in args.targets:
        raise SystemExit("--targets oracle belongs to G1 and G2 (G0's targets are its clean data already)")
    if args.reference_model and not g0:
        raise SystemExit("--reference-model belongs to --parts g0")
    cfg = load_config("lorenz63", train=train_over, eval=eval_over, **({"filter": {"kind": "none"}} if g0 else {}))
    h = np.array([1.0]) if g0 else spm_hrf(0.2)  # the recording's filter (lorenz_recording)
    K = len(h)
    fits = protocol_fits(args, L, K)
    if not fits:
        raise SystemExit("nothing to fit")
    g1_len = args.g1_length or len(L) - K
    recordings = {}
    for f in fits:
        key = (f["length"], f["noise"])
        if key not in recordings:
            recordings[key] = (L[:f["length"]].astype(np.float64) if g0  # (T, 3)
                               else lorenz_recording(L, f["length"], f["noise"])[0])
    subjects = _prepare_all(recordings, h, cfg)
    g2_truth = L[args.g2_truth[0]:args.g2_truth[1]]  # held out: every G2 recording ends before it
    if any(f["part"] == "G2" and f["length"] + K > args.g2_truth[0] for f in fits):
        raise SystemExit("a G2 recording overlaps the held-out truth")
    truths = [L[:f["length"]] if f["part"] == "G0" else L[K:K + f["length"]] if f["part"] == "G1" else g2_truth
              for f in fits]
    seeds = [f["seed"] for f in fits]
    oracle = {k: oracle_targets(sd, L, K) for k, sd in subjects.items()} if "oracle" in args.targets else {}
    subs = [(oracle if f.get("targets") == "oracle" else subjects)[(f["length"], f["noise"])] for f in fits]
    t_prep = time.perf_counter() - t_start

    models = out_dir / f"lorenz_protocol{args.tag}_models.safetensors"
    last_models = out_dir / f"lorenz_protocol{args.tag}_last_models.safetensors"
    if args.phase in ("all", "train"):
        spec = ConvSSMSpec(cfg.model.latent_model, cfg.model.latent_dim, cfg.model.hidden_dim,
                           cfg.model.observation, n_obs=3, tr=0.2, meta={"fits": fits, "config": cfg.to_dict()})
        model = ConvSSM.initialise(spec, torch.as_tensor(h), seeds).to(args.device)
        print(f"{len(fits)} fits stacked on {args.device}: {cfg.train.epochs} epochs", flush=True)
        t0 = time.perf_counter()
        alphas = [f["alpha"] for f in fits] if args.alphas else None
        scorer, rescorer = selection_scorers(subs, seeds, cfg.train, cfg.eval)
        if scorer is not None:
            scorer = SnapshotScorer(scorer, args.snapshots) if args.snapshots > 0 else TimedScorer(scorer)
        outcome = train(model, subs, cfg.train, seeds, progress=log_progress(every=100),
                        loss_states=[f["loss_states"] for f in fits], alphas=alphas, scorer=scorer, rescorer=rescorer)
        model.to("cpu")
        model.spec.meta.update(status=outcome.status, train_seconds=time.perf_counter() - t0,
                               prepare_seconds=t_prep, selected_epoch=outcome.selected_epoch,
                               select_seconds=None if scorer is None else scorer.seconds,
                               device=torch.cuda.get_device_name() if str(args.device).startswith("cuda") else "cpu")
        model.save(models)
        if outcome.last_params is not None:
            ConvSSM(model.spec, outcome.last_params, model.filter).save(last_models)
            write_train_record(out_dir / f"lorenz_protocol{args.tag}_train.json", fits, outcome, model.spec.meta)
        if isinstance(scorer, SnapshotScorer):
            scorer.save(out_dir, args.tag, fits, [r["epoch"] for r in outcome.curve if r["fit"] == 0
                                                  and "select_score" in r])
        print(f"saved {models}; train {model.spec.meta['train_seconds']:.0f} s"
              + ("" if scorer is None else f" (scoring {scorer.seconds:.1f} s in {scorer.calls} calls)"), flush=True)
        if args.phase == "train":
            return None
    model = ConvSSM.load(models)
    if model.spec.meta.get("fits") != fits:
        raise SystemExit(f"{models} holds other fits than these settings ask for")
    status, train_s = model.spec.meta["status"], model.spec.meta["train_seconds"]

    t1 = time.perf_counter()
    picked = model.spec.meta.get("selected_epoch")
    if picked is not None:  # selected and last parameters of the same fits, evaluated in one stack
        last = ConvSSM.load(last_models)
        model = ConvSSM(model.spec, {k: torch.cat([v, last.params[k]]) for k, v in model.params.items()},
                        torch.cat([model.filter, last.filter]))
        fits = [dict(f, pick="selected", selected_epoch=e) for f, e in zip(fits, picked)] + \
               [dict(f, pick="last", selected_epoch=cfg.train.epochs) for f in fits]
        subs, seeds, truths, status = subs * 2, seeds * 2, truths * 2, status * 2
    if args.reference_model:  # the reference code's shipped model, scored by the same engine
        model, fits, subs, seeds, truths, status = _with_reference_model(
            model, fits, subs, seeds, truths, status, args.reference_model)
    model = model.to(args.eval_device or args.device)
    metrics = score_fits(model, subs, cfg.eval, seeds, truths)
    eval_s = time.perf_counter() - t1
    rows = []
    for f, met, st in zip(fits, metrics, status):
        rows.append(dict(f, status=st, **{k: met.get(k) for k in KEYS}))

    t2 = time.perf_counter()
    fl = floors(L, h, g1_len, g2_truth, recordings, args.floor_sims, sim_steps, g0=g0, eval_cfg=cfg.eval,
                lyap_fits=args.seeds)
    mu, sd = g2_truth.mean(0), g2_truth.std(0)
    g2_den = {f["length"]: dstsp_bins(g2_truth, (L[K:K + f["n_train"]] - mu) / sd) for f in fits if f["part"] == "G2"}
    floor_s = time.perf_counter() - t2
    summary = summarise(fits, rows, fl, g2_den)
    res = {"setup": vars(args), "config": cfg.to_dict(), "kernel_taps": K, "g1_length": g1_len,
           "fits": rows, "floors": fl, "g2_training_stretch_vs_truth": {str(k): v for k, v in g2_den.items()},
           "summary": summary,
           "seconds": {"prepare": t_prep, "train_all_fits": train_s, "evaluate_all_fits": eval_s, "floors": floor_s,
                       "selection_scoring": model.spec.meta.get("select_seconds"),
                       "total": time.perf_counter() - t_start},
           "torch": torch.__version__, "train_device": model.spec.meta.get("device"),
           "eval_device": str(args.eval_device or args.device)}
    path = out_dir / f"lorenz_protocol{args.tag}.json"
    path.write_text(json.dumps(res, indent=2, default=float))
    print(f"wrote {path}; train {train_s:.0f} s, evaluate {eval_s:.0f} s, floors {floor_s:.0f} s", flush=True)
    print(table(summary), flush=True)
    return res


if __name__ == "__main__":
    main()

"""Every GPU used by the participant level: a stacked cohort on one GPU against two, in one call.

    python benchmarks/multi_gpu.py [--subjects 51] [--seeds 20] [--epochs 300] [--regions 10]
                                   [--volumes 300] [--work /tmp/dsr_multi_gpu] [--nprocs N] [--smoke]

1. Generates a BIDS cohort with :mod:`dsr.simulate.bids_dataset` (Lorenz-96 regions through the HRF,
   ``--subjects`` participants, one run each) and extracts every run once (the series cache), so the
   timed calls below fit and write only.
2. Times ``participant --stack --seeds 0..S-1`` (``--subjects × --seeds`` fits, the ``quick`` preset with
   ``--epochs`` epochs) on one GPU (``--device cuda:0``: one stack in this process) and on every GPU
   (``--device cuda``: one stack shard per GPU, each in its own worker process), each into a fresh output
   folder holding a copy of the extracted series; both calls get ``--nprocs`` CPU processes (default: every
   core) for writing the fits' outputs. Prints the ratio (target ≥ 1.8 with two GPUs), the seconds per stage
   of each call (:mod:`dsr.timing`, summed over the processes that worked on a stage) and checks
   that every fit of both calls is ``ok`` and that the second call's fits ran on every GPU.
3. Checks the local executor on a small part of the cohort (``--device cuda --fits-per-gpu 4``): every fit
   ``ok``, and fits on every GPU.

``--smoke`` runs the same protocol on the CPU (one process against ``--nprocs 2``) with a tiny cohort: a
check of the script, not a measurement. Writes ``benchmarks/results/multi_gpu.json`` (``--smoke``:
``multi_gpu_smoke.json``).

Imports: torch, numpy, scipy, pandas, safetensors, matplotlib (dsr itself), PyWavelets (deconvolution),
nibabel (the generated NIfTI files), nilearn (+ scikit-learn, joblib; region extraction).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr import timing  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.pipelines.participant import run_participant  # noqa: E402
from dsr.simulate.bids_dataset import make_dataset  # noqa: E402


def _participant(bids_dir: Path, out: Path, cfg, seeds, **kw) -> int:
    return run_participant(bids_dir, out, participant_labels=None, task=None, session=None, space=None, atlas=None,
                           config=cfg, confounds=None, seeds=seeds, **kw)


def _fresh(out: Path, cache: Path) -> Path:
    """A new output folder holding a copy of the extracted series (the fits find them in the cache)."""
    shutil.rmtree(out, ignore_errors=True)
    for p in cache.rglob("*_desc-cleaned_timeseries.*"):
        dst = out / p.relative_to(cache)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dst)
    return out


def _check(out: Path, n_fits: int) -> dict:
    """Every fit ok? On which devices did they run?"""
    status = pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False)
    devices = sorted({json.loads(p.read_text())["device"] for p in out.rglob("*_desc-convssm_metrics.json")})
    return {"fits": int(len(status)), "ok": int((status.status == "ok").sum()),
            "all_ok": bool(len(status) == n_fits and (status.status == "ok").all()), "devices": devices}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=51)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--regions", type=int, default=10)
    ap.add_argument("--volumes", type=int, default=300)
    ap.add_argument("--work", default="/tmp/dsr_multi_gpu")
    ap.add_argument("--nprocs", type=int, default=None,
                    help="CPU processes (extraction, writing the fits' outputs); default: the machine's cores")
    ap.add_argument("--smoke", action="store_true", help="CPU: 1 process against 2, a tiny cohort")
    args = ap.parse_args()
    if args.smoke:
        args.subjects, args.seeds, args.epochs, args.regions, args.volumes = 3, 2, 2, 3, 80
    import torch

    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not args.smoke and n_gpus < 2:
        print(f"multi_gpu: needs two GPUs, this machine has {n_gpus} (use --smoke for a CPU check)")
        return 1
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    bids_dir = work / "ds"
    t0 = time.perf_counter()
    make_dataset(bids_dir, n_subjects=args.subjects, seed=0, n_volumes=args.volumes, tr=1.0,
                 n_regions=args.regions, shape=(10, 10, 10))
    cfg = load_config("quick").replace(train={"epochs": args.epochs},
                                       eval={"n_rollouts": 4, "lyap_steps": 200, "lyap_transient": 50,
                                             "lyap_orbits": 2})
    seeds = list(range(args.seeds))
    n_fits = args.subjects * args.seeds
    import os

    nprocs = args.nprocs or os.cpu_count() or 1
    one, every = ({"device": "cpu"}, {"device": "cpu", "nprocs": 2}) if args.smoke else \
        ({"device": "cuda:0", "nprocs": nprocs}, {"device": "cuda", "nprocs": nprocs})
    # extract once, and compile the kernels once on every device (Triton's cache is on disk)
    warm = cfg.replace(train={"epochs": 1, "batches_per_epoch": 2})
    _participant(bids_dir, work / "cache", warm, [0, 1], stack=True, **every)
    print(f"multi_gpu: cohort of {args.subjects} subjects generated and extracted in "
          f"{time.perf_counter() - t0:.0f} s; {n_fits} fits per call", flush=True)
    result = {"subjects": args.subjects, "seeds": args.seeds, "epochs": args.epochs, "regions": args.regions,
              "volumes": args.volumes, "gpus": n_gpus, "smoke": args.smoke}
    for name, kw in (("one", one), ("every", every)):
        out = _fresh(work / f"out_{name}", work / "cache")
        timing.reset()
        t = time.perf_counter()
        rc = _participant(bids_dir, out, cfg, seeds, stack=True, **kw)
        result[f"seconds_{name}"] = time.perf_counter() - t
        result[f"stages_{name}"] = {k: round(v, 2) for k, v in timing.seconds().items()}
        result[f"stage_cpu_{name}"] = {k: round(v, 2) for k, v in timing.cpu_seconds().items()}
        result[f"stack_{name}"] = dict(_check(out, n_fits), rc=rc)
        print(f"multi_gpu: --stack {kw}: {result[f'seconds_{name}']:.1f} s, {result[f'stack_{name}']}; seconds per "
              f"stage (summed over processes): {result[f'stages_{name}']}", flush=True)
    result["speedup"] = result["seconds_one"] / result["seconds_every"]
    n_local = min(n_fits, 16)
    out = _fresh(work / "out_local", work / "cache")
    local_kw = {"device": "cpu", "nprocs": 2} if args.smoke else {"device": "cuda", "fits_per_gpu": 4}
    subs = [f"{i + 1:02d}" for i in range(max(1, n_local // 2))]
    rc = run_participant(bids_dir, out, participant_labels=subs, task=None, session=None, space=None, atlas=None,
                         config=cfg.replace(train={"epochs": min(args.epochs, 10)}), confounds=None, seeds=[0, 1],
                         **local_kw)
    result["local"] = dict(_check(out, 2 * len(subs)), rc=rc, **local_kw)
    want = ["cpu"] if args.smoke else [f"cuda:{i}" for i in range(n_gpus)]
    result["checks"] = {"stack_one_all_ok": result["stack_one"]["all_ok"],
                        "stack_every_all_ok": result["stack_every"]["all_ok"],
                        "stack_every_on_every_gpu": result["stack_every"]["devices"] == want,
                        "local_all_ok": result["local"]["all_ok"],
                        "local_on_every_gpu": result["local"]["devices"] == want}
    print(f"multi_gpu: speedup {result['speedup']:.2f}x on {max(n_gpus, 1)} device(s) "
          f"({result['seconds_one']:.1f} s -> {result['seconds_every']:.1f} s); checks {result['checks']}")
    path = ROOT / "benchmarks" / "results" / ("multi_gpu_smoke.json" if args.smoke else "multi_gpu.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

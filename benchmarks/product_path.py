"""The product path timed stage by stage: a LEMON-scale BIDS cohort from NIfTI to group report.

    python benchmarks/product_path.py [--subjects 51] [--seeds 20] [--epochs 1000] [--regions 16]
                                      [--volumes 652] [--tr 1.4] [--config rest_fmri] [--device auto]
                                      [--nprocs N] [--threads 1] [--no-reports] [--work /tmp/dsr_product]
                                      [--keep-dataset]
                                      [--out benchmarks/results/product_path.json] [--profile FILE]

1. Generates a BIDS dataset with :mod:`dsr.simulate.bids_dataset` (``--subjects`` participants, one rest run
   each, ``--regions`` regions, ``--volumes`` volumes at ``--tr`` s; raw NIfTI and fMRIPrep-style
   derivatives with confounds; Lorenz-96 regions through the SPM HRF). Not timed.
2. ``participant --stack --seeds 0..S-1`` through the product (:func:`dsr.pipelines.participant.run_participant`)
   with the ``--config`` preset at ``--epochs`` epochs, from the NIfTI files (nothing extracted before), then
   ``group`` (:func:`dsr.pipelines.group.run_group`) with its HTML reports.
3. Writes a JSON: wall seconds of each level and end to end; seconds per stage from the product's stage
   timers (:mod:`dsr.timing`: discovery, extraction, deconvolution, training, evaluation, writing, figures,
   status, group, reports; where several processes work on a stage these are summed over them, so a stage
   can exceed the wall time) and their CPU seconds (less sensitive to a busy machine); peak GPU memory
   (``torch.cuda.max_memory_allocated`` of this process, where the fits train on CUDA in it) and peak CPU RSS
   of this process and of its finished children (``resource.getrusage``); the fits' status counts and the
   machine's load average.

``--profile FILE`` also writes a cProfile of the whole call (this process only) for ``python -m pstats``.

Imports: torch, numpy, scipy, pandas, safetensors, matplotlib (dsr itself), PyWavelets (deconvolution),
nibabel (the generated NIfTI files), nilearn (+ scikit-learn, joblib; region extraction).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr import timing  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.pipelines.group import run_group  # noqa: E402
from dsr.pipelines.participant import run_participant  # noqa: E402
from dsr.simulate.bids_dataset import make_dataset  # noqa: E402


def peak_rss_mib() -> dict:
    """Peak resident memory (MiB) of this process and of its largest finished child (Linux: KiB units)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self": round(own, 1), "largest_child": round(kids, 1)}


def status_counts(out: Path) -> dict:
    import pandas as pd

    status = pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False)
    return {str(k): int(v) for k, v in status.status.value_counts().items()}


def run(args) -> dict:
    import torch

    work = Path(args.work)
    bids_dir, out = work / "ds", work / "out"
    stamp = json.dumps({k: getattr(args, k) for k in ("subjects", "volumes", "tr", "regions")}, sort_keys=True)
    t0 = time.perf_counter()
    if args.keep_dataset and (work / "dataset.json").is_file() and (work / "dataset.json").read_text() == stamp:
        shutil.rmtree(out, ignore_errors=True)  # the same generated dataset, a fresh output folder
    else:
        shutil.rmtree(work, ignore_errors=True)
        make_dataset(bids_dir, n_subjects=args.subjects, seed=0, n_volumes=args.volumes, tr=args.tr,
                     n_regions=args.regions, raw=True)
        (work / "dataset.json").write_text(stamp)
    t_gen = time.perf_counter() - t0
    print(f"product_path: {args.subjects} subjects generated in {t_gen:.0f} s", flush=True)
    cfg = load_config(args.config).replace(train={"epochs": args.epochs})
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timing.reset()
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    rc_p = run_participant(bids_dir, out, participant_labels=None, task=None, session=None, space=None, atlas=None,
                           config=cfg, device=args.device, confounds=None, seeds=seeds, stack=True,
                           nprocs=args.nprocs, threads=args.threads)
    t_part = time.perf_counter() - t0
    print(f"product_path: participant {t_part:.1f} s (rc {rc_p})", flush=True)
    partial = {"partial": "participant level only (the group level had not finished)", "wall_seconds":
               {"generate_dataset": round(t_gen, 2), "participant": round(t_part, 2)},
               "stage_seconds": timing.seconds(), "stage_cpu_seconds": timing.cpu_seconds(),
               "status": status_counts(out),
               "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if cuda else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(partial, indent=1) + "\n")  # kept if the command is cut short
    t0 = time.perf_counter()
    rc_g = run_group(bids_dir, out, reports=not args.no_reports, nprocs=args.nprocs, threads=args.threads)
    t_group = time.perf_counter() - t0
    print(f"product_path: group {t_group:.1f} s (rc {rc_g})", flush=True)
    stages = {k: round(v, 3) for k, v in timing.seconds().items()}
    cpu = {k: round(v, 3) for k, v in timing.cpu_seconds().items()}
    return {"subjects": args.subjects, "seeds": args.seeds, "fits": args.subjects * args.seeds,
            "epochs": args.epochs, "regions": args.regions, "volumes": args.volumes, "tr": args.tr,
            "config": args.config, "device": args.device, "nprocs": args.nprocs, "threads": args.threads,
            "reports": not args.no_reports, "rc": {"participant": rc_p, "group": rc_g},
            "status": status_counts(out),
            "wall_seconds": {"generate_dataset": round(t_gen, 2), "participant": round(t_part, 2),
                             "group": round(t_group, 2), "end_to_end": round(t_part + t_group, 2)},
            "stage_seconds": stages, "stage_cpu_seconds": cpu,
            "stage_note": "summed over the processes that worked on a stage; CPU seconds are each process's own "
                          "(all its threads; a GPU's work is not in them)",
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if cuda else None,
            "peak_rss_mib": peak_rss_mib(), "load_average_after": list(os.getloadavg()),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if cuda else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=51)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--regions", type=int, default=16)
    ap.add_argument("--volumes", type=int, default=652)
    ap.add_argument("--tr", type=float, default=1.4)
    ap.add_argument("--config", default="rest_fmri")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--nprocs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-reports", action="store_true")
    ap.add_argument("--work", default="/tmp/dsr_product")
    ap.add_argument("--keep-dataset", action="store_true",
                    help="reuse the dataset generated in --work by an earlier call with the same sizes")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "product_path.json"))
    ap.add_argument("--profile", default=None, help="write a cProfile of the call to this file")
    args = ap.parse_args(argv)
    load0 = list(os.getloadavg())
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        result = prof.runcall(run, args)
        prof.dump_stats(args.profile)
    else:
        result = run(args)
    result["load_average_before"] = load0
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("wall_seconds", "stage_seconds", "stage_cpu_seconds", "status",
                                             "peak_gpu_mib", "peak_rss_mib")}))
    ok = result["rc"]["participant"] == 0 and result["rc"]["group"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

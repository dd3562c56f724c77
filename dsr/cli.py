"""Command line: ``dsr fit FILE --tr S --out DIR`` and the BIDS-App levels.

    dsr fit FILE --tr SECONDS --out DIR [--config PRESET] [--seed N] [--device D]
            [--nuisance FILE] [--inputs FILE] [--latent-truth FILE] [--resume]
    dsr BIDS_DIR OUTPUT_DIR participant [--participant-label 01 02 ...] [--config ...] [--atlas ...]
    dsr BIDS_DIR OUTPUT_DIR group
    dsr --version
    dsr BIDS_DIR OUTPUT_DIR sweep --sweep FILE_OR_NAME [--participant-label ...]
    participant and sweep: [--executor local|ray|stack] [--ray-address ADDR] [--device cuda] [--fits-per-gpu K]
    every level: [--nprocs N] (worker processes) [--omp-nthreads N] (threads per process, default 1)
    participant: [--stack] (all runs x seeds trained as one stacked model)

Every user error is one line on stderr (``dsr: error: ...``) and a non-zero exit.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsr.errors import DsrError
from dsr.log import user_log

EXIT_USAGE, EXIT_ERROR = 2, 1


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        print(f"dsr: error: {message} (see dsr --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="preset name (paper, lorenz63, aln, rest_fmri, calcium, quick) "
                                                  "or path to a TOML file")
    p.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--epochs", type=int, default=None, help="override the number of training epochs")
    p.add_argument("--omp-nthreads", type=int, default=1, metavar="N",
                   help="compute threads of every process that fits or analyses (torch, OpenMP, BLAS; default 1)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def fit_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dsr fit", description="Fit a convSSM to one recording (T × N array).")
    p.add_argument("file", help="recording: .npy, .csv or .tsv with T rows and N columns; or Ca2+ imaging: "
                                "a suite2p output folder or an NWB file (fitted as dF/F)")
    p.add_argument("--tr", type=float, default=None, help="sampling interval in seconds (required for tables; "
                                                          "read from the file for suite2p / NWB when absent)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--nuisance", default=None, help="nuisance regressors (T × P) for the regressor observation model")
    p.add_argument("--inputs", default=None, help="external inputs (T × Q)")
    p.add_argument("--latent-truth", default=None, help="ground-truth latents (T' × n) for latent-space metrics")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--no-standardise", action="store_true", help="keep the data's units (no z-scoring)")
    _common(p)
    return p


def bids_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dsr", description="BIDS App: dsr BIDS_DIR OUTPUT_DIR {participant,group,sweep}; "
                                        "or dsr fit FILE --tr S --out DIR for one array.")
    p.add_argument("bids_dir")
    p.add_argument("output_dir")
    p.add_argument("analysis_level", choices=["participant", "group", "sweep"])
    p.add_argument("--participant-label", "--participant_label", nargs="+", default=None)
    p.add_argument("--task", default=None)
    p.add_argument("--session", default=None)
    p.add_argument("--space", default=None)
    p.add_argument("--atlas", default=None, help="labels/maps atlas NIfTI, or coordinates by name (power, "
                                                 "dosenbach, seitzman)")
    p.add_argument("--confounds", default=None, help="confound strategy, e.g. motion6, motion24+wmcsf")
    p.add_argument("--nprocs", "--n-jobs", dest="nprocs", type=int, default=1, metavar="N",
                   help="worker processes on the CPU (participant, sweep, group; with --stack: stack shards)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="participant: fit every run once per seed (the group level reports mean and spread)")
    p.add_argument("--sweep", default=None, help="sweep level: a sweep TOML file, or a name from configs/sweeps "
                                                 "(alpha_lr, random_small)")
    p.add_argument("--executor", choices=["local", "ray", "stack"], default="local",
                   help="local processes/GPUs (default), tasks on a Ray cluster, or stacked models (= --stack)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (auto, HOST:6379, ray://HOST:10001); "
                                                       "default: start a local Ray cluster")
    p.add_argument("--fits-per-gpu", type=int, default=1, help="fits sharing one GPU (with --device cuda or auto)")
    p.add_argument("--max-retries", type=int, default=2, help="Ray: reruns of a fit whose worker process died")
    p.add_argument("--stack", action="store_true",
                   help="participant: train all fits (runs x seeds) as one stacked model in this process "
                        "(fills a GPU; each fit's outputs are those of a fit of its own)")
    _common(p)
    return p


def _load_cfg(args):
    from dsr.config import load_config

    cfg = load_config(args.config)
    if args.seed is not None:
        cfg = cfg.replace(seed=args.seed)
    if args.epochs is not None:
        cfg = cfg.replace(train={"epochs": args.epochs})
    return cfg


def run_fit(args) -> int:
    from dsr.analysis.metrics_record import FitMetrics
    from dsr.io.arrays import load_array, validate_companion
    from dsr.io.atomic import check_writable
    from dsr.pipelines.fit_array import fit_to_dir, resolve_device
    from dsr.training.loop import log_progress

    from dsr.pipelines.executors import limit_threads

    cfg = _load_cfg(args)
    resolve_device(args.device)
    if args.omp_nthreads < 1:
        raise DsrError("--omp-nthreads must be >= 1")
    limit_threads(args.omp_nthreads)
    x, tr = _load_recording(Path(args.file), args.tr, cfg)
    extra = {}
    for key, what in (("nuisance", "nuisance regressors"), ("inputs", "external inputs"),
                      ("latent_truth", "latent ground truth")):
        path = getattr(args, key)
        extra[key] = None if path is None else load_array(path, what)
        if key != "latent_truth" and extra[key] is not None:
            validate_companion(extra[key], len(x), path, what)
    out = check_writable(Path(args.out))  # a read-only or full output folder: one line, before training
    metrics = fit_to_dir(x, tr, out, cfg, device=args.device, resume=args.resume, source=str(args.file),
                         progress=log_progress(), standardise=not args.no_standardise, **extra)
    rec = FitMetrics.from_json(metrics)
    print(f"dsr: {metrics['status']}: D_stsp {rec.score('dstsp'):.4g}, D_H {rec.score('dh'):.4g}, "
          f"lambda_max {rec.score('lyapunov_max_per_second'):.4g}/s -> {out}", file=sys.stderr)
    return 0 if metrics["status"] == "ok" else EXIT_ERROR


def _load_recording(path: Path, tr: float | None, cfg):
    """A (T, N) array and its sampling interval: a table, or a Ca2+ recording (suite2p folder / NWB)."""
    from dsr.io.arrays import load_array

    if path.is_dir() or path.suffix.lower() == ".nwb":
        from dsr.io.calcium import load_calcium

        f = cfg.filter
        rec = load_calcium(path, fs=None if tr is None else 1.0 / tr, indicator=f.indicator, tau=f.tau)
        return rec.traces, rec.dt
    if tr is None:
        raise DsrError(f"{path}: --tr (sampling interval in seconds) is required for a table")
    return load_array(path), tr


def run_bids(args) -> int:
    if args.analysis_level == "sweep":
        return run_sweep_level(args)
    if args.sweep is not None:
        raise DsrError("--sweep is for the sweep level: dsr BIDS_DIR OUTPUT_DIR sweep --sweep FILE")
    cfg = _load_cfg(args)
    if args.analysis_level == "participant":
        from dsr.pipelines.participant import run_participant

        return run_participant(Path(args.bids_dir), Path(args.output_dir), participant_labels=args.participant_label,
                               task=args.task, session=args.session, space=args.space, atlas=args.atlas,
                               config=cfg, device=args.device, confounds=args.confounds, nprocs=args.nprocs,
                               seeds=args.seeds, executor=args.executor, ray_address=args.ray_address,
                               fits_per_gpu=args.fits_per_gpu, max_retries=args.max_retries,
                               stack=args.stack, threads=args.omp_nthreads)
    from dsr.pipelines.group import run_group

    # the group level analyses every fit with its own config unless --config names one
    return run_group(Path(args.bids_dir), Path(args.output_dir), config=cfg if args.config else None,
                     nprocs=args.nprocs,
                     threads=args.omp_nthreads)


def run_sweep_level(args) -> int:
    """``dsr BIDS OUT sweep --sweep FILE``: trials × subjects × seeds, best trial per subject."""
    import dataclasses

    from dsr.config import load_config
    from dsr.pipelines.executors import ExecutorSettings
    from dsr.pipelines.sweep import load_sweep, run_sweep

    if args.sweep is None:
        raise DsrError("the sweep level needs --sweep FILE (a sweep TOML file or a name from configs/sweeps)")
    if args.seed is not None or args.seeds is not None:
        raise DsrError("the sweep's seeds come from its file (seeds = [...]); drop --seed/--seeds")
    spec = load_sweep(args.sweep)
    if args.epochs is not None:  # the command line wins over the file's [fixed]
        spec = dataclasses.replace(spec, fixed={**spec.fixed, "train.epochs": args.epochs})
    base = load_config(args.config) if args.config is not None else None
    ex = ExecutorSettings(kind=args.executor, device=args.device, nprocs=args.nprocs, threads=args.omp_nthreads,
                          fits_per_gpu=args.fits_per_gpu, ray_address=args.ray_address, max_retries=args.max_retries)
    return run_sweep(Path(args.bids_dir), Path(args.output_dir), spec, executor=ex,
                     participant_labels=args.participant_label, task=args.task, session=args.session,
                     space=args.space, atlas=args.atlas, confounds=args.confounds, base=base)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dsr`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-V"]):
        from dsr import __version__

        print(f"dsr {__version__}")
        return 0
    user_log()
    is_fit = bool(argv) and argv[0] == "fit"
    parser = fit_parser() if is_fit else bids_parser()
    args = parser.parse_args(argv[1:] if is_fit else argv)
    try:
        return run_fit(args) if is_fit else run_bids(args)
    except DsrError as exc:
        if args.debug:
            raise
        print(f"dsr: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("dsr: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file that cannot be read or written is the user's to fix, not a bug
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"dsr: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        if args.debug:
            raise
        print(f"dsr: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

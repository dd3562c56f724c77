"""Command line: ``dsr fit FILE --tr S --out DIR`` and the BIDS-App levels.

    dsr BIDS_DIR OUTPUT_DIR participant [options]     dsr BIDS_DIR OUTPUT_DIR participant -h
    dsr BIDS_DIR OUTPUT_DIR group [options]           dsr BIDS_DIR OUTPUT_DIR group -h
    dsr BIDS_DIR OUTPUT_DIR sweep --sweep FILE        dsr BIDS_DIR OUTPUT_DIR sweep -h
    dsr fit FILE --tr SECONDS --out DIR [options]     dsr fit -h
    dsr --version

Each level's options, help and defaults are in :mod:`dsr.cli_options`. The config is the preset
(``--config``, default ``paper``), then ``--seed`` / ``--epochs``, then every ``--set section.key=value``.
Every user error is one line on stderr (``dsr: error: ...``) and a non-zero exit; the participant and group
levels and ``dsr fit`` also write every line into ``OUTPUT_DIR/logs/dsr_<UTC time>.log`` (:mod:`dsr.log`).
"""
from __future__ import annotations

import sys
from pathlib import Path

from dsr import log as dsr_log
from dsr.cli_options import EXIT_USAGE, fit_parser, general_parser, level_of, level_parser
from dsr.errors import DsrError, InputError

EXIT_ERROR = 1


def _load_cfg(args):
    """The config of a command: the preset, then --seed and --epochs, then every --set."""
    from dsr.config import apply_overrides, load_config

    cfg = load_config(args.config)
    if getattr(args, "seed", None) is not None:  # the group level has neither
        cfg = cfg.replace(seed=args.seed)
    if getattr(args, "epochs", None) is not None:
        cfg = cfg.replace(train={"epochs": args.epochs})
    cfg = apply_overrides(cfg, args.set)
    dsr_log.user_log().debug("config %s: %s", cfg.hash(), cfg.to_dict())
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
    dsr_log.open_log_file(out)
    ck = None if args.work_dir is None else check_writable(Path(args.work_dir)) / "checkpoint"
    metrics = fit_to_dir(x, tr, out, cfg, device=args.device, resume=args.resume, source=str(args.file),
                         progress=log_progress(), standardise=not args.no_standardise, checkpoint_dir=ck, **extra)
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
    if args.analysis_level == "participant" and not args.reports_only:
        return run_participant_level(args)
    return run_group_level(args)


def participant_options(args) -> dict:
    """The keyword arguments of :func:`~dsr.pipelines.participant.run_participant` that a participant command
    line asks for (the config built, the BIDS filter file read)."""
    from dsr.io.bids_filter import read_filter_file

    filters = None if args.bids_filter_file is None else read_filter_file(args.bids_filter_file)
    return dict(bids_dir=Path(args.bids_dir), output_dir=Path(args.output_dir),
                participant_labels=args.participant_label, task=args.task, session=args.session, space=args.space,
                atlas=args.atlas, config=_load_cfg(args), device=args.device, confounds=args.confounds,
                nprocs=args.nprocs, derivatives=None if str(args.derivatives).lower() == "none" else args.derivatives,
                confounds_mode=args.confounds_mode, high_pass=args.high_pass, low_pass=args.low_pass,
                radius=args.radius, seeds=args.seeds, executor=args.executor, ray_address=args.ray_address,
                fits_per_gpu=args.fits_per_gpu, max_retries=args.max_retries, stack=args.stack,
                threads=args.omp_nthreads, work_dir=args.work_dir, filters=filters, mem_gb=args.mem)


def run_participant_level(args) -> int:
    """``dsr BIDS OUT participant``: every option mapped onto :func:`~dsr.pipelines.participant.run_participant`."""
    from dsr.pipelines.participant import run_participant

    return run_participant(**participant_options(args))


def run_group_level(args) -> int:
    """``dsr BIDS OUT group`` (and ``--reports-only`` at either level): the features, tables and reports of
    the fits in OUTPUT_DIR; nothing is fitted."""
    from dsr.io.atomic import check_writable
    from dsr.io.derivatives import find_fits
    from dsr.pipelines.group import run_group
    from dsr.pipelines.memory import group_workers

    # the group level analyses every fit with its own config unless its --config or --set names one (the
    # participant level's --config is how the fits were made: with --reports-only each fit's own is used)
    custom = args.analysis_level == "group" and (args.config is not None or bool(args.set))
    cfg = _load_cfg(args) if custom else None
    nprocs = group_workers(args.nprocs, args.mem)
    out = Path(args.output_dir)
    if not any(find_fits(out).values()):
        raise InputError("no fitted models found; run the participant level first", out)
    dsr_log.open_log_file(check_writable(out))
    if args.reports_only:
        dsr_log.user_log().info("--reports-only: rebuilding the reports from the fits in %s (nothing is fitted)", out)
    return run_group(Path(args.bids_dir), out, config=cfg, nprocs=nprocs, threads=args.omp_nthreads)


def run_sweep_level(args) -> int:
    """``dsr BIDS OUT sweep --sweep FILE``: trials × subjects × seeds, best trial per subject."""
    import dataclasses

    from dsr.config import apply_overrides, load_config
    from dsr.pipelines.executors import ExecutorSettings
    from dsr.pipelines.sweep import load_sweep, run_sweep

    if args.sweep is None:
        raise DsrError("the sweep level needs --sweep FILE (a sweep TOML file or a name from configs/sweeps)")
    if args.seed is not None or any(item.partition("=")[0].strip() == "seed" for item in args.set):
        raise DsrError("the sweep's seeds come from its file (seeds = [...]); drop --seed")
    spec = load_sweep(args.sweep)
    if args.epochs is not None:  # the command line wins over the file's [fixed]
        spec = dataclasses.replace(spec, fixed={**spec.fixed, "train.epochs": args.epochs})
    if args.set:  # so do --set values, parsed by their keys' types
        values = apply_overrides(load_config(args.config or spec.base), args.set).to_dict()
        keys = [item.partition("=")[0].strip().split(".", 1) for item in args.set]
        spec = dataclasses.replace(spec, fixed={**spec.fixed, **{f"{a}.{b}": values[a][b] for a, b in keys}})
    base = load_config(args.config) if args.config is not None else None
    ex = ExecutorSettings(kind=args.executor, device=args.device, nprocs=args.nprocs, threads=args.omp_nthreads,
                          fits_per_gpu=args.fits_per_gpu, ray_address=args.ray_address, max_retries=args.max_retries)
    return run_sweep(Path(args.bids_dir), Path(args.output_dir), spec, executor=ex,
                     participant_labels=args.participant_label, task=args.task, session=args.session,
                     space=args.space, atlas=args.atlas, confounds=args.confounds, base=base)


def parse_args(argv: list[str]):
    """``(is_fit, args)`` of a command line; the parser of its level only (help and errors: SystemExit)."""
    if argv[:1] == ["fit"]:
        return True, fit_parser().parse_args(argv[1:])
    level = level_of(argv)
    if level is None:  # dsr -h, or no level: the general help or error
        general_parser().parse_args(argv)
        raise SystemExit(EXIT_USAGE)
    if level != "sweep" and "--sweep" in argv:
        raise DsrError("--sweep is for the sweep level: dsr BIDS_DIR OUTPUT_DIR sweep --sweep FILE")
    return False, level_parser(level).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dsr`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--version"], ["-V"]):
        from dsr import __version__

        print(f"dsr {__version__}")
        return 0
    dsr_log.user_log()
    try:
        is_fit, args = parse_args(argv)
    except DsrError as exc:
        print(f"dsr: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    dsr_log.configure(args.verbose, argv)
    try:
        return run_fit(args) if is_fit else run_bids(args)
    except DsrError as exc:
        if args.debug:
            raise
        return _fail(f"dsr: error: {exc}")
    except KeyboardInterrupt:
        return _fail("dsr: interrupted", 130)
    except OSError as exc:  # a file that cannot be read or written is the user's to fix, not a bug
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"dsr: error: {where}{exc.strerror or exc}")
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        if args.debug:
            raise
        return _fail(f"dsr: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)")
    finally:
        dsr_log.close_log()


def _fail(line: str, code: int = EXIT_ERROR) -> int:
    """Print the command's last line (an error) and put it into the log file."""
    print(line, file=sys.stderr)
    dsr_log.to_file(line)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The BIDS-App ``participant`` level: plan the fits (:mod:`~dsr.pipelines.plan`), run each one
(:mod:`~dsr.pipelines.fitrun`: extract → cache → fit → outputs) with an executor (``local``, ``ray`` or
``stack``), record every result (:mod:`~dsr.pipelines.status`).

Per run (``base`` = ``sub-01_task-rest_space-S_atlas-A``), in ``OUTPUT_DIR/sub-01[/ses-1]/func/`` (the names
are those of :mod:`dsr.io.derivatives`): the extracted series ``{base}_desc-cleaned_timeseries.tsv``
(reused while inputs and extraction settings are unchanged), the fit's outputs ``{base}_desc-convssm_*`` and
its provenance (config hash, input key, status), written last. A fit finished with the same config and inputs
is skipped; one finished with another config or other inputs is left as it is, with one line (see
:mod:`~dsr.pipelines.fitrun`).

``OUTPUT_DIR`` also gets ``dataset_description.json``, ``.bidsignore`` and ``metrics_description.json``
(:mod:`~dsr.pipelines.description`); ``Sources`` are BIDS URIs into the input dataset (``bids:raw:...``).
``OUTPUT_DIR/status.tsv`` has one row per fit (participant_id, run, status, reason, config_hash). A failing
fit is recorded there with one line on stderr, and the others go on.
"""
from __future__ import annotations

from pathlib import Path

from dsr.config import DsrConfig
from dsr.errors import ConfigError
from dsr.io.atomic import check_writable
from dsr.log import open_log_file, user_log
from dsr.pipelines.description import write_description
from dsr.pipelines.executors import ExecutorSettings, limit_threads, preflight, run_tasks, slot_devices
from dsr.pipelines.memory import fit_memory
from dsr.pipelines.fitrun import run_job_isolated
from dsr.pipelines.plan import FitJob, absolute_paths, plan_participant
from dsr.pipelines.stack import run_stacked
from dsr.pipelines.status import record_missing, record_result, write_status
from dsr.progress import allow_epoch_bars
from dsr.timing import stage

log = user_log()


def run_participant(bids_dir: Path, output_dir: Path, *, participant_labels: list[str] | None,
                    task: str | None, session: str | None, space: str | None, atlas: str | None,
                    config: DsrConfig, device: str, confounds: str | None, nprocs: int = 1,
                    derivatives: str | Path | None = "auto", confounds_mode: str | None = None,
                    high_pass: float | None = None, low_pass: float | None = None,
                    radius: float | None = None, seeds: list[int] | None = None,
                    executor: str = "local", ray_address: str | None = None, fits_per_gpu: int = 1,
                    max_retries: int = 2, stack: bool = False, threads: int = 1,
                    work_dir: Path | None = None, filters: dict | None = None, mem_gb: float | None = None) -> int:
    """Run the participant level of the BIDS App.

    Parameters
    ----------
    bids_dir, output_dir : Path
        Input dataset (raw BIDS, with or without ``derivatives/fmriprep``, or an fMRIPrep folder) and the
        derivatives folder to write (never inside ``bids_dir``).
    participant_labels, task, session, space
        Filters (see :func:`dsr.io.bids.find_runs`).
    atlas : str or None
        Atlas file or coordinate atlas name; None uses the one atlas in ``BIDS_DIR/derivatives/atlas``.
    config : DsrConfig
    device : str
        ``cpu``, ``cuda:K``, or ``cuda``/``auto`` to spread the fits over every visible GPU.
    confounds : str or None
        Confound strategy (:mod:`dsr.io.confounds`); None: ``motion6+wmcsf`` when a confounds table exists.
    nprocs : int
        Runs fitted in parallel processes (local executor on CPU; with ``stack``, stack shards).
    threads : int
        Compute threads of every process that fits (``--omp-nthreads``).
    seeds : list of int or None
        Fit every run once per seed (outputs named ``..._seed-N_desc-convssm_*``); None: one fit with
        ``config.seed``.
    derivatives, confounds_mode, high_pass, low_pass, radius
        See :func:`dsr.io.bids.find_runs` and :class:`dsr.io.extract.ExtractionSettings`; the confounds
        are kept as nuisance regressors by default when the config's observation model is ``regressor``.
    executor, ray_address, fits_per_gpu, max_retries
        See :class:`dsr.pipelines.executors.ExecutorSettings` (``executor="ray"`` runs every fit as a Ray
        task; the outputs are the same as the local executor's).
    work_dir : Path or None
        Training checkpoints go here (``--work-dir``; same relative places as the outputs) instead of
        beside each fit's outputs.
    filters : dict or None
        Entity filters of a BIDS filter file (:func:`dsr.io.bids_filter.read_filter_file`).
    mem_gb : float or None
        Memory budget in GB (``--mem``): caps the parallel fits by an estimate, or refuses a plan that
        cannot fit (:mod:`dsr.pipelines.memory`).
    stack : bool
        The ``stack`` executor (same as ``executor="stack"``): train all pending fits that share TR, channel
        count and config (seeds aside) as stacked models, one per device (:mod:`dsr.pipelines.stack`); each
        fit's outputs are those of a fit of its own.

    Returns
    -------
    int
        0 when every fit succeeded (or was already done), 1 when some failed, diverged or were refused.

    Raises
    ------
    InputError
        Output inside the BIDS folder, no run found, an unusable atlas.
    """
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    if stack and executor not in ("local", "stack"):  # --stack is the stack executor
        raise ConfigError("--stack trains the fits together on this machine's devices: use it with the local "
                          "executor")
    ex = ExecutorSettings(kind="stack" if stack else executor, device=device, nprocs=nprocs, threads=threads,
                          fits_per_gpu=fits_per_gpu, ray_address=ray_address, max_retries=max_retries)
    preflight(ex)
    limit_threads(ex.threads)
    if ex.kind == "ray":
        bids_dir, output_dir, atlas = absolute_paths(bids_dir, output_dir, atlas)
    work_dir = None if work_dir is None else Path(work_dir).resolve()
    with stage("discovery"):
        plan = plan_participant(bids_dir, output_dir, participant_labels=participant_labels, task=task,
                                session=session, space=space, atlas=atlas, config=config, confounds=confounds,
                                derivatives=derivatives, confounds_mode=confounds_mode, high_pass=high_pass,
                                low_pass=low_pass, radius=radius, filters=filters)
    jobs = plan.jobs(config, output_dir, seeds, work_dir)
    ex = fit_memory(jobs, ex, mem_gb)
    check_writable(output_dir)  # a read-only or full output folder: one line, before any work
    open_log_file(output_dir)
    write_description(output_dir, bids_dir)
    rows: dict = {}
    failed = record_missing(plan, bids_dir, config, rows)
    log.info("%d run(s) of %d participant(s); atlas %s; outputs in %s", len(plan.runs),
             len({r.subject for r in plan.runs}), plan.atlas.name, output_dir)
    per_run = len(jobs) // max(1, len(plan.runs))
    if per_run > 1 and ex.kind != "stack":
        log.info("%d seeds per run, each fitted on its own: --stack trains them together (on a GPU at little "
                 "more than one fit's cost)", per_run)
    failed += run_jobs(jobs, ex, {output_dir: rows})
    write_status(output_dir, rows)
    return 1 if failed else 0


def run_jobs(jobs: list[FitJob], ex: ExecutorSettings, rows_by_dir: dict[Path, dict],
             results: list | None = None) -> int:
    """Run fit jobs with an executor (``local``, ``ray`` or ``stack``); status rows go to each job's output
    folder as results arrive. ``results`` (optional) receives ``(job, result)`` pairs. Returns the number
    of failed, diverged or refused jobs. Each local or Ray fit runs in a child process of its worker
    (:func:`~dsr.pipelines.fitrun.run_job_isolated`)."""
    failed = 0

    def on_result(i: int, res: dict) -> None:
        nonlocal failed
        job = jobs[i]
        failed += record_result(job, res, rows_by_dir.setdefault(job.output_dir, {}))
        if results is not None:
            results.append((job, res))

    allow_epoch_bars(ex.kind == "local" and len(slot_devices(ex, len(jobs))) == 1)  # one worker: room for its bar
    try:
        if ex.kind == "stack":
            run_stacked(jobs, ex, on_result)
        else:
            run_tasks(run_job_isolated, jobs, ex, on_result)
    finally:
        allow_epoch_bars(False)
        for folder, rows in rows_by_dir.items():
            if rows:
                with stage("status"):
                    write_status(folder, rows)
    return failed

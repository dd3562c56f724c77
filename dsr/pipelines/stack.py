"""The ``stack`` executor (``--stack``): every pending fit of the participant level in a few training runs.

Runs that share the sampling interval, the channel count and the config (seeds aside) become one
model with a leading subject axis, trained once (:func:`dsr.pipelines.fit_array.fit_many`) — on a
GPU that is hundreds of fits for the price of a few. With several GPUs (``--device cuda`` or ``auto``)
each such stack is split into one shard per GPU, and every GPU trains its shards in its own worker
process; on the CPU ``--nprocs`` processes share the work the same way. Each fit is then evaluated and
written exactly like a fit of its own (same file names, metrics, provenance, status rows), and equals it
to floating-point tolerance. Runs with nuisance regressors or external inputs, and runs resuming an
interrupted fit, are fitted one at a time as usual; a run with bad input is marked failed and the
others go on.
"""
from __future__ import annotations

import dataclasses
import json

from dsr import timing
from dsr.errors import DsrError
from dsr.io import extract, series_cache
from dsr.io.derivatives import run_names
from dsr.log import user_log
from dsr.pipelines.executors import (ExecutorSettings, OnResult, limit_threads, run_pinned, run_tasks,
                                     slot_devices)
from dsr.pipelines.fit_array import check_recording, fit_many
from dsr.pipelines.fitrun import PendingFit, extract_job, failure, fit_pending, start_fit, write_marks
from dsr.pipelines.plan import FitJob
from dsr.pipelines.status import one_line
from dsr.pipelines.writer import FitWriter, WriteJob
from dsr.progress import Progress, epoch_progress

log = user_log()


def stack_devices(ex: ExecutorSettings, n_fits: int) -> list[str]:
    """One device per stack shard: every visible GPU once (``cuda``/``auto``), one GPU once (``cuda:K``:
    ``--nprocs`` then sizes the writer processes, not the shards), else ``nprocs`` times the CPU, never more
    shards than fits.

    Examples
    --------
    >>> stack_devices(ExecutorSettings(device="cuda", fits_per_gpu=4, n_gpus=2), 100)
    ['cuda:0', 'cuda:1']
    >>> stack_devices(ExecutorSettings(device="cuda:1", nprocs=32, n_gpus=2), 100)
    ['cuda:1']
    """
    if ex.device.startswith("cuda:"):
        return [ex.device]
    return slot_devices(dataclasses.replace(ex, fits_per_gpu=1), n_fits)


def shard(members: list, n: int) -> list[list]:
    """Split ``members`` into at most ``n`` contiguous parts whose sizes differ by at most one."""
    n = max(1, min(n, len(members)))
    q, r = divmod(len(members), n)
    out, i = [], 0
    for k in range(n):
        size = q + (k < r)
        out.append(members[i:i + size])
        i += size
    return out


def fit_shards(task: tuple, device: str) -> dict:
    """Worker task: train every stack of started fits on ``device`` and write each fit's outputs with
    ``writers`` writer processes (:class:`~dsr.pipelines.writer.FitWriter`); returns ``{"results": one result
    dict per fit, in order, "stages": seconds per stage}`` (a stack that fails marks its fits failed)."""
    stacks, writers, threads = task
    with FitWriter(writers, threads) as writer:
        for members in stacks:
            tr, n = float(members[0].series.tr), members[0].series.series.shape[1]
            log.info("training %d fit(s) stacked (TR %.3g s, %d regions) on %s", len(members), tr, n, device)
            try:
                fits = fit_many([p.series.series for p in members], tr, [p.config for p in members],
                                device=device, paths=[str(p.job.run.bold) for p in members], pool=writer.pool,
                                progress=epoch_progress(f"stack of {len(members)} on {device}"))
            except DsrError as exc:
                for _ in members:
                    writer.add({"status": "failed", "reason": one_line(exc)})
                continue
            for pending, res in zip(members, fits):
                writer.submit(WriteJob.of(pending), res)
            del fits
        results = writer.results()
    return {"results": results, "stages": timing.take()}


def extract_ahead(jobs: list[FitJob], ex: ExecutorSettings) -> None:
    """Extract the runs of ``jobs`` whose series are not cached yet in ``ex.nprocs`` processes (one task per
    run), so that :func:`start_fit` then reads them; nothing to do with one process or one such run."""
    todo, seen = [], set()
    for job in jobs:
        sub_folder, base, _ = run_names(job.run, job.atlas.name)
        if (sub_folder, base) in seen:
            continue
        seen.add((sub_folder, base))
        try:
            key = extract.series_key(job.run, job.atlas, job.settings, job.atlas_spec)
            side = series_cache.table_path(job.output_dir / sub_folder, base, "cleaned", ".json")
            side = json.loads(side.read_text())
            if side.get("CacheKey") == key:
                continue
        except (DsrError, OSError, ValueError):
            pass
        todo.append(job)
    if ex.nprocs < 2 or len(todo) < 2:
        return
    log.info("extracting %d run(s) in %d process(es)", len(todo), min(ex.nprocs, len(todo)))
    local = ExecutorSettings(kind="local", device="cpu", nprocs=ex.nprocs, threads=ex.threads)
    run_tasks(extract_job, todo, local, lambda i, res: timing.add(res.get("stages")), "runs")  # timed in the workers


def run_stacked(jobs: list[FitJob], ex: ExecutorSettings, on_result: OnResult) -> None:
    """Start every job here, then train the started fits in stacks spread over the devices of ``ex``;
    ``on_result(i, result)`` for every job (counted by a :class:`~dsr.progress.Progress`)."""
    with Progress(len(jobs), "fits") as progress:
        def counted(i: int, res: dict) -> None:
            on_result(i, res)
            progress.update(failed=res.get("status") != "ok")

        _run_stacked(jobs, ex, counted)


def _run_stacked(jobs: list[FitJob], ex: ExecutorSettings, on_result: OnResult) -> None:
    groups: dict[tuple, list[tuple[int, PendingFit]]] = {}
    limit_threads(ex.threads)
    extract_ahead(jobs, ex)
    memo: dict = {}
    marks: list = []  # "running" provenance of the started fits, written together before any training
    marked: list[int] = []  # the job of each mark
    failed_input: set[int] = set()  # jobs failed for their input (reported already)

    def write_running() -> set:  # the marks; a job whose file cannot be written fails alone
        failed = {marked[k]: exc for k, exc in write_marks(marks).items()}
        for i, exc in failed.items():
            if i not in failed_input:  # failed already, for its input
                on_result(i, failure(exc, jobs[i].run.bold))
        marked.clear()
        return set(failed)

    for i, job in enumerate(jobs):
        try:
            n_marks = len(marks)
            pending = start_fit(job, memo, marks)
            marked.extend([i] * (len(marks) - n_marks))
            if isinstance(pending, dict):  # finished earlier, or refused
                on_result(i, pending)
                continue
            s = pending.series
            if s.nuisance is not None or s.inputs is not None or pending.resume:
                if i not in write_running():
                    on_result(i, fit_pending(pending, stack_devices(ex, 1)[0]))
                continue
            check_recording(s.series, s.tr, pending.config, path=str(job.run.bold))  # bad input fails it alone, now
        except Exception as exc:  # bad input (or an unreadable file) fails this run alone, naming it
            failed_input.add(i)
            on_result(i, failure(exc, job.run.bold))
            continue
        key = (round(float(s.tr), 9), s.series.shape[1], pending.config.replace(seed=0).hash())
        groups.setdefault(key, []).append((i, pending))
    failed = write_running()
    groups = {k: [m for m in members if m[0] not in failed] for k, members in groups.items()}
    groups = {k: members for k, members in groups.items() if members}

    devices = stack_devices(ex, max((len(m) for m in groups.values()), default=1))
    per_device: list[list] = [[] for _ in devices]
    for members in groups.values():
        for d, part in enumerate(shard(members, len(devices))):
            per_device[d].append(part)
    tasks = [(stacks, dev) for stacks, dev in zip(per_device, devices) if stacks]
    if len(tasks) > 1:
        log.info("stacks split over %d worker(s): %s", len(tasks), ", ".join(dev for _, dev in tasks))

    def done(t: int, res: dict) -> None:
        members = [m for stack in tasks[t][0] for m in stack]
        timing.add(res.get("stages"))
        for (i, _), r in zip(members, res["results"] if "results" in res else [res] * len(members)):
            on_result(i, r)  # no results: the worker died, every fit of it failed

    # the CPU shards already use the processes given; on GPUs the CPU processes write the fits' outputs (a
    # writer process for every 4 fits at most: starting one costs seconds)
    writers = 1 if devices[0] == "cpu" else max(1, ex.nprocs // max(1, len(tasks)))
    if tasks:
        run_pinned(fit_shards, [([[p for _, p in stack] for stack in stacks],
                                 max(1, min(writers, sum(map(len, stacks)) // 4)), ex.threads)
                                for stacks, _ in tasks], [dev for _, dev in tasks], done, ex.threads)

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

from dsr.errors import DsrError
from dsr.log import user_log
from dsr.pipelines.executors import ExecutorSettings, OnResult, limit_threads, run_pinned, slot_devices
from dsr.pipelines.fit_array import check_recording, fit_many, write_outputs
from dsr.pipelines.fitrun import PendingFit, failure, finish_fit, fit_pending, start_fit
from dsr.pipelines.plan import FitJob
from dsr.pipelines.status import one_line
from dsr.progress import Progress, epoch_progress

log = user_log()


def stack_devices(ex: ExecutorSettings, n_fits: int) -> list[str]:
    """One device per stack shard: every visible GPU once (``cuda``/``auto``), else ``nprocs`` times the
    device (CPU processes), never more shards than fits.

    Examples
    --------
    >>> stack_devices(ExecutorSettings(device="cuda", fits_per_gpu=4, n_gpus=2), 100)
    ['cuda:0', 'cuda:1']
    """
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


def fit_shards(stacks: list[list[PendingFit]], device: str) -> list[dict]:
    """Worker task: train every stack of started fits on ``device`` and write each fit's outputs; returns
    one result dict per fit, in order (a stack that fails marks its fits failed)."""
    results = []
    for members in stacks:
        tr, n = float(members[0].series.tr), members[0].series.series.shape[1]
        log.info("training %d fit(s) stacked (TR %.3g s, %d regions) on %s", len(members), tr, n, device)
        try:
            fits = fit_many([p.series.series for p in members], tr, [p.config for p in members], device=device,
                            paths=[str(p.job.run.bold) for p in members],
                            progress=epoch_progress(f"stack of {len(members)} on {device}"))
        except DsrError as exc:
            results += [{"status": "failed", "reason": one_line(exc)} for _ in members]
            continue
        for pending, res in zip(members, fits):
            try:  # a full disk fails this fit alone, naming the output
                metrics = write_outputs(res, pending.folder, pending.prefix, pending.source)
                results.append(finish_fit(pending, metrics))
            except (DsrError, OSError) as exc:
                results.append(failure(exc, pending.job.run.bold))
    return results


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
    for i, job in enumerate(jobs):
        try:
            pending = start_fit(job)
            if isinstance(pending, dict):  # finished earlier, or refused
                on_result(i, pending)
                continue
            s = pending.series
            if s.nuisance is not None or s.inputs is not None or pending.resume:
                on_result(i, fit_pending(pending, stack_devices(ex, 1)[0]))
                continue
            check_recording(s.series, s.tr, pending.config, path=str(job.run.bold))  # bad input fails it alone, now
        except Exception as exc:  # bad input (or an unreadable file) fails this run alone, naming it
            on_result(i, failure(exc, job.run.bold))
            continue
        key = (round(float(s.tr), 9), s.series.shape[1], pending.config.replace(seed=0).hash())
        groups.setdefault(key, []).append((i, pending))

    devices = stack_devices(ex, max((len(m) for m in groups.values()), default=1))
    per_device: list[list] = [[] for _ in devices]
    for members in groups.values():
        for d, part in enumerate(shard(members, len(devices))):
            per_device[d].append(part)
    tasks = [(stacks, dev) for stacks, dev in zip(per_device, devices) if stacks]
    if len(tasks) > 1:
        log.info("stacks split over %d worker(s): %s", len(tasks), ", ".join(dev for _, dev in tasks))

    def done(t: int, res) -> None:
        members = [m for stack in tasks[t][0] for m in stack]
        for (i, _), r in zip(members, [res] * len(members) if isinstance(res, dict) else res):
            on_result(i, r)  # a dict: the worker died, every fit of it failed

    if tasks:
        run_pinned(fit_shards, [[[p for _, p in stack] for stack in stacks] for stacks, _ in tasks],
                   [dev for _, dev in tasks], done, ex.threads)

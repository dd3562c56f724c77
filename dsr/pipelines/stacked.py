"""Participant level with stacked fits (``--stack``): every pending run × seed in a few training runs.

Runs that share the sampling interval, the channel count and the config (seeds aside) become one
model with a leading subject axis, trained once (:func:`dsr.pipelines.fit_array.fit_many`) — on a
GPU that is hundreds of fits for the price of a few. With several GPUs (``--device cuda`` or ``auto``)
each such stack is split into one shard per GPU, and every GPU trains its shards in its own worker
process; on the CPU ``--n-jobs`` processes share the work the same way. Each fit is then evaluated and
written exactly like a fit of its own (same file names, metrics, provenance, status rows), and equals it
to floating-point tolerance. Runs with nuisance regressors or external inputs, and runs resuming an
interrupted fit, are fitted one at a time as usual; a run with bad input is marked failed and the
others go on.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from dsr.log import user_log
from dsr.errors import DsrError
from dsr.pipelines import participant as part
from dsr.pipelines.executors import ExecutorSettings, limit_threads, run_pinned, slot_devices
from dsr.pipelines.fit_array import fit_many, prepare, write_outputs

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


def fit_shards(stacks: list[list], device: str) -> list[dict]:
    """Worker task: train every stack of ``(job, pending)`` pairs on ``device`` and write each fit's outputs;
    returns one result dict per member, in order (a stack that fails marks its members failed)."""
    results = []
    for members in stacks:
        tr, n = float(members[0][1].series.tr), members[0][1].series.series.shape[1]
        log.info("training %d fit(s) stacked (TR %.3g s, %d regions) on %s", len(members), tr, n, device)
        try:
            fits = fit_many([p.series.series for _, p in members], tr, [p.config for _, p in members],
                            device=device, paths=[str(j[0].bold) for j, _ in members])
        except DsrError as exc:
            results += [{"status": "failed", "reason": part._one_line(exc)} for _ in members]
            continue
        for (job, pending), res in zip(members, fits):
            metrics = write_outputs(res, pending.folder, pending.prefix, str(job[0].bold))
            results.append(part.finish_run(pending, metrics))
    return results


def run_stacked(jobs: list[tuple], ex: ExecutorSettings, rows_by_dir: dict[Path, dict]) -> int:
    """Fit participant-level job tuples (see :meth:`ParticipantPlan.jobs`) in stacks spread over the
    devices of ``ex``; returns the number of failures."""
    failed = 0
    groups: dict[tuple, list] = {}

    def record(job, res) -> None:
        nonlocal failed
        rows = rows_by_dir.setdefault(job[4], {})
        failed += part._record(job[0], res, job[1].name, job[3], job[4], rows, job[7])

    for job in jobs:
        run, atlas, settings, config, output_dir, _, atlas_spec, seed_label = job
        try:
            pending = part.start_run(run, atlas, settings, config, output_dir, atlas_spec, seed_label)
            if isinstance(pending, dict):  # finished earlier
                record(job, pending)
                continue
            s = pending.series
            if s.nuisance is not None or s.inputs is not None or pending.resume:
                limit_threads(ex.threads)
                record(job, part.fit_pending(pending, stack_devices(ex, 1)[0]))
                continue
            prepare(s.series, s.tr, pending.config, path=str(run.bold))  # bad input fails this run alone, now
        except DsrError as exc:
            record(job, {"status": "failed", "reason": part._one_line(part.name_input_error(exc, run.bold))})
            continue
        key = (round(float(s.tr), 9), s.series.shape[1], pending.config.replace(seed=0).hash())
        groups.setdefault(key, []).append((job, pending))

    devices = stack_devices(ex, max((len(m) for m in groups.values()), default=1))
    per_device: list[list] = [[] for _ in devices]
    for members in groups.values():
        for d, part_members in enumerate(shard(members, len(devices))):
            per_device[d].append(part_members)
    tasks = [(stacks, dev) for stacks, dev in zip(per_device, devices) if stacks]
    if not tasks:
        return failed
    if len(tasks) > 1:
        log.info("stacks split over %d worker(s): %s", len(tasks), ", ".join(dev for _, dev in tasks))

    def on_result(i: int, res) -> None:
        members = [m for stack in tasks[i][0] for m in stack]
        if isinstance(res, dict):  # the worker died
            res = [res] * len(members)
        for (job, _), r in zip(members, res):
            record(job, r)

    run_pinned(fit_shards, [t for t, _ in tasks], [d for _, d in tasks], on_result, ex.threads)
    return failed

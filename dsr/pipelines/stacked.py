"""Participant level with stacked fits (``--stack``): every pending run × seed in one training run.

Runs that share the sampling interval, the channel count and the config (seeds aside) become one
model with a leading subject axis, trained once (:func:`dsr.pipelines.fit_array.fit_many`) — on a
GPU that is hundreds of fits for the price of a few. Each fit is then evaluated and written exactly
like a fit of its own (same file names, metrics, provenance, status rows), and equals it to
floating-point tolerance. Runs with nuisance regressors or external inputs, and runs resuming an
interrupted fit, are fitted one at a time as usual; a run with bad input is marked failed and the
others go on.
"""
from __future__ import annotations

import logging
from pathlib import Path

from dsr.errors import DsrError
from dsr.pipelines import participant as part
from dsr.pipelines.fit_array import fit_many, prepare, write_outputs

log = logging.getLogger("dsr")


def run_stacked(jobs: list[tuple], device: str, rows_by_dir: dict[Path, dict]) -> int:
    """Fit participant-level job tuples (see :meth:`ParticipantPlan.jobs`) in stacks; returns the failures."""
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
                record(job, part.fit_pending(pending, config, device))
                continue
            prepare(s.series, s.tr, config, path=str(run.bold))  # bad input fails this run alone, now
        except DsrError as exc:
            record(job, {"status": "failed", "reason": part._one_line(part.name_input_error(exc, run.bold))})
            continue
        key = (round(float(s.tr), 9), s.series.shape[1], config.replace(seed=0).hash())
        groups.setdefault(key, []).append((job, pending))

    for (tr, n, _), members in groups.items():
        log.info("training %d fit(s) stacked (TR %.3g s, %d regions) on %s", len(members), tr, n, device)
        try:
            results = fit_many([p.series.series for _, p in members], tr, [j[3] for j, _ in members],
                               device=device, paths=[str(j[0].bold) for j, _ in members])
        except DsrError as exc:
            for job, _ in members:
                record(job, {"status": "failed", "reason": part._one_line(exc)})
            continue
        for (job, pending), res in zip(members, results):
            metrics = write_outputs(res, pending.folder, pending.prefix, str(job[0].bold))
            record(job, part.finish_run(pending, metrics))
    return failed

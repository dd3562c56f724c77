"""``OUTPUT_DIR/status.tsv``: one row per fit (participant_id, run, status, reason, config_hash, then any
columns a person added), merged under a file lock so that concurrent writers (SLURM array tasks sharing
OUT) keep every row; and the one user-facing line per finished, skipped, refused or failed fit."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from dsr.config import DsrConfig
from dsr.io import status_table
from dsr.io.derivatives import STATUS
from dsr.log import user_log
from dsr.pipelines.plan import FitJob, ParticipantPlan
from dsr.timing import stage

log = user_log()
WRITE_EVERY = 2.0  # seconds between status.tsv rewrites while results arrive
_LAST_WRITE: dict[Path, float] = {}
STATUS_COLUMNS = ("participant_id", "run", "status", "reason", "config_hash")


def one_line(text) -> str:
    """``text`` with every run of whitespace (newlines too) collapsed to one space."""
    return " ".join(str(text).split())


def read_status(output_dir: Path) -> pd.DataFrame:
    """The status table (empty when absent; extra columns a person added are kept after ours)."""
    return status_table.read_status(Path(output_dir) / STATUS, STATUS_COLUMNS)


def write_status(output_dir: Path, rows: dict) -> None:
    """Merge ``rows`` (``{(participant_id, run): row}``) into status.tsv under an exclusive lock
    (``.status.lock``), keeping the other rows and any extra columns (:mod:`dsr.io.status_table`)."""
    status_table.write_status(Path(output_dir) / STATUS, rows, STATUS_COLUMNS)


def record_result(job: FitJob, res: dict, rows: dict) -> int:
    """Log one fit's result and add its status row; returns 1 for a failed, refused or diverged fit (a
    diverged fit makes the exit code non-zero, as in ``dsr fit``), else 0.

    The table is rewritten at most every :data:`WRITE_EVERY` seconds (a cohort's rows would otherwise
    rewrite it once per fit, a cost growing with the square of the fits); the caller writes ``rows`` once
    more when its fits are done (:func:`dsr.pipelines.participant.run_jobs`).

    A refused fit (another finished fit is in its place) gets a line but no row: that fit's row stays."""
    sub, label = job.participant_id, job.label
    if res["status"] == "refused":
        log.warning("%s %s: not fitted: %s", sub, label, res["reason"])
        return 1
    rows[(sub, label)] = [sub, label, res["status"], res.get("reason", ""), res.get("config_hash") or job.config.hash()]
    now = time.monotonic()
    if now - _LAST_WRITE.get(job.output_dir, -WRITE_EVERY) >= WRITE_EVERY:  # the caller writes the rest at the end
        with stage("status"):
            write_status(job.output_dir, rows)
        _LAST_WRITE[job.output_dir] = time.monotonic()
    if res["status"] == "failed":
        log.warning("%s %s: failed: %s", sub, label, res["reason"])
        return 1
    m = res.get("metrics") or {}
    extra = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, (int, float)))
    state = "already done, skipped" if res.get("skipped") else res["status"]
    log.info("%s %s: %s%s", sub, label, state, f" ({extra})" if extra else "")
    return int(res["status"] != "ok")


def record_missing(plan: ParticipantPlan, bids_dir: Path, config: DsrConfig, rows: dict) -> int:
    """Status rows (and one line each) for requested participants without runs; returns their count."""
    for lab in plan.missing:
        reason = one_line(f"{bids_dir}: no BOLD runs found for sub-{lab}")
        rows[(f"sub-{lab}", "")] = [f"sub-{lab}", "", "failed", reason, config.hash()]
        log.warning("sub-%s: failed: %s", lab, reason)
    return len(plan.missing)

"""``OUTPUT_DIR/status.tsv``: one row per fit (participant_id, run, status, reason, config_hash), merged
under a file lock so that concurrent writers (SLURM array tasks sharing OUT) keep every row; and the one
user-facing line per finished, skipped, refused or failed fit."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from dsr.config import DsrConfig
from dsr.io.atomic import atomic_write_text
from dsr.io.derivatives import STATUS
from dsr.log import user_log
from dsr.pipelines.plan import FitJob, ParticipantPlan

log = user_log()
STATUS_COLUMNS = ("participant_id", "run", "status", "reason", "config_hash")


def one_line(text) -> str:
    """``text`` with every run of whitespace (newlines too) collapsed to one space."""
    return " ".join(str(text).split())


def read_status(output_dir: Path) -> pd.DataFrame:
    """The status table (empty when absent or unreadable)."""
    try:
        df = pd.read_csv(Path(output_dir) / STATUS, sep="\t", dtype=str, keep_default_na=False)
        if list(df.columns) == list(STATUS_COLUMNS):
            return df
    except (OSError, ValueError, pd.errors.ParserError):
        pass
    return pd.DataFrame(columns=list(STATUS_COLUMNS), dtype=str)


def write_status(output_dir: Path, rows: dict) -> None:
    """Merge ``rows`` (``{(participant_id, run): row}``) into status.tsv, holding an exclusive lock on
    ``.status.lock`` for the read-merge-write."""
    output_dir = Path(output_dir)
    with _status_lock(output_dir):
        old = read_status(output_dir)
        merged = {(r.participant_id, r.run): list(r) for r in old.itertuples(index=False)}
        merged.update(rows)
        lines = ["\t".join(STATUS_COLUMNS)] + ["\t".join(one_line(v).replace("\t", " ") for v in row)
                                               for _, row in sorted(merged.items())]
        atomic_write_text(output_dir / STATUS, "\n".join(lines) + "\n")


@contextmanager
def _status_lock(output_dir: Path):
    """An exclusive advisory lock (``fcntl.flock``) on ``output_dir/.status.lock``; a no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no concurrent array tasks to guard against
        yield
        return
    with open(output_dir / ".status.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def record_result(job: FitJob, res: dict, rows: dict) -> int:
    """Log one fit's result and add its status row (written at once); returns 1 for a failure.

    A refused fit (another finished fit is in its place) gets a line but no row: that fit's row stays."""
    sub, label = job.participant_id, job.label
    if res["status"] == "refused":
        log.warning("%s %s: not fitted: %s", sub, label, res["reason"])
        return 1
    rows[(sub, label)] = [sub, label, res["status"], res.get("reason", ""), res.get("config_hash") or job.config.hash()]
    write_status(job.output_dir, rows)
    if res["status"] == "failed":
        log.warning("%s %s: failed: %s", sub, label, res["reason"])
        return 1
    m = res.get("metrics") or {}
    extra = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, (int, float)))
    state = "already done, skipped" if res.get("skipped") else res["status"]
    log.info("%s %s: %s%s", sub, label, state, f" ({extra})" if extra else "")
    return 0


def record_missing(plan: ParticipantPlan, bids_dir: Path, config: DsrConfig, rows: dict) -> int:
    """Status rows (and one line each) for requested participants without runs; returns their count."""
    for lab in plan.missing:
        reason = one_line(f"{bids_dir}: no BOLD runs found for sub-{lab}")
        rows[(f"sub-{lab}", "")] = [f"sub-{lab}", "", "failed", reason, config.hash()]
        log.warning("sub-%s: failed: %s", lab, reason)
    return len(plan.missing)

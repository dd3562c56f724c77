"""``status.tsv``: one row per requested run, merged under a lock, read tolerantly.

A person may add a column (notes) or reorder them; reading keeps every column and every row, and a
write merges the new rows by key into what is there, keeping the extra columns' values. Only a file that
cannot be parsed at all is set aside (renamed ``status.tsv.corrupt``, with one line saying so) rather
than silently overwritten.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from dsr.io.atomic import atomic_write_text, set_aside

log = logging.getLogger("dsr")
KEY = ("participant_id", "run")


def read_status(path: str | Path, columns) -> pd.DataFrame:
    """The table at ``path`` with at least ``columns`` (missing ones empty, extra ones kept after them).

    An absent file gives an empty table; an unparseable one is renamed ``*.corrupt`` (and an empty table
    returned) so that the next write does not destroy it.
    """
    path, columns = Path(path), list(columns)
    if not path.is_file():
        return pd.DataFrame(columns=columns, dtype=str)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8",
                         encoding_errors="replace")
        if not all(k in df.columns for k in KEY):
            raise ValueError("no participant_id and run columns")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        aside = set_aside(path)
        log.warning("%s: unreadable status table (%s); set aside as %s, starting a new one", path,
                    " ".join(str(exc).split())[:120], aside.name)
        return pd.DataFrame(columns=columns, dtype=str)
    for c in columns:
        if c not in df.columns:
            df[c] = ""
    return df[columns + [c for c in df.columns if c not in columns]]


def merge_rows(old: pd.DataFrame, rows: dict, columns) -> pd.DataFrame:
    """``old`` with ``rows`` (``{(participant_id, run): [values in columns order]}``) replacing or adding
    rows by key; extra columns of replaced rows keep their values, new rows get them empty."""
    columns = list(columns)
    extra = [c for c in old.columns if c not in columns]
    merged = {(r["participant_id"], r["run"]): dict(r) for r in old.to_dict("records")}
    for key, values in rows.items():
        row = merged.get(tuple(key), {c: "" for c in extra})
        row.update(zip(columns, [str(v) for v in values]))
        merged[tuple(key)] = row
    out = pd.DataFrame([merged[k] for k in sorted(merged)], columns=columns + extra, dtype=str)
    return out.fillna("")


def write_status(path: str | Path, rows: dict, columns) -> None:
    """Merge ``rows`` into the table at ``path`` under an exclusive lock (``.status.lock`` beside it), so
    that concurrent writers (SLURM array tasks sharing a folder) never drop each other's rows."""
    path = Path(path)
    with status_lock(path.parent):
        table = merge_rows(read_status(path, columns), rows, columns)
        lines = ["\t".join(table.columns)] + ["\t".join(_cell(v) for v in row)
                                              for row in table.itertuples(index=False)]
        atomic_write_text(path, "\n".join(lines) + "\n")


def _cell(value) -> str:
    return " ".join(str(value).split())


@contextmanager
def status_lock(folder: Path):
    """An exclusive advisory lock (``fcntl.flock``) on ``folder/.status.lock``; a no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no concurrent array tasks to guard against
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".status.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

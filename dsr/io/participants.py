"""BIDS ``participants.tsv``: one row per participant, covariates for the group statistics.

Read strictly, because a silent mistake here changes the statistics: a duplicated ``participant_id``
would count a participant twice and a ragged row would shift its values into the wrong columns. Ids are
normalised to ``sub-<label>`` (a bare ``01`` becomes ``sub-01``; a number that lost its leading zeros
in a spreadsheet, ``1``, is matched to the one ``sub-01`` folder it can only mean). Text that is not
UTF-8 is read as Latin-1 with a warning.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from dsr.errors import InputError

log = logging.getLogger("dsr")


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        log.warning("%s: not UTF-8 (byte %d); read as Latin-1, check the non-ASCII values", path, exc.start)
        return data.decode("latin-1")


def read_participants(path: str | Path, known: list[str] | None = None) -> pd.DataFrame | None:
    """``participants.tsv`` as a table of strings with ``participant_id`` as ``sub-<label>``.

    Parameters
    ----------
    path : path
        The file; None is returned when it does not exist.
    known : list of str, optional
        Participant folders (``sub-01``, ...) that exist: a numeric id such as ``1`` is matched to the
        one of them whose label is the same number (``sub-01``).

    Returns
    -------
    DataFrame or None
        Strings, ``n/a`` for missing values.

    Raises
    ------
    InputError
        Naming the file: no ``participant_id`` column, a row with more or fewer fields than the header,
        an empty or duplicated id.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        text = _decode(path)
    except OSError as exc:
        raise InputError(f"cannot read participants.tsv ({exc.strerror or exc})", path) from None
    lines = [(i + 1, ln.rstrip("\r")) for i, ln in enumerate(text.split("\n")) if ln.strip()]
    if not lines:
        raise InputError("participants.tsv is empty (it needs a header with participant_id)", path)
    header = [c.strip() for c in lines[0][1].split("\t")]
    if "participant_id" not in header:
        one = len(header) == 1 and ("," in header[0] or " " in header[0])
        sep = " (the columns are not tab-separated)" if one else ""
        raise InputError(f"participants.tsv has no 'participant_id' column{sep}", path)
    if len(set(header)) != len(header):
        dup = next(c for c in header if header.count(c) > 1)
        raise InputError(f"participants.tsv has the column '{dup}' twice", path)
    rows = []
    for number, line in lines[1:]:
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) != len(header):
            raise InputError(f"line {number} has {len(cells)} tab-separated fields but the header has "
                             f"{len(header)}; fix the row (use n/a for a missing value)", path)
        rows.append(cells)
    df = pd.DataFrame(rows, columns=header, dtype=str)
    ids = [_normalise_id(v, known, path, number) for v, (number, _) in zip(df["participant_id"], lines[1:])]
    seen: dict[str, int] = {}
    for pid, (number, _) in zip(ids, lines[1:]):
        if pid in seen:
            raise InputError(f"participant_id {pid} appears twice (lines {seen[pid]} and {number}): the statistics "
                             "would count it twice; keep one row", path)
        seen[pid] = number
    df["participant_id"] = ids
    return df.replace("", "n/a")


def _normalise_id(value: str, known: list[str] | None, path: Path, number: int) -> str:
    label = value[4:] if value.startswith("sub-") else value
    if not label or label.lower() == "n/a":
        raise InputError(f"line {number} has an empty participant_id", path)
    pid = f"sub-{label}"
    if known and pid not in known and label.isdigit():
        same = [k for k in known if k[4:].isdigit() and int(k[4:]) == int(label)]
        if len(same) == 1:
            return same[0]
    return pid

"""BIDS filter files (``--bids-filter-file``): the pybids-style JSON that fMRIPrep and other BIDS Apps read.

A filter file maps a query name to entity filters, e.g. ``{"bold": {"session": "1", "task": ["rest", "nback"],
"run": 2}}``. dsr reads BOLD runs only, so it applies the ``bold`` query; the queries of other fMRIPrep inputs
(``t1w``, ``fmap``, ...) are accepted and not used, so one filter file serves both tools. A value is a string
or number (the entity must have it), a list (any of them), or ``null`` (the entity must be absent, as in
pybids). Entities go by their pybids names (``subject``, ``session``, ``acquisition``, ...) or their short
BIDS keys (``sub``, ``ses``, ``acq``, ...). Run numbers match as numbers (``"run": 1`` matches ``run-01``).
Every problem is one :class:`~dsr.errors.InputError` naming the file and the key.
"""
from __future__ import annotations

import json
from pathlib import Path

from dsr.errors import InputError

#: pybids entity names and their BIDS keys (those dsr finds runs by).
ENTITIES = {"subject": "sub", "session": "ses", "task": "task", "acquisition": "acq", "ceagent": "ce",
            "reconstruction": "rec", "direction": "dir", "run": "run", "echo": "echo", "part": "part",
            "space": "space", "resolution": "res", "density": "den"}
#: Queries of fMRIPrep's filter files besides ``bold``: accepted, not used.
OTHER_QUERIES = ("t1w", "t2w", "flair", "fmap", "sbref", "roi", "dwi", "asl", "pet", "anat")
#: Keys of a query that only restate what a BOLD run is.
FIXED = {"datatype": "func", "suffix": "bold"}


def read_filter_file(path: str | Path) -> dict[str, list[str] | None]:
    """The ``bold`` filters of a filter file as ``{BIDS key: [allowed values] or None (must be absent)}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise InputError(f"cannot read the BIDS filter file ({exc.strerror or exc})", path) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the BIDS filter file is not valid JSON ({' '.join(str(exc).split())[:120]})",
                         path) from None
    if not isinstance(data, dict):
        raise InputError('the BIDS filter file must be a JSON object such as {"bold": {"session": "1"}}', path)
    for query in data:
        if query != "bold" and query not in OTHER_QUERIES:
            raise InputError(f"unknown query '{query}' in the BIDS filter file (dsr reads 'bold'; also "
                             f"accepted and not used: {', '.join(OTHER_QUERIES)})", path)
    bold = data.get("bold", {})
    if not isinstance(bold, dict):
        raise InputError("'bold' in the BIDS filter file must be an object of entity filters", path)
    filters: dict[str, list[str] | None] = {}
    for key, value in bold.items():
        if key in FIXED:
            if value != FIXED[key] and value != [FIXED[key]]:
                raise InputError(f"bold.{key} = {json.dumps(value)} in the BIDS filter file: dsr reads "
                                 f"{key} {FIXED[key]!r} only", path)
            continue
        if key == "extension":
            continue
        short = ENTITIES.get(key, key if key in ENTITIES.values() else None)
        if short is None:
            raise InputError(f"unknown entity 'bold.{key}' in the BIDS filter file (known: "
                             f"{', '.join(ENTITIES)}, datatype, suffix, extension)", path)
        filters[short] = _values(value, f"bold.{key}", path)
    return filters


def _values(value, key: str, path: Path) -> list[str] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, str) and not v):
            raise InputError(f"{key} in the BIDS filter file must be a label, a number, a list of them or null, "
                             f"got {json.dumps(v)[:40]}", path)
        out.append(str(v))
    if not out:
        raise InputError(f"{key} in the BIDS filter file is an empty list", path)
    return out


def _same(a: str, b: str) -> bool:
    return a == b or (a.isdigit() and b.isdigit() and int(a) == int(b))


def matches(entities: dict, filters: dict[str, list[str] | None] | None) -> bool:
    """Whether a run's entities pass the filters of :func:`read_filter_file`."""
    for key, allowed in (filters or {}).items():
        value = entities.get(key)
        if allowed is None:
            if value is not None:
                return False
        elif value is None or not any(_same(str(value), a) for a in allowed):
            return False
    return True

"""Wall-clock seconds per stage of a run (discovery, extraction, training, writing, ...), per process.

Any layer may time a stage with :func:`stage`; the seconds accumulate in this process under the stage's
name. A worker process hands its seconds back with its results (:func:`take`) and the driver adds them
(:func:`add`), so after a run :func:`seconds` holds, per stage, the sum over every process that worked on
it: with several workers a stage's seconds can exceed the run's wall time. A stage inside another pauses
the outer one (the seconds are exclusive).

Examples
--------
>>> reset()
>>> with stage("writing"):
...     pass
>>> sorted(seconds())
['writing']
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

#: The stages of the product path, in order (others may be timed too).
STAGES = ("discovery", "extraction", "deconvolution", "training", "evaluation", "writing", "figures", "status",
          "group", "reports")
_SECONDS: dict[str, float] = defaultdict(float)
_CPU: dict[str, float] = defaultdict(float)  # CPU seconds of this process (all its threads) per stage
_OPEN: list[list] = []  # the stages open in this process, innermost last: [name, wall and CPU counted from]


@contextmanager
def stage(name: str):
    """Add the wall seconds spent inside the ``with`` block to stage ``name`` (also when it raises).

    Stages are exclusive: a stage opened inside another pauses the outer one, so the stages' seconds add
    up to the time timed (``writing`` excludes the ``figures`` inside it)."""
    now, cpu = time.perf_counter(), time.process_time()
    if _OPEN:
        outer = _OPEN[-1]
        _SECONDS[outer[0]] += now - outer[1]
        _CPU[outer[0]] += cpu - outer[2]
    entry = [name, now, cpu]
    _OPEN.append(entry)
    try:
        yield
    finally:
        now, cpu = time.perf_counter(), time.process_time()
        _SECONDS[name] += now - entry[1]
        _CPU[name] += cpu - entry[2]
        _OPEN.pop()
        if _OPEN:
            _OPEN[-1][1:] = [now, cpu]


def seconds() -> dict[str, float]:
    """Seconds per stage accumulated in this process so far (a copy)."""
    return dict(_SECONDS)


def cpu_seconds() -> dict[str, float]:
    """CPU seconds per stage (user + system, all threads of the process) accumulated so far (a copy): on a
    busy machine these stay near what the work needs while the wall seconds grow with the load."""
    return dict(_CPU)


def add(other: dict | None) -> None:
    """Add another process's seconds per stage (from :func:`take`) to this process's."""
    other = other or {}
    for name, value in other.get("wall", {}).items():
        _SECONDS[str(name)] += float(value)
    for name, value in other.get("cpu", {}).items():
        _CPU[str(name)] += float(value)


def take() -> dict[str, dict[str, float]]:
    """This process's wall and CPU seconds per stage (``{"wall": {...}, "cpu": {...}}``), and reset them (a
    worker hands them to the driver)."""
    out = {"wall": seconds(), "cpu": cpu_seconds()}
    reset()
    return out


def reset() -> None:
    """Forget every stage's seconds."""
    _SECONDS.clear()
    _CPU.clear()


def write(path: str | Path, extra: dict | None = None) -> Path:
    """Write the wall and CPU seconds per stage (and ``extra`` entries) as JSON to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stage_seconds": seconds(), "stage_cpu_seconds": cpu_seconds(), **(extra or {})},
                               indent=1, sort_keys=True) + "\n")
    return path

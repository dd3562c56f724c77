"""BIDS and fMRIPrep discovery: BOLD runs, their sidecars, confounds, events and TR.

A small reader of the BIDS layout (no pybids): file names are parsed into entities, JSON sidecars are
merged by the BIDS inheritance principle (top-level first, the most specific file last), and fMRIPrep
derivatives (``*_desc-preproc_bold.nii.gz`` with ``*_desc-confounds_timeseries.tsv``) are preferred
over raw runs when present.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from dsr.errors import InputError
from dsr.io.bids_filter import matches

#: Entities in the order BIDS writes them (the ones dsr names files with).
ENTITY_ORDER = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part", "space", "res",
                "den", "atlas", "desc")
#: Entities that fMRIPrep adds to a raw run's name.
DERIVATIVE_ENTITIES = ("space", "res", "den", "desc")
PREFERRED_SPACES = ("MNI152NLin2009cAsym", "MNI152NLin6Asym", "T1w")
_EXTENSIONS = (".nii.gz", ".nii", ".tsv.gz", ".tsv", ".json")
MAX_SIDECAR_BYTES = 10 << 20
#: A RepetitionTime at or above this many seconds is taken for milliseconds (BIDS gives it in seconds).
MAX_TR_SECONDS = 100.0


def parse_name(path: str | Path) -> tuple[dict, str, str]:
    """Split a BIDS file name into ``(entities, suffix, extension)``.

    ``sub-01_task-rest_run-1_bold.nii.gz`` → ``({"sub": "01", "task": "rest", "run": "1"}, "bold",
    ".nii.gz")``. Tokens without a dash are ignored.
    """
    name = Path(path).name
    ext = next((e for e in _EXTENSIONS if name.endswith(e)), Path(name).suffix)
    stem = name[: len(name) - len(ext)] if ext else name
    parts = stem.split("_")
    entities = {}
    for token in parts[:-1]:
        key, sep, value = token.partition("-")
        if sep:
            entities[key] = value
    return entities, parts[-1], ext


def build_name(entities: dict, suffix: str = "", ext: str = "") -> str:
    """Join entities in BIDS order (unknown ones last) with a suffix: the inverse of :func:`parse_name`."""
    keys = [k for k in ENTITY_ORDER if entities.get(k)] + sorted(k for k in entities
                                                                if k not in ENTITY_ORDER and entities[k])
    name = "_".join(f"{k}-{entities[k]}" for k in keys)
    return (f"{name}_{suffix}" if suffix else name) + ext


@dataclass(frozen=True)
class BoldRun:
    """One BOLD run found by :func:`find_runs`.

    Attributes
    ----------
    bold : Path
        The 4D NIfTI file (raw ``*_bold`` or fMRIPrep ``*_desc-preproc_bold``).
    entities : dict
        Its entities (``sub``, ``ses``, ``task``, ``run``, ``space``, ...).
    source : str
        ``"raw"`` or ``"fmriprep"``.
    root : Path
        The dataset the file belongs to.
    raw_root : Path or None
        The raw BIDS dataset (for inherited sidecars and events), if known.
    confounds : Path or None
        The fMRIPrep confounds TSV of the run.
    events : Path or None
        The run's ``events.tsv`` (found by inheritance).
    problem : str or None
        Why the run cannot be processed, found while looking for it (its file is a dangling symbolic
        link, or fMRIPrep produced nothing for it); such a run is kept so that it gets a status row.
    """

    bold: Path
    entities: dict = field(hash=False)
    source: str
    root: Path
    raw_root: Path | None = None
    confounds: Path | None = None
    events: Path | None = None
    problem: str | None = None  # why the run cannot be read (a dangling link, no fMRIPrep output)

    @property
    def subject(self) -> str:
        return self.entities["sub"]

    @property
    def session(self) -> str | None:
        return self.entities.get("ses")

    @property
    def task(self) -> str | None:
        return self.entities.get("task")

    @property
    def space(self) -> str | None:
        return self.entities.get("space")

    def key_entities(self) -> dict:
        """The entities that name the run in outputs (no desc), e.g. sub, ses, task, run, space."""
        return {k: v for k, v in self.entities.items() if k != "desc"}

    def label(self) -> str:
        """Short run label without the subject, e.g. ``task-rest_run-1_space-MNI152NLin2009cAsym``."""
        return build_name({k: v for k, v in self.key_entities().items() if k != "sub"})

    def raw_entities(self) -> dict:
        """Entities of the raw run this file was derived from."""
        return {k: v for k, v in self.entities.items() if k not in DERIVATIVE_ENTITIES}


def _inherited(data_path: Path, root: Path, entities: dict, suffix: str, ext: str) -> list[Path]:
    """Files of ``suffix``+``ext`` that apply to a data file, general first (BIDS inheritance)."""
    found = []
    folder = data_path.parent
    folders = [folder] + [p for p in folder.parents if p == root or root in p.parents]
    for depth, d in enumerate(folders):
        for cand in d.glob(f"*_{suffix}{ext}"):
            ents, suf, e = parse_name(cand)
            if suf == suffix and e == ext and all(entities.get(k) == v for k, v in ents.items()):
                found.append((depth, len(ents), cand))
        top = d / f"{suffix}{ext}"  # a sidecar with no entities at all
        if top.is_file():
            found.append((depth, 0, top))
    found.sort(key=lambda t: (-t[0], t[1], str(t[2])))  # far folders and fewer entities first
    return [p for _, _, p in found]


def _read_json(path: Path) -> dict:
    """A JSON sidecar as a dict; every problem (unreadable, not UTF-8, bad JSON, a number too long to
    convert, nesting too deep) is one InputError naming the sidecar."""
    try:
        text = path.read_bytes()
        if len(text) > MAX_SIDECAR_BYTES:
            raise InputError(f"the JSON sidecar is {len(text)} bytes, more than a sidecar can sensibly hold "
                             f"({MAX_SIDECAR_BYTES}); is it the right file?", path)
        data = json.loads(text.decode("utf-8-sig"))
    except InputError:
        raise
    except RecursionError:
        raise InputError("cannot read JSON sidecar: it is nested too deeply", path) from None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError, JSONDecodeError, a 5000-digit number
        why = " ".join(str(exc).split())[:160]
        if "digits" in why and "int" in why:
            why = "it holds a number with thousands of digits, more than Python converts"
        raise InputError(f"cannot read JSON sidecar ({exc.__class__.__name__}: {why})", path) from None
    if not isinstance(data, dict):
        raise InputError("JSON sidecar is not an object", path)
    return data


def sidecars(run: BoldRun) -> list[Path]:
    """JSON sidecars that apply to ``run``, in merge order (raw dataset first, most specific last)."""
    files = []
    if run.raw_root is not None and run.raw_root != run.root:
        raw_bold = run.raw_root / run.bold.relative_to(run.root) if run.root in run.bold.parents else None
        if raw_bold is not None:
            files += _inherited(raw_bold, run.raw_root, run.raw_entities(), "bold", ".json")
    _, suffix, _ = parse_name(run.bold)
    files += _inherited(run.bold, run.root, run.entities, suffix, ".json")
    return files


def metadata(run: BoldRun) -> tuple[dict, dict]:
    """Merged sidecar metadata of ``run`` and, for each key, the file that set it last."""
    merged, origin = {}, {}
    for path in sidecars(run):
        for key, value in _read_json(path).items():
            merged[key] = value
            origin[key] = path
    return merged, origin


def repetition_time(run: BoldRun, header_tr: float | None, *, rtol: float = 1e-3) -> tuple[float, str]:
    """The run's TR in seconds from the sidecars, checked against (or falling back to) the header.

    Parameters
    ----------
    run : BoldRun
    header_tr : float or None
        TR from the NIfTI header in seconds, None when the header has no time unit.
    rtol : float
        Relative tolerance of the header/sidecar comparison.

    Returns
    -------
    tr : float
    source : str
        The file the TR was read from.

    Raises
    ------
    InputError
        No TR anywhere, a non-positive TR, or header and sidecar disagreeing.
    """
    meta, origin = metadata(run)
    if "RepetitionTime" in meta:
        where = origin["RepetitionTime"]
        value = meta["RepetitionTime"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"RepetitionTime {json.dumps(value)[:40]} is not a number of seconds", where)
        tr = float(value)
        if not (math.isfinite(tr) and tr > 0):
            raise InputError(f"RepetitionTime must be > 0 seconds, got {tr}", where)
        if tr >= MAX_TR_SECONDS:
            raise InputError(f"RepetitionTime {tr:g} s is implausibly long: BIDS gives it in seconds, is it in "
                             f"milliseconds ({tr:g} ms = {tr / 1000:g} s)? Fix the sidecar", where)
        if header_tr is not None and not math.isclose(tr, header_tr, rel_tol=rtol, abs_tol=1e-4):
            raise InputError(f"the NIfTI header says TR = {header_tr:g} s but the sidecar {where} says "
                             f"RepetitionTime = {tr:g} s", run.bold)
        return tr, str(where)
    if header_tr is not None and header_tr > 0:
        return float(header_tr), str(run.bold)
    raise InputError("no RepetitionTime in any JSON sidecar and no TR (with a time unit) in the NIfTI "
                     "header", run.bold)


def _is_derivative(root: Path) -> bool:
    desc = root / "dataset_description.json"
    if not desc.is_file():
        return False
    try:
        return str(json.loads(desc.read_text()).get("DatasetType", "")).lower() == "derivative"
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _subject_files(root: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` in ``func/`` folders below ``root/sub-*/``, following symbolic links to
    folders (each real folder visited once) and keeping dangling links (see :func:`dangling`)."""
    out = []
    for sub in sorted(root.glob("sub-*")):
        if not sub.is_dir():
            continue
        seen = set()
        for folder, dirs, files in os.walk(sub, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen:  # a link loop, or two links to one folder
                dirs[:] = []
                continue
            seen.add(real)
            if Path(folder).name != "func":
                continue
            for name in files:
                p = Path(folder) / name
                if fnmatch.fnmatch(name, pattern) and (p.is_file() or p.is_symlink()):
                    out.append(p)
    return sorted(out)


def dangling(path: Path) -> str | None:
    """Why ``path`` cannot be read when it is a symbolic link to nothing, else None."""
    if path.is_symlink() and not path.exists():
        target = os.readlink(path)
        hint = (" (a DataLad/git-annex dataset whose content was not fetched: run `datalad get` on it)"
                if ".git/annex" in target or "annex/objects" in target else "")
        return f"the file is a symbolic link to a missing target ({target}){hint}"
    return None


def _find_confounds(bold: Path, entities: dict) -> Path | None:
    raw = {k: v for k, v in entities.items() if k not in DERIVATIVE_ENTITIES}
    for suffix in ("timeseries", "regressors"):
        for cand in sorted(bold.parent.glob(f"*_desc-confounds_{suffix}.tsv")):
            ents, _, _ = parse_name(cand)
            ents.pop("desc", None)
            if all(raw.get(k) == v for k, v in ents.items()) and ents.get("sub") == raw.get("sub"):
                return cand
    return None


def _find_events(raw_root: Path | None, bold: Path, root: Path, raw_ents: dict) -> Path | None:
    candidates = []
    if raw_root is not None:
        rel = bold.parent.relative_to(root) if root in bold.parents else None
        data = (raw_root / rel / bold.name) if rel is not None else raw_root / bold.name
        candidates += _inherited(data, raw_root, raw_ents, "events", ".tsv")
    if not candidates:  # events beside the file itself (raw run, or a copy in a derivatives folder)
        candidates += [p for p in _inherited(bold, root, raw_ents, "events", ".tsv") if p not in candidates]
    return candidates[-1] if candidates else None


def _norm_labels(labels) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = [labels]
    return [str(lab)[4:] if str(lab).startswith("sub-") else str(lab) for lab in labels]


def find_runs(bids_dir: str | Path, *, participant_labels=None, task: str | None = None,
              session: str | None = None, space: str | None = None,
              derivatives: str | Path | None = "auto", filters: dict | None = None) -> list[BoldRun]:
    """Find the BOLD runs of a BIDS dataset (raw, or preprocessed by fMRIPrep).

    Parameters
    ----------
    bids_dir : path
        A raw BIDS dataset (possibly with ``derivatives/fmriprep`` inside) or an fMRIPrep output folder.
    participant_labels : list of str, optional
        Subjects to keep, with or without the ``sub-`` prefix.
    task, session, space : str, optional
        Keep only runs with these entity values. Without ``space``, one space per run is chosen
        (MNI152NLin2009cAsym first).
    derivatives : "auto", path or None
        ``"auto"`` looks for preprocessed runs in ``bids_dir`` and ``bids_dir/derivatives/*``; a path
        names the fMRIPrep folder; None uses the raw runs only.
    filters : dict, optional
        Entity filters of a BIDS filter file (:func:`dsr.io.bids_filter.read_filter_file`), applied with the
        others; one that names ``space`` keeps every space it allows.

    Returns
    -------
    list of BoldRun, sorted by subject, session, task and run.
    """
    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise InputError("BIDS folder not found", bids_dir)
    labels = _norm_labels(participant_labels)
    raw_root = None if _is_derivative(bids_dir) else bids_dir
    if derivatives is None or str(derivatives).lower() == "none":
        deriv_roots = []
    elif str(derivatives) == "auto":
        extra = sorted((bids_dir / "derivatives").glob("*")) if (bids_dir / "derivatives").is_dir() else []
        extra.sort(key=lambda p: (p.name.lower() != "fmriprep", p.name))
        deriv_roots = [bids_dir] + [p for p in extra if p.is_dir()]
    else:
        deriv_roots = [Path(derivatives)]
        if not deriv_roots[0].is_dir():
            raise InputError("derivatives folder not found", deriv_roots[0])
    runs = []
    for root in deriv_roots:
        for bold in _subject_files(root, "*_desc-preproc_bold.nii*"):
            ents, _, _ = parse_name(bold)
            runs.append(BoldRun(bold, ents, "fmriprep", root, raw_root,
                                confounds=_find_confounds(bold, ents), problem=dangling(bold)))
        if runs:
            break
    raw_runs = []
    if raw_root is not None:
        for bold in _subject_files(raw_root, "*_bold.nii*"):
            ents, suffix, _ = parse_name(bold)
            if suffix == "bold" and "desc" not in ents:
                raw_runs.append(BoldRun(bold, ents, "raw", raw_root, raw_root,
                                        confounds=_find_confounds(bold, ents), problem=dangling(bold)))
    runs = runs + _unprocessed(raw_runs, runs) if runs else raw_runs
    keep = []
    for run in runs:
        e = run.entities
        if "sub" not in e or (labels is not None and e["sub"] not in labels):
            continue
        if (task is not None and e.get("task") != task) or (session is not None and e.get("ses") != session):
            continue
        if space is not None and e.get("space") != space and run.problem is None:
            continue
        if filters and not matches(e, {k: v for k, v in filters.items()  # a run with a problem keeps its row
                                       if run.problem is None or k not in DERIVATIVE_ENTITIES}):
            continue
        events = _find_events(run.raw_root, run.bold, run.root, run.raw_entities())
        keep.append(BoldRun(run.bold, run.entities, run.source, run.root, run.raw_root, run.confounds, events,
                            run.problem))
    if space is None and "space" not in (filters or {}):
        keep = _one_space_per_run(keep)
    return sorted(keep, key=lambda r: (build_name(r.key_entities()), str(r.bold)))


def _unprocessed(raw_runs: list[BoldRun], processed: list[BoldRun]) -> list[BoldRun]:
    """Raw runs that no preprocessed run comes from, each with the problem said (so it gets a status row
    instead of vanishing)."""
    done = {build_name(r.raw_entities()) for r in processed}
    roots = sorted({str(r.root) for r in processed})
    return [dataclasses.replace(r, problem=f"raw BOLD run without fMRIPrep output (looked in {', '.join(roots)}); "
                                         "preprocess it, or leave it out with --participant-label / --task")
            for r in raw_runs if build_name(r.raw_entities()) not in done]


def _one_space_per_run(runs: list[BoldRun]) -> list[BoldRun]:
    """Keep one output space per raw run, preferring :data:`PREFERRED_SPACES` in order."""
    groups: dict[str, list[BoldRun]] = {}
    for run in runs:
        groups.setdefault(build_name(run.raw_entities()), []).append(run)

    def rank(run):
        sp = run.space or ""
        return (PREFERRED_SPACES.index(sp) if sp in PREFERRED_SPACES else len(PREFERRED_SPACES), sp,
                run.entities.get("res", ""), str(run.bold))

    return [min(group, key=rank) for group in groups.values()]


def subjects(bids_dir: str | Path) -> list[str]:
    """Subject labels (without ``sub-``) that have a folder in ``bids_dir``."""
    return sorted(p.name[4:] for p in Path(bids_dir).glob("sub-*") if p.is_dir())


#: The ``DatasetLinks`` name of the input dataset in a derivatives folder's BIDS URIs (``bids:raw:sub-01/...``).
INPUT_DATASET = "raw"


def bids_uri(path: str | Path, root: str | Path | None, dataset: str = INPUT_DATASET) -> str:
    """A file of the input dataset as a BIDS URI, ``bids:<dataset>:<path relative to root>``.

    The BIDS specification ("BIDS URI", common principles) resolves ``<dataset>`` through the
    ``DatasetLinks`` of the derivatives' ``dataset_description.json``, which maps it to ``root``. A file
    outside ``root`` (an atlas given on the command line) gets a ``file://`` URI; without ``root`` the
    path is returned as it is.
    """
    if root is None:
        return str(path)
    # as written first (symbolic links are not resolved), then both resolved
    for p, r in ((os.path.abspath(path), os.path.abspath(root)), (Path(path).resolve(), Path(root).resolve())):
        try:
            rel = Path(p).relative_to(r)
        except ValueError:
            continue
        return f"bids:{dataset}:{rel.as_posix()}"
    return Path(os.path.abspath(path)).as_uri()


def dataset_link(root: str | Path) -> str:
    """The ``DatasetLinks`` value of an input dataset: its absolute ``file://`` URI."""
    return Path(os.path.abspath(root)).as_uri()

"""Running one participant-level fit: start (checks, extraction, provenance "running"), fit, finish.

Every check that can fail before training does so before any training starts: a run found with a problem
(a dangling link, raw BOLD without fMRIPrep output) fails at once naming it, and the run's length is checked
against everything the fit needs (training, held-out part and evaluation). The executor task
:func:`run_job_isolated` runs each fit in a child process, so a fit that kills its process (out of memory)
is recorded failed with how it died and the batch goes on (:mod:`dsr.pipelines.isolation`).

Rerun safety: nothing about a finished fit (status ok or diverged, metrics written) is ever rewritten.
The same config and inputs again: the fit is skipped. Another config, or other inputs or extraction
settings: the fit is refused with one line and every file and the status row stay as they were (fit into
another OUTPUT_DIR, or delete the old fit's files to refit). Provenance is written only for fits that
really start; the fit's files are replaced only once the new fit has succeeded.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from dsr import __version__, timing
from dsr.config import DsrConfig
from dsr.errors import DsrError, InputError
from dsr.io import bids, extract
from dsr.io.atomic import write_json
from dsr.io.derivatives import (cleaned_series, fit_files, fit_prefix, outputs_written, prefix_of, run_names,
                                 run_provenances)
from dsr.pipelines import isolation
from dsr.pipelines.fit_array import fit_to_dir, resolve_config
from dsr.pipelines.plan import FitJob
from dsr.pipelines.status import one_line
from dsr.progress import epoch_progress
from dsr.report.provenance import command_line

FINISHED = ("ok", "diverged")


@dataclass
class PendingFit:
    """A started fit: its inputs are extracted, its provenance says "running"; ``config`` is resolved
    against the data (its hash is the fit's identity)."""

    job: FitJob
    folder: Path
    prefix: str
    record: dict
    series: extract.RunSeries
    resume: bool
    config: DsrConfig

    @property
    def prov_path(self) -> Path:
        return self.folder / fit_files(self.prefix)["provenance"]

    @property
    def checkpoint_dir(self) -> Path:
        return checkpoint_dir(self.job, self.folder, self.prefix)

    @property
    def source(self) -> str:
        """The run's BOLD file as a BIDS URI (``bids:raw:sub-01/func/...``), the ``Sources`` of every output."""
        return bids.bids_uri(self.job.run.bold, self.job.input_root)


def checkpoint_dir(job: FitJob, folder: Path, prefix: str) -> Path:
    """Where a fit's training checkpoint lives: beside its outputs, or under the work folder
    (``--work-dir``) at the same place relative to it."""
    name = fit_files(prefix)["checkpoint"]
    if job.work_dir is None:
        return folder / name
    return Path(job.work_dir) / Path(folder).relative_to(job.output_dir) / name


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _finished(prov: dict, folder: Path, prefix: str) -> bool:
    """A fit that finished (its metrics written): never overwritten by a fit of another identity."""
    return prov.get("Status") in FINISHED and (folder / fit_files(prefix)["metrics"]).is_file()


def _refused(prov_path: Path, why: str) -> dict:
    fit = prov_path.parent / prefix_of(prov_path)
    return {"status": "refused", "reason": f"{fit}: a finished fit {why}; it is left as it is (use another "
                                           "OUTPUT_DIR, or delete that fit's files to refit)"}


def _other_inputs(folder: Path, base: str, key: str) -> dict | None:
    """The refusal of a run one of whose fits finished from other inputs or extraction settings, else None."""
    for other in run_provenances(folder, base):  # every seed of this run shares the extracted series
        prov = _read_json(other)
        if _finished(prov, folder, prefix_of(other)) and prov.get("InputKey") != key:
            return _refused(other, "was made from other inputs or extraction settings")
    return None


def extract_job(job: FitJob, device: str | None = None) -> dict:
    """Executor task: extract a job's run into the series cache ahead of :func:`start_fit` (which then reads
    it), under the same rule: nothing is written for a run one of whose fits finished from other inputs.
    Never raises; a failure is left for :func:`start_fit` to report."""
    try:
        sub_folder, base, _ = run_names(job.run, job.atlas.name)
        folder = job.output_dir / sub_folder
        extract.check_readable(job.run)
        if _other_inputs(folder, base, extract.series_key(job.run, job.atlas, job.settings, job.atlas_spec)):
            return {"status": "refused"}
        with timing.stage("extraction"):
            extract.extract_run_cached(job.run, job.atlas, job.settings, folder, base, filter_config=job.config,
                                       atlas_spec=job.atlas_spec, input_root=job.input_root)
        return {"status": "ok", "stages": timing.take()}
    except Exception as exc:  # noqa: BLE001 - reported by start_fit
        return {"status": "failed", "reason": one_line(exc), "stages": timing.take()}


def start_fit(job: FitJob, memo: dict | None = None, marks: list | None = None) -> PendingFit | dict:
    """Check a fit against what is in its folder, extract its series and mark it running.

    Returns a result dict instead when the fit finished earlier with the same config and inputs
    (``"skipped": True``) or with others (``"status": "refused"``). Nothing is written before those checks
    except the extracted tables of a run none of whose fits finished with other inputs. Raises DsrError for
    bad input. ``memo`` (a dict kept by the caller) shares one run's series between its seeds' fits. With
    ``marks`` (a list), the "running" provenance is appended there as (path, record) for the caller to write
    (:func:`write_marks`) before the fit trains, instead of written here.
    """
    sub_folder, base, _ = run_names(job.run, job.atlas.name)
    folder = job.output_dir / sub_folder
    prefix = fit_prefix(base, job.seed)
    prov_path = folder / fit_files(prefix)["provenance"]
    extract.check_readable(job.run)  # a run found with a problem fails here, naming it
    key = extract.series_key(job.run, job.atlas, job.settings, job.atlas_spec)
    memo = {} if memo is None else memo
    run_key = (folder, base, key, job.config.replace(seed=0).hash())
    if run_key not in memo:  # the run's refusal or its series, the same for every seed
        with timing.stage("extraction"):
            memo[run_key] = _other_inputs(folder, base, key) or extract.extract_run_cached(
                job.run, job.atlas, job.settings, folder, base, filter_config=job.config,
                atlas_spec=job.atlas_spec, input_root=job.input_root)  # length: whole fit
    if isinstance(memo[run_key], dict):
        return memo[run_key]
    series = memo[run_key]
    config = resolve_config(job.config, series.series.shape[1], series.nuisance is not None)
    cfg_hash = config.hash()
    prov = _read_json(prov_path)
    if _finished(prov, folder, prefix):
        if prov.get("ConfigHash") != cfg_hash:
            return _refused(prov_path, f"was made with config {prov.get('ConfigHash')}, not {cfg_hash}")
        if outputs_written(folder, prefix):  # done only with every output written (figure included)
            return {"status": prov["Status"], "skipped": True, "config_hash": cfg_hash,
                    "reason": f"skipped: finished earlier with config {cfg_hash} and the same inputs"}
    remove_orphans(folder, prefix, checkpoint_dir(job, folder, prefix))
    source = bids.bids_uri(job.run.bold, job.input_root)
    record = {"ConfigHash": cfg_hash, "InputKey": key, "Sources": [source], "Config": config.to_dict(),
              "GeneratedBy": [{"Name": "dsr", "Version": __version__}], "CommandLine": command_line(),
              "ExtractedSeries": cleaned_series(folder, base).name}
    resume = prov.get("ConfigHash") == cfg_hash and prov.get("InputKey") == key and prov.get("Status") == "running"
    if marks is None:
        write_json(prov_path, dict(record, Status="running"))
    else:
        marks.append((prov_path, dict(record, Status="running")))
    return PendingFit(job, folder, prefix, record, series, resume, config)


def write_marks(marks: list, threads: int = 8) -> dict:
    """Write the "running" provenance files :func:`start_fit` deferred (each an atomic write with fsync: in
    ``threads`` threads, so that a thousand fits do not wait on the disk one after another); empties
    ``marks``. Returns {position in marks: the error} for the files that could not be written."""
    from concurrent.futures import ThreadPoolExecutor

    def write(mark):
        try:
            write_json(*mark)
        except (DsrError, OSError) as exc:
            return exc

    if len(marks) > 1 and threads > 1:
        with ThreadPoolExecutor(min(threads, len(marks))) as pool:
            errors = list(pool.map(write, marks))
    else:
        errors = [write(m) for m in marks]
    marks.clear()
    return {k: exc for k, exc in enumerate(errors) if exc is not None}


def finish_fit(pending: PendingFit, metrics: dict) -> dict:
    """Write the final provenance of a fitted run; returns its result dict."""
    status = str(metrics.get("status", "ok"))
    summary = {k: metrics.get(k) for k in ("dstsp", "dh", "lyapunov_max_per_second") if k in metrics}
    write_json(pending.prov_path, dict(pending.record, Status=status, Metrics=summary))
    return {"status": status, "reason": "" if status == "ok" else "training diverged", "metrics": summary,
            "config_hash": pending.record["ConfigHash"]}


def fit_pending(pending: PendingFit, device: str) -> dict:
    """Fit a started run on its own, write its outputs and final provenance; returns its result dict."""
    s, bold = pending.series, pending.job.run.bold
    try:
        metrics = fit_to_dir(s.series, s.tr, pending.folder, pending.config, prefix=pending.prefix,
                             nuisance=s.nuisance, inputs=s.inputs, device=device, resume=pending.resume,
                             source=pending.source, checkpoint_dir=pending.checkpoint_dir,
                             progress=epoch_progress(fit_name(pending.job)))
    except InputError as exc:
        raise name_input_error(exc, bold) from None
    return finish_fit(pending, metrics)


def fit_name(job: FitJob) -> str:
    """A short name of a fit for progress bars and lines: ``sub-01 task-rest[ run-1][ seed-2]``."""
    parts = [f"{k}-{v}" for k, v in job.run.raw_entities().items() if k != "sub"]
    return " ".join([job.participant_id, *parts] + ([] if job.seed is None else [f"seed-{job.seed}"]))


def name_input_error(exc: DsrError, path) -> DsrError:
    """An input error that names no file gets ``path`` (the run's BOLD file)."""
    if isinstance(exc, InputError) and exc.path is None:
        return InputError(exc.message, path)
    return exc


def run_job(job: FitJob, device: str) -> dict:
    """Executor task: start, fit and write one fit. Never raises: a failure comes back as
    ``{"status": "failed", "reason": one line}``; otherwise ``{"status", "reason", "metrics",
    "config_hash"}`` (ok or diverged; ``"skipped": True`` for a fit done earlier; refused, see above)."""
    try:
        pending = start_fit(job)
        return pending if isinstance(pending, dict) else fit_pending(pending, device)
    except Exception as exc:
        return failure(exc, job.run.bold)


def failure(exc: Exception, bold) -> dict:
    """The failed result of a fit of run ``bold`` that raised ``exc``: a DsrError's line (naming ``bold``
    when it names no file), an OSError naming its file, anything else an internal error (a bug)."""
    if isinstance(exc, DsrError):
        return {"status": "failed", "reason": one_line(name_input_error(exc, bold))}
    if isinstance(exc, OSError):  # a file that cannot be read or written: named, not an internal error
        return {"status": "failed", "reason": one_line(f"{exc.filename or bold}: {exc.strerror or exc}")}
    return {"status": "failed", "reason": one_line(f"{bold}: internal error: {type(exc).__name__}: {exc}")}


#: The executor task: :func:`run_job` in a child process, so that a fit that kills its process is recorded
#: as failed (naming how it died) and the batch goes on (:func:`dsr.pipelines.isolation.run_isolated`).
run_job_isolated = functools.partial(isolation.run_isolated, run_job)


def remove_orphans(folder: Path, prefix: str, checkpoint_dir: Path | None = None) -> None:
    """Delete this fit's temporary files left by a process killed while writing (``.{name}.*.tmp``, in its
    folder and its checkpoint folder); only this fit writes names starting with ``prefix``."""
    ck = folder / fit_files(prefix)["checkpoint"] if checkpoint_dir is None else Path(checkpoint_dir)
    for p in [*folder.glob(f".{prefix}_*.tmp"), *ck.glob(".*.tmp")]:
        p.unlink(missing_ok=True)

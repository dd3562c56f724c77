"""The BIDS-App ``participant`` level: for every run, extract → cache → fit → BIDS-derivatives outputs.

Per run (``base`` = ``sub-01_task-rest_space-S_atlas-A``), in ``OUTPUT_DIR/sub-01[/ses-1]/func/``:

- ``{base}_desc-cleaned_timeseries.tsv`` (+ ``desc-nuisance``, ``desc-inputs``) with JSON sidecars: the
  extracted series, reused while inputs and extraction settings are unchanged;
- ``{base}_desc-convssm_*``: the fit's outputs (model, metrics, generated series, curve, figure);
- ``{base}_desc-convssm_provenance.json``: config hash, input key and status, written last. A run whose
  provenance matches the config and the inputs is skipped.

``OUTPUT_DIR/status.tsv`` has one row per run (participant_id, run, status, reason, config_hash). A failing
run is recorded there with one line on stderr, and the other runs go on.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dsr import __version__
from dsr.config import DsrConfig
from dsr.errors import ConfigError, DsrError, InputError
from dsr.io import bids, extract, nifti, status_table
from dsr.io.atomic import check_writable, write_json
from dsr.pipelines import isolation
from dsr.pipelines.executors import ExecutorSettings, preflight, run_tasks

log = logging.getLogger("dsr")
STATUS_COLUMNS = ("participant_id", "run", "status", "reason", "config_hash")
FIT_DESC = "convssm"


def check_output_dir(bids_dir: Path, output_dir: Path) -> None:
    """Refuse an output folder that is the BIDS folder or lies inside it."""
    b, o = Path(bids_dir).resolve(), Path(output_dir).resolve()
    if o == b or b in o.parents:
        raise InputError(f"the output folder must not lie inside the BIDS folder {b}; choose a folder "
                         "outside it", output_dir)
    if o.exists() and not o.is_dir():
        raise InputError("the output path exists and is not a folder", output_dir)


def default_atlas(bids_dir: Path, runs: list[bids.BoldRun]) -> Path:
    """The one labels atlas (``*_dseg.nii[.gz]``) shipped in ``BIDS_DIR/derivatives/atlas`` or ``BIDS_DIR/atlas``
    whose ``tpl-``/``space-`` matches the runs' space."""
    spaces = {r.space for r in runs if r.space}
    found = []
    for folder in (bids_dir / "derivatives" / "atlas", bids_dir / "atlas"):
        if folder.is_dir():
            for p in sorted(folder.rglob("*_dseg.nii*")):
                ents, _, _ = bids.parse_name(p)
                tpl = ents.get("tpl") or ents.get("space")
                if not spaces or tpl is None or tpl in spaces:
                    found.append(p)
    if len(found) == 1:
        return found[0]
    hint = "pass --atlas FILE (labels or maps NIfTI, coordinates TSV) or power2011, dosenbach2010, seitzman2018"
    if not found:
        raise InputError(f"no atlas given and no *_dseg.nii.gz in derivatives/atlas; {hint}", bids_dir)
    raise InputError(f"no atlas given and {len(found)} candidates in derivatives/atlas "
                     f"({', '.join(p.name for p in found)}); {hint}", bids_dir)


def run_names(run: bids.BoldRun, atlas_name: str) -> tuple[Path, str, str]:
    """Output sub-folder, file base and run label of a run (relative to OUTPUT_DIR)."""
    ents = dict(run.key_entities(), atlas=atlas_name)
    folder = Path(f"sub-{run.subject}") / (f"ses-{run.session}" if run.session else "") / "func"
    return folder, bids.build_name(ents), bids.build_name({k: v for k, v in ents.items() if k != "sub"})


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass
class PendingFit:
    """A run whose inputs are extracted and whose provenance says "running": ready to be fitted."""

    run: bids.BoldRun
    folder: Path
    prefix: str
    prov_path: Path
    record: dict
    series: extract.RunSeries
    resume: bool


def start_run(run: bids.BoldRun, atlas: nifti.Atlas, settings: extract.ExtractionSettings, config: DsrConfig,
              output_dir: Path, atlas_spec: str | None = None, seed_label: int | None = None) -> PendingFit | dict:
    """Extract a run's series and mark its fit as running; a result dict instead when an identical fit
    finished earlier (``"skipped": True``). Raises DsrError for bad input."""
    sub_folder, base, _ = run_names(run, atlas.name)
    folder = output_dir / sub_folder
    seed_part = "" if seed_label is None else f"_seed-{seed_label}"  # several seeds: one fit each
    prefix = f"{base}{seed_part}_desc-{FIT_DESC}"
    prov_path = folder / f"{prefix}_provenance.json"
    cfg_hash = config.hash()
    _remove_orphans(folder, prefix)
    series = extract.extract_run_cached(run, atlas, settings, folder, base, filter_config=config,
                                        atlas_spec=atlas_spec)
    key = series.meta.get("CacheKey")
    try:
        prov = json.loads(prov_path.read_text())
    except (OSError, ValueError):
        prov = {}
    same = prov.get("ConfigHash") == cfg_hash and prov.get("InputKey") == key
    from dsr.pipelines.fit_array import outputs_written

    if same and prov.get("Status") in ("ok", "diverged") and outputs_written(folder, prefix):
        return {"status": prov["Status"], "skipped": True,
                "reason": f"skipped: finished earlier with config {cfg_hash} and the same inputs"}
    record = {"ConfigHash": cfg_hash, "InputKey": key, "Sources": [str(run.bold)], "Config": config.to_dict(),
              "GeneratedBy": [{"Name": "dsr", "Version": __version__}], "ExtractedSeries": f"{base}_desc-cleaned_timeseries.tsv"}
    resume = same and prov.get("Status") == "running"
    write_json(prov_path, dict(record, Status="running"))
    _test_kill_point(run)
    return PendingFit(run, folder, prefix, prov_path, record, series, resume)


def finish_run(pending: PendingFit, metrics: dict) -> dict:
    """Write the final provenance of a fitted run; returns its result dict."""
    status = str(metrics.get("status", "ok"))
    summary = {k: metrics.get(k) for k in ("dstsp", "dh", "lyapunov_max_per_second") if k in metrics}
    write_json(pending.prov_path, dict(pending.record, Status=status, Metrics=summary))
    return {"status": status, "reason": "" if status == "ok" else "training diverged", "metrics": summary}


def process_run(run: bids.BoldRun, atlas: nifti.Atlas, settings: extract.ExtractionSettings,
                config: DsrConfig, output_dir: Path, device: str = "cpu", atlas_spec: str | None = None,
                seed_label: int | None = None) -> dict:
    """Extract, fit and write one run; returns ``{"status", "reason", "metrics"}`` (status ok or diverged;
    ``"skipped": True`` when an earlier identical fit was found) or raises DsrError."""
    pending = start_run(run, atlas, settings, config, output_dir, atlas_spec, seed_label)
    if isinstance(pending, dict):
        return pending
    return fit_pending(pending, config, device)


def fit_pending(pending: PendingFit, config: DsrConfig, device: str) -> dict:
    """Fit a started run on its own, write its outputs and final provenance; returns its result dict."""
    from dsr.pipelines.fit_array import fit_to_dir

    s = pending.series
    try:
        metrics = fit_to_dir(s.series, s.tr, pending.folder, config, prefix=pending.prefix, nuisance=s.nuisance,
                             inputs=s.inputs, device=device, resume=pending.resume, source=str(pending.run.bold))
    except InputError as exc:
        raise name_input_error(exc, pending.run.bold) from None
    return finish_run(pending, metrics)


def name_input_error(exc: DsrError, path) -> DsrError:
    """An input error that names no file gets ``path`` (the run's BOLD file)."""
    if isinstance(exc, InputError) and exc.path is None:
        return InputError(exc.message, path)
    return exc


def _worker_inline(args, device: str | None = None) -> dict:
    """Executor task (one job tuple; ``device`` overrides the job's): never raises; failures come back as a
    status."""
    run, atlas, settings, config, output_dir, device_job, atlas_spec, seed_label = args
    device = device_job if device is None else device
    try:
        return process_run(run, atlas, settings, config, output_dir, device, atlas_spec, seed_label)
    except DsrError as exc:
        return {"status": "failed", "reason": _one_line(exc)}
    except OSError as exc:  # a file that cannot be read or written: named, not an internal error
        return {"status": "failed", "reason": _one_line(f"{exc.filename or run.bold}: {exc.strerror or exc}")}
    except Exception as exc:  # an unexpected bug: still one line, the run is marked failed
        return {"status": "failed", "reason": _one_line(f"{run.bold}: internal error: {type(exc).__name__}: {exc}")}


#: The executor task: :func:`_worker_inline` in a child process, so a fit that kills its process (out of
#: memory) is recorded as failed and the batch goes on (:mod:`dsr.pipelines.isolation`).
_worker = functools.partial(isolation.run_isolated, _worker_inline)


def _remove_orphans(folder: Path, prefix: str) -> None:
    """Delete this fit's temporary files left by a process killed while writing (``.{name}.*.tmp``); only
    this fit writes names starting with ``prefix``."""
    for p in [*folder.glob(f".{prefix}_*.tmp"), *(folder / f"{prefix}_checkpoint").glob(".*.tmp")]:
        p.unlink(missing_ok=True)


def _test_kill_point(run: bids.BoldRun) -> None:
    """Fault injection for tests (``DSR_TEST_KILL_SUBJECT=<label>``): end this process abruptly, like an
    out-of-memory kill, once the subject's fit has started."""
    if os.environ.get("DSR_TEST_KILL_SUBJECT") == run.subject:
        os._exit(137)


def read_status(output_dir: Path) -> pd.DataFrame:
    """The status table (empty when absent; extra columns a person added are kept)."""
    return status_table.read_status(output_dir / "status.tsv", STATUS_COLUMNS)


def _write_status(output_dir: Path, rows: dict) -> None:
    """Merge ``rows`` into status.tsv under a lock, keeping other rows and extra columns."""
    status_table.write_status(output_dir / "status.tsv", rows, STATUS_COLUMNS)


def write_description(output_dir: Path, bids_dir: Path, config: DsrConfig) -> None:
    """dataset_description.json of the derivatives folder."""
    write_json(output_dir / "dataset_description.json", {
        "Name": "dsr: dynamical systems reconstruction", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "dsr", "Version": __version__,
                         "Description": "convSSM trained by generalized teacher forcing"}],
        "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}]})


@dataclass
class ParticipantPlan:
    """The runs of a participant-level call and what every fit of them shares."""

    runs: list[bids.BoldRun]
    missing: list[str]  # requested labels without runs
    atlas: nifti.Atlas
    atlas_spec: str
    settings: extract.ExtractionSettings

    def jobs(self, config: DsrConfig, output_dir: Path, device: str, seeds: list[int] | None) -> list[tuple]:
        """One job tuple (the :func:`_worker` argument) per run and seed."""
        seed_list = [None] if not seeds else [int(x) for x in seeds]
        return [(r, self.atlas, self.settings, config if sd is None else config.replace(seed=sd), Path(output_dir),
                 device, self.atlas_spec, sd) for r in self.runs for sd in seed_list]


def plan_participant(bids_dir: Path, output_dir: Path, *, participant_labels: list[str] | None,
                     task: str | None, session: str | None, space: str | None, atlas: str | None,
                     config: DsrConfig, confounds: str | None, derivatives: str | Path | None = "auto",
                     confounds_mode: str | None = None, high_pass: float | None = None,
                     low_pass: float | None = None, radius: float | None = None) -> ParticipantPlan:
    """Find the runs, load the atlas and settle the extraction settings (see :func:`run_participant`)."""
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    check_output_dir(bids_dir, output_dir)
    runs = bids.find_runs(bids_dir, participant_labels=participant_labels, task=task, session=session,
                          space=space, derivatives=derivatives)
    found = {r.subject for r in runs}
    missing = [lab for lab in (bids._norm_labels(participant_labels) or []) if lab not in found]
    if not runs:
        filters = ", ".join(f"{k} {v}" for k, v in (("participant", participant_labels), ("task", task),
                                                    ("session", session), ("space", space)) if v)
        raise InputError("no BOLD runs found" + (f" for {filters}" if filters else ""), bids_dir)
    atlas_spec = str(atlas) if atlas is not None else str(default_atlas(bids_dir, runs))
    atlas_obj = nifti.load_atlas(atlas_spec, radius=radius)
    mode = confounds_mode or ("nuisance" if config.model.observation == "regressor" else "regress")
    settings = extract.ExtractionSettings(confounds=confounds, confounds_mode=mode, high_pass=high_pass,
                                          low_pass=low_pass, radius=radius)
    return ParticipantPlan(runs, missing, atlas_obj, atlas_spec, settings)


def absolute_paths(bids_dir: Path, output_dir: Path, atlas: str | None) -> tuple[Path, Path, str | None]:
    """The folders and an atlas *file* as absolute paths (Ray workers may run in another folder or on another
    node; an atlas given by name stays a name)."""
    if atlas is not None and Path(atlas).exists():
        atlas = str(Path(atlas).resolve())
    return Path(bids_dir).resolve(), Path(output_dir).resolve(), atlas


def record_missing(plan: ParticipantPlan, bids_dir: Path, config: DsrConfig, rows: dict) -> int:
    """Status rows (and one stderr line each) for requested participants without runs; returns their count."""
    for lab in plan.missing:
        reason = _one_line(f"{bids_dir}: no BOLD runs found for sub-{lab}")
        rows[(f"sub-{lab}", "")] = [f"sub-{lab}", "", "failed", reason, config.hash()]
        print(f"dsr: sub-{lab}: failed: {reason}", file=sys.stderr)
    return len(plan.missing)


def run_participant(bids_dir: Path, output_dir: Path, *, participant_labels: list[str] | None,
                    task: str | None, session: str | None, space: str | None, atlas: str | None,
                    config: DsrConfig, device: str, confounds: str | None, n_jobs: int = 1,
                    derivatives: str | Path | None = "auto", confounds_mode: str | None = None,
                    high_pass: float | None = None, low_pass: float | None = None,
                    radius: float | None = None, seeds: list[int] | None = None,
                    executor: str = "local", ray_address: str | None = None, fits_per_gpu: int = 1,
                    max_retries: int = 2, stack: bool = False) -> int:
    """Run the participant level of the BIDS App.

    Parameters
    ----------
    bids_dir, output_dir : Path
        Input dataset (raw BIDS, with or without ``derivatives/fmriprep``, or an fMRIPrep folder) and the
        derivatives folder to write (never inside ``bids_dir``).
    participant_labels, task, session, space
        Filters (see :func:`dsr.io.bids.find_runs`).
    atlas : str or None
        Atlas file or coordinate atlas name; None uses the one atlas in ``BIDS_DIR/derivatives/atlas``.
    config : DsrConfig
    device : str
        ``cpu``, ``cuda:K``, or ``cuda``/``auto`` to spread the fits over every visible GPU.
    confounds : str or None
        Confound strategy (:mod:`dsr.io.confounds`); None: ``motion6+wmcsf`` when a confounds table exists.
    n_jobs : int
        Runs fitted in parallel processes (local executor on CPU).
    seeds : list of int or None
        Fit every run once per seed (outputs named ``..._seed-N_desc-convssm_*``); None: one fit with
        ``config.seed``.
    derivatives, confounds_mode, high_pass, low_pass, radius
        See :func:`dsr.io.bids.find_runs` and :class:`dsr.io.extract.ExtractionSettings`; the confounds
        are kept as nuisance regressors by default when the config's observation model is ``regressor``.
    executor, ray_address, fits_per_gpu, max_retries
        See :class:`dsr.pipelines.executors.ExecutorSettings` (``executor="ray"`` runs every fit as a Ray
        task; the outputs are the same as the local executor's).
    stack : bool
        Train all pending fits that share TR, channel count and config (seeds aside) as one stacked model
        in this process (:mod:`dsr.pipelines.stacked`); each fit's outputs are those of a fit of its own.

    Returns
    -------
    int
        0 when every run succeeded (or was already done), 1 when some failed.

    Raises
    ------
    InputError
        Output inside the BIDS folder, no run found, an unusable atlas.
    """
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    ex = ExecutorSettings(kind=executor, device=device, n_jobs=n_jobs, fits_per_gpu=fits_per_gpu,
                          ray_address=ray_address, max_retries=max_retries)
    if stack and ex.kind != "local":
        raise ConfigError("--stack trains the fits together in this process: use it with the local executor")
    preflight(ex)
    if ex.kind == "ray":
        bids_dir, output_dir, atlas = absolute_paths(bids_dir, output_dir, atlas)
    plan = plan_participant(bids_dir, output_dir, participant_labels=participant_labels, task=task,
                            session=session, space=space, atlas=atlas, config=config, confounds=confounds,
                            derivatives=derivatives, confounds_mode=confounds_mode, high_pass=high_pass,
                            low_pass=low_pass, radius=radius)
    check_writable(output_dir)
    write_description(output_dir, bids_dir, config)
    rows: dict = {}
    failed = record_missing(plan, bids_dir, config, rows)
    jobs = plan.jobs(config, output_dir, device, seeds)
    log.info("%d run(s) of %d participant(s); atlas %s; outputs in %s", len(plan.runs),
             len({r.subject for r in plan.runs}), plan.atlas.name, output_dir)
    if stack:
        from dsr.pipelines.stacked import run_stacked

        failed += run_stacked(jobs, device, {output_dir: rows})
    else:
        failed += run_jobs(jobs, ex, {output_dir: rows})
    _write_status(output_dir, rows)
    return 1 if failed else 0


def run_jobs(jobs: list[tuple], ex: ExecutorSettings, rows_by_dir: dict[Path, dict],
             results: list | None = None) -> int:
    """Run job tuples with an executor; status rows go to each job's output folder as results arrive.

    ``results`` (optional) receives ``(job, result)`` pairs. Returns the number of failed jobs.
    """
    failed = 0

    def on_result(i: int, res: dict) -> None:
        nonlocal failed
        job = jobs[i]
        rows = rows_by_dir.setdefault(job[4], {})
        failed += _record(job[0], res, job[1].name, job[3], job[4], rows, job[7])
        if results is not None:
            results.append((job, res))

    try:
        run_tasks(_worker, jobs, ex, on_result)
    finally:
        for folder, rows in rows_by_dir.items():
            if rows:
                _write_status(folder, rows)
    return failed


def _record(run: bids.BoldRun, res: dict, atlas_name: str, config: DsrConfig, output_dir: Path,
            rows: dict, seed_label: int | None = None) -> int:
    """Log one result, add its status row (written at once); returns 1 for a failure."""
    _, _, label = run_names(run, atlas_name)
    if seed_label is not None:
        label = f"{label}_seed-{seed_label}"
    sub = f"sub-{run.subject}"
    rows[(sub, label)] = [sub, label, res["status"], res.get("reason", ""), config.hash()]
    _write_status(output_dir, rows)
    if res["status"] == "failed":
        print(f"dsr: {sub} {label}: failed: {res['reason']}", file=sys.stderr)
        return 1
    m = res.get("metrics") or {}
    extra = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, (int, float)))
    state = "already done, skipped" if res.get("skipped") else res["status"]
    log.info("%s %s: %s%s", sub, label, state, f" ({extra})" if extra else "")
    return int(res["status"] != "ok")  # a diverged fit makes the exit code non-zero, as in ``dsr fit``

"""Writing a fit's outputs (:func:`write_outputs`), and stacked fits' outputs in parallel worker processes.

A stack of S fits trains and is evaluated in one process, on one device; what follows is per fit and runs
on the CPU: the model (safetensors + JSON), the generated series, the training curve, the figure (for a
run fitted once; :func:`dsr.io.derivatives.draws_fit_figure`), the metrics and the final provenance. For
hundreds of fits that is most of a call's time, so a :class:`FitWriter` hands each fit to a pool of
``nprocs`` worker processes (started when the writer is, so that their imports overlap the training) and
collects the result dicts in order. Each fit is written by exactly the code a serial write runs
(:func:`write_fit`), so the files are the same byte for byte.

Worker processes are spawned, not forked: the parent may hold a CUDA context. Only what a fit's files
need travels to a worker (CPU tensors and arrays, the folder, the prefix, the provenance record).
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np

from dsr import __version__, timing
from dsr.errors import DsrError, OutputError
from dsr.io.atomic import write_json, write_tsv
from dsr.io.derivatives import draws_fit_figure, fit_files
from dsr.log import user_log
from dsr.pipelines.fit_array import FitResult
from dsr.pipelines.fitrun import PendingFit, failure, finish_fit
from dsr.timing import stage

log = user_log()


def write_outputs(result: FitResult, out_dir: Path, prefix: str = "", source: str | None = None) -> dict:
    """Write model, metrics, generated series, curve and (:func:`~dsr.io.derivatives.draws_fit_figure`)
    figure; every file atomically."""
    with stage("writing"):
        return _write_outputs(result, out_dir, prefix, source)


def _write_outputs(result: FitResult, out_dir: Path, prefix: str, source: str | None) -> dict:
    names = fit_files(prefix)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.model.save(out_dir / names["model"])
    N, M = result.x_gen.shape[1], result.z_gen.shape[1]
    write_tsv(out_dir / names["generated_obs"], result.x_gen, [f"x{i}" for i in range(N)])
    _sidecar(out_dir / names["generated_obs"], "Generated observations (data units), one row per TR", source)
    write_tsv(out_dir / names["generated_latent"], result.z_gen, [f"z{i}" for i in range(M)])
    _sidecar(out_dir / names["generated_latent"], "Generated latent states z_t (first row: initial state)", source)
    cols = ["epoch", "loss", "alpha", "lr"]
    if result.outcome.selected_epoch is not None:  # checkpoint selection: its score where one was taken, else NaN
        cols.append("select_score")
    curve = np.array([[r.get(c, np.nan) for c in cols] for r in result.outcome.curve]).reshape(-1, len(cols))
    write_tsv(out_dir / names["curve"], curve, cols)
    _sidecar(out_dir / names["curve"], "Training curve: mean GTF loss per epoch", source)
    if draws_fit_figure(prefix):  # not for a seed of a seed list: the subject report shows the median seed
        _write_figure(result, out_dir / names["figure"], prefix)
    metrics = dict(result.metrics, source=source)
    write_json(out_dir / names["metrics"], metrics)
    return metrics


def _write_figure(result: FitResult, path: Path, prefix: str) -> None:
    """The fit's data-vs-generated figure; a full disk raises, any other failure is one warning."""
    from dsr.report.figures import data_vs_generated

    try:
        x = result.data.x * result.data.std + result.data.mean
        with stage("figures"):
            data_vs_generated(x, result.x_gen, path, result.model.spec.tr, result.data.n_train,
                              title=f"{prefix or 'fit'}: D_stsp {result.metrics.get('dstsp', float('nan')):.3g}")
    except OutputError:  # a full disk: the fit is not done until its figure is written
        raise
    except Exception as exc:  # a failed figure never aborts a fit
        log.warning("figure %s not written: %s", path.name, exc)


def _sidecar(path: Path, description: str, source: str | None) -> None:
    write_json(path.with_suffix(".json"), {"Description": description, "Sources": [source] if source else [],
                                           "GeneratedBy": [{"Name": "dsr", "Version": __version__}]})


@dataclasses.dataclass
class WriteJob:
    """What writing one fitted run needs (picklable, no atlas or job attached)."""

    folder: Path
    prefix: str
    record: dict
    source: str
    bold: str

    @classmethod
    def of(cls, pending: PendingFit) -> "WriteJob":
        return cls(pending.folder, pending.prefix, pending.record, pending.source, str(pending.job.run.bold))


def write_fit(job: WriteJob, result: FitResult) -> dict:
    """Write one fit's outputs and its final provenance; its result dict (a write that fails, e.g. a full
    disk, fails this fit alone, naming the output)."""
    try:
        metrics = write_outputs(result, job.folder, job.prefix, job.source)
        return finish_fit(_Finished(job.folder, job.prefix, job.record), metrics)
    except (DsrError, OSError) as exc:
        return failure(exc, job.bold)


@dataclasses.dataclass
class _Finished:
    """The part of a :class:`PendingFit` that :func:`finish_fit` reads."""

    folder: Path
    prefix: str
    record: dict

    prov_path = PendingFit.prov_path


def _write_in_worker(job: WriteJob, result: FitResult) -> tuple[dict, dict]:
    res = write_fit(job, result)
    return res, timing.take()


def _start_worker(threads: int) -> None:
    from dsr.pipelines.executors import limit_threads

    limit_threads(threads)


def _ready() -> int:
    return 0


def on_cpu(result: FitResult) -> FitResult:
    """The fit with its model's tensors on the CPU (what travels to a writer process)."""
    result.model.to("cpu")
    return result


class FitWriter:
    """Writes fits in ``nprocs`` spawned processes (``nprocs <= 1``: here, at :meth:`submit`).

    Use as a context manager; :meth:`results` waits for every submitted fit and returns their result dicts
    in submission order (adding the workers' seconds per stage to this process's).
    """

    def __init__(self, nprocs: int, threads: int = 1):
        self.pool = None
        self.pending: list[Future | dict] = []
        if nprocs > 1:
            import multiprocessing as mp

            self.pool = ProcessPoolExecutor(nprocs, mp_context=mp.get_context("spawn"), initializer=_start_worker,
                                            initargs=(threads,))
            for _ in range(nprocs):  # start the workers now: their imports overlap the training
                self.pool.submit(_ready)

    def add(self, res: dict) -> None:
        """A fit's result known without writing (its stack failed), kept in order."""
        self.pending.append(res)

    def submit(self, job: WriteJob, result: FitResult) -> None:
        """Write ``result`` (where ``job`` says) now or in a worker."""
        if self.pool is None:
            self.pending.append(write_fit(job, result))
        else:
            self.pending.append(self.pool.submit(_write_in_worker, job, on_cpu(result)))

    def results(self) -> list[dict]:
        out = []
        for item in self.pending:
            if isinstance(item, dict):
                out.append(item)
                continue
            try:
                res, stages = item.result()
                timing.add(stages)
            except Exception as exc:  # a writer process died: this fit failed, the others stand
                res = {"status": "failed", "reason": f"not written: a writer process failed ({type(exc).__name__})"}
            out.append(res)
        self.pending = []
        return out

    def __enter__(self) -> "FitWriter":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

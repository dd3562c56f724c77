"""Executors: run many independent fits locally (processes, GPUs), as stacks, or on a Ray cluster.

An executor takes a picklable module-level task ``fn(job, device) -> dict`` and a list of jobs, and calls
``on_result(index, result)`` in the driver as results arrive (in completion order). The task never raises
for a failing fit (it returns a ``{"status": "failed", ...}`` dict); a worker process that dies is reported
as a failed result by the Ray executor (after ``max_retries``) and as a :class:`DsrError` by the local one.

Kinds: ``local`` (this module), ``ray`` (:mod:`dsr.pipelines.ray_executor`) and ``stack``
(:mod:`dsr.pipelines.stack`: the pending fits trained as stacked models, one stack per device).

Devices
-------
``device="cpu"``: ``nprocs`` CPU processes. ``"cuda"``/``"auto"`` with ``G`` visible GPUs: ``G × fits_per_gpu``
worker processes, each pinned to one GPU, round robin (``cuda:0, cuda:1, …, cuda:0, …``), so small fits are
packed several per GPU. ``"cuda:K"``: every fit on that GPU. On Ray each task asks for ``1/fits_per_gpu``
of a GPU (0 on a CPU-only cluster) and one CPU; Ray sets ``CUDA_VISIBLE_DEVICES`` so the task uses ``cuda``.

Environment variables named ``DSR_*`` in the driver are passed to every task (a Ray worker is started by the
cluster, not by the driver, and would not see them otherwise).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dsr.errors import DsrError
from dsr.log import user_log
from dsr.progress import Progress

log = user_log()
EXECUTORS = ("local", "ray", "stack")
Task = Callable[[Any, str], dict]
OnResult = Callable[[int, dict], None]


@dataclass(frozen=True)
class ExecutorSettings:
    """Where and how the fits run.

    Parameters
    ----------
    kind : {"local", "ray", "stack"}
    device : str
        ``cpu``, ``cuda``, ``cuda:K`` or ``auto`` (CUDA when present).
    nprocs : int
        Local CPU worker processes (1: in the driver process).
    threads : int
        Intra-op threads of every process that fits (torch, OpenMP and BLAS); 1 by default, so that N
        workers use N cores and a busy machine is not oversubscribed.
    fits_per_gpu : int
        Fits that share one GPU (local worker processes per GPU; Ray: ``num_gpus = 1/fits_per_gpu``).
    ray_address : str or None
        Address of a running Ray cluster (``auto``, ``HOST:6379`` or ``ray://HOST:10001``); None starts a
        local one for the duration of the call (or uses the one already initialised in this process).
    ray_num_cpus : int or None
        CPUs of the local Ray cluster started when no address is given (None: all).
    max_retries : int
        Ray: times a task whose worker process died is rerun before it counts as failed.
    n_gpus : int or None
        Visible GPUs; None asks torch (tests fake a count here).
    """

    kind: str = "local"
    device: str = "cpu"
    nprocs: int = 1
    threads: int = 1
    fits_per_gpu: int = 1
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    max_retries: int = 2
    n_gpus: int | None = None

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise DsrError(f"unknown executor '{self.kind}' (use {' or '.join(EXECUTORS)})")
        if self.nprocs < 1 or self.threads < 1 or self.fits_per_gpu < 1 or self.max_retries < 0:
            raise DsrError("--nprocs, --omp-nthreads and --fits-per-gpu must be >= 1, --max-retries >= 0")


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Make this process (and the worker processes it starts) compute on ``threads`` threads: torch's
    intra-op pool, the BLAS / OpenMP pools already loaded (``threadpoolctl``) and, for children, the
    ``OMP_NUM_THREADS``-style environment variables."""
    import torch

    for key in THREAD_ENV:
        os.environ[key] = str(threads)
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy's BLAS keeps its own count; torch (the hot loops) is limited above
        return
    threadpool_limits(limits=threads)


def gpu_count() -> int:
    """CUDA devices visible to this process (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def uses_gpus(device: str) -> bool:
    """Whether ``device`` asks for GPUs to be spread over (``cuda`` or ``auto``, not one ``cuda:K``)."""
    return device in ("cuda", "auto")


def slot_devices(settings: ExecutorSettings, n_tasks: int) -> list[str]:
    """The device of every local worker slot (one slot = one worker process).

    Examples
    --------
    >>> slot_devices(ExecutorSettings(device="cuda", fits_per_gpu=2, n_gpus=2), 10)
    ['cuda:0', 'cuda:1', 'cuda:0', 'cuda:1']
    """
    n_gpus = gpu_count() if settings.n_gpus is None else settings.n_gpus
    if uses_gpus(settings.device) and n_gpus > 0:
        slots = [f"cuda:{i % n_gpus}" for i in range(n_gpus * settings.fits_per_gpu)]
    elif settings.device == "auto":
        slots = ["cpu"] * settings.nprocs
    else:
        slots = [settings.device] * settings.nprocs
    return slots[:max(1, n_tasks)]


def probe(job, device: str) -> dict:
    """A task that fits nothing: reports the device, process and threads it ran with (checks the placement)."""
    import torch

    return {"status": "ok", "job": job, "device": device, "pid": os.getpid(), "threads": torch.get_num_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS"), "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}


def run_tasks(fn: Task, jobs: Sequence, settings: ExecutorSettings, on_result: OnResult, what: str = "fits") -> None:
    """Run ``fn(job, device)`` for every job with the chosen executor; ``on_result(i, result)`` per job
    (``what`` the jobs are, in the progress bar or lines of :class:`dsr.progress.Progress`; a result whose
    status is not ``ok`` counts as failed)."""
    if not jobs:
        return
    with Progress(len(jobs), what) as progress:
        def counted(i: int, res: dict) -> None:
            on_result(i, res)
            progress.update(failed=res.get("status") != "ok")

        if settings.kind == "ray":
            from dsr.pipelines.ray_executor import run_ray

            run_ray(fn, list(jobs), settings, counted)
        else:
            _run_local(fn, list(jobs), settings, counted)


def _dsr_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("DSR_")}


def _apply_env(env: dict[str, str]) -> None:
    """Make this worker's ``DSR_*`` variables those of the driver (workers are reused between calls)."""
    for k in [k for k in os.environ if k.startswith("DSR_") and k not in env]:
        del os.environ[k]
    os.environ.update(env)


# ---------------------------------------------------------------------------------------------- local

_SLOT_DEVICE = "cpu"


def _init_local(counter, devices: list[str], threads: int) -> None:
    """Pool initializer: take the next worker slot and pin this process to its device."""
    global _SLOT_DEVICE
    with counter.get_lock():
        slot = counter.value
        counter.value += 1
    _SLOT_DEVICE = devices[slot % len(devices)]
    _pin(_SLOT_DEVICE, threads)


def _pin(device: str, threads: int) -> None:
    """Make ``device`` this process's current CUDA device (where it is one) and set its threads."""
    import torch

    limit_threads(threads)
    if device.startswith("cuda:") and torch.cuda.is_available():
        torch.cuda.set_device(device)


def _call_local(fn: Task, job, env: dict[str, str]) -> dict:
    _apply_env(env)
    return fn(job, _SLOT_DEVICE)


def _call_pinned(fn: Task, job, device: str, threads: int, env: dict[str, str]) -> dict:
    _apply_env(env)
    _pin(device, threads)
    return fn(job, device)


def run_pinned(fn: Task, jobs: list, devices: list[str], on_result: OnResult, threads: int = 1) -> None:
    """Run ``fn(jobs[i], devices[i])``: the first job in this process, every other one in a worker process
    of its own, started first so that its start-up (imports, CUDA) overlaps the first job; ``on_result(i,
    result)`` as they finish. A dead worker raises :class:`DsrError` after every other job has reported."""
    limit_threads(threads)
    if len(jobs) == 1:
        on_result(0, fn(jobs[0], devices[0]))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    pools = [ProcessPoolExecutor(max_workers=1, mp_context=ctx) for _ in jobs[1:]]
    died = 0
    try:
        futures = {pool.submit(_call_pinned, fn, job, dev, threads, _dsr_env()): i
                   for i, (pool, job, dev) in enumerate(zip(pools, jobs[1:], devices[1:]), start=1)}
        on_result(0, fn(jobs[0], devices[0]))
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except BrokenProcessPool:
                died += 1
                res = {"status": "failed", "reason": "not finished: a worker process died"}
            on_result(futures[fut], res)
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
    if died:
        raise DsrError(f"{died} worker process(es) died (out of memory?); finished fits are kept, rerun to do "
                       "the rest")


def _run_local(fn: Task, jobs: list, settings: ExecutorSettings, on_result: OnResult) -> None:
    devices = slot_devices(settings, len(jobs))
    if len(devices) == 1:
        limit_threads(settings.threads)
        for i, job in enumerate(jobs):
            on_result(i, fn(job, devices[0]))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    threads = settings.threads
    log.info("local executor: %d worker process(es) on %s", len(devices), ", ".join(sorted(set(devices))))
    done: set[int] = set()
    try:
        with ProcessPoolExecutor(max_workers=len(devices), mp_context=ctx, initializer=_init_local,
                                 initargs=(counter, devices, threads)) as pool:
            futures = {pool.submit(_call_local, fn, job, _dsr_env()): i for i, job in enumerate(jobs)}
            for fut in as_completed(futures):
                i = futures[fut]
                res = fut.result()
                done.add(i)
                on_result(i, res)
    except BrokenProcessPool:
        for i in range(len(jobs)):
            if i not in done:
                on_result(i, {"status": "failed", "reason": "not finished: a worker process died"})
        raise DsrError("a worker process died (out of memory?); finished runs are kept, rerun (with fewer "
                       "--nprocs) to do the rest") from None


def preflight(settings: ExecutorSettings) -> None:
    """Check, before anything is written, that the executor can start: the local device exists (CUDA, that
    GPU), or Ray is importable and its address answers (a Ray cluster's GPUs are checked when it is reached)."""
    if settings.kind != "ray":
        from dsr.pipelines.fit_array import resolve_device

        resolve_device(settings.device)
        return
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise DsrError("--executor ray needs Ray: pip install 'dsr[ray]'")
    if settings.ray_address:
        from dsr.pipelines.ray_executor import check_reachable

        check_reachable(settings.ray_address)

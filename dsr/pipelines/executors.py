"""Executors: run many independent fits locally (processes, GPUs) or on a Ray cluster.

An executor takes a picklable module-level task ``fn(job, device) -> dict`` and a list of jobs, and calls
``on_result(index, result)`` in the driver as results arrive (in completion order). The task never raises
for a failing fit (it returns a ``{"status": "failed", ...}`` dict); a worker process that dies is reported
as a failed result by the Ray executor (after ``max_retries``) and as a :class:`DsrError` by the local one.

Devices
-------
``device="cpu"``: ``n_jobs`` CPU processes. ``"cuda"``/``"auto"`` with ``G`` visible GPUs: ``G × fits_per_gpu``
worker processes, each pinned to one GPU, round robin (``cuda:0, cuda:1, …, cuda:0, …``), so small fits are
packed several per GPU. ``"cuda:K"``: every fit on that GPU. On Ray each task asks for ``1/fits_per_gpu``
of a GPU (0 on a CPU-only cluster) and one CPU; Ray sets ``CUDA_VISIBLE_DEVICES`` so the task uses ``cuda``.

Environment variables named ``DSR_*`` in the driver are passed to every task (a Ray worker is started by the
cluster, not by the driver, and would not see them otherwise).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dsr.errors import DsrError

log = logging.getLogger("dsr")
EXECUTORS = ("local", "ray")
Task = Callable[[Any, str], dict]
OnResult = Callable[[int, dict], None]


@dataclass(frozen=True)
class ExecutorSettings:
    """Where and how the fits run.

    Parameters
    ----------
    kind : {"local", "ray"}
    device : str
        ``cpu``, ``cuda``, ``cuda:K`` or ``auto`` (CUDA when present).
    n_jobs : int
        Local CPU worker processes (1: in the driver process).
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
    n_jobs: int = 1
    fits_per_gpu: int = 1
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    max_retries: int = 2
    n_gpus: int | None = None

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise DsrError(f"unknown executor '{self.kind}' (use {' or '.join(EXECUTORS)})")
        if self.n_jobs < 1 or self.fits_per_gpu < 1 or self.max_retries < 0:
            raise DsrError("--n-jobs and --fits-per-gpu must be >= 1, --max-retries >= 0")


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
        slots = ["cpu"] * settings.n_jobs
    else:
        slots = [settings.device] * settings.n_jobs
    return slots[:max(1, n_tasks)]


def probe(job, device: str) -> dict:
    """A task that fits nothing: reports the device and process it ran in (checks the spread over GPUs)."""
    return {"status": "ok", "job": job, "device": device, "pid": os.getpid()}


def run_tasks(fn: Task, jobs: Sequence, settings: ExecutorSettings, on_result: OnResult) -> None:
    """Run ``fn(job, device)`` for every job with the chosen executor; ``on_result(i, result)`` per job."""
    if not jobs:
        return
    runner = _run_ray if settings.kind == "ray" else _run_local
    runner(fn, list(jobs), settings, _Progress(len(jobs), on_result))


class _Progress:
    """Counts results and logs a progress line every few of them."""

    def __init__(self, total: int, on_result: OnResult):
        self.total, self.done, self.on_result, self.t0 = total, 0, on_result, time.perf_counter()
        self.every = max(1, total // 20)

    def __call__(self, i: int, res: dict) -> None:
        self.done += 1
        self.on_result(i, res)
        if self.total > 1 and (self.done % self.every == 0 or self.done == self.total):
            log.info("progress: %d/%d fits done (%.0f s)", self.done, self.total, time.perf_counter() - self.t0)


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
    import torch

    global _SLOT_DEVICE
    with counter.get_lock():
        slot = counter.value
        counter.value += 1
    _SLOT_DEVICE = devices[slot % len(devices)]
    torch.set_num_threads(threads)


def _call_local(fn: Task, job, env: dict[str, str]) -> dict:
    _apply_env(env)
    return fn(job, _SLOT_DEVICE)


def _run_local(fn: Task, jobs: list, settings: ExecutorSettings, on_result: OnResult) -> None:
    devices = slot_devices(settings, len(jobs))
    if len(devices) == 1:
        for i, job in enumerate(jobs):
            on_result(i, fn(job, devices[0]))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    threads = max(1, (os.cpu_count() or 1) // len(devices))
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
                       "--n-jobs) to do the rest") from None


# ------------------------------------------------------------------------------------------------ ray

def _ray_task(fn: Task, job, env: dict[str, str], use_gpu: bool) -> dict:
    """One fit in a Ray worker: single-threaded torch, the GPU Ray assigned (if any)."""
    import ray
    import torch

    torch.set_num_threads(1)
    _apply_env(env)
    if isinstance(job, tuple):  # shared parts of the jobs were put in the object store once
        job = tuple(ray.get(x) if isinstance(x, ray.ObjectRef) else x for x in job)
    return fn(job, "cuda" if use_gpu else "cpu")


def _share(ray, jobs: list) -> list:
    """Put objects that several tuple jobs hold (atlas, settings, …) in the object store once."""
    if not all(isinstance(j, tuple) for j in jobs) or len(jobs) < 2:
        return jobs
    seen: dict[int, int] = {}
    for job in jobs:
        for x in job:
            if not isinstance(x, (str, int, float, type(None))):
                seen[id(x)] = seen.get(id(x), 0) + 1
    refs = {}
    for job in jobs:
        for x in job:
            if seen.get(id(x), 0) > 1 and id(x) not in refs:
                refs[id(x)] = ray.put(x)
    return [tuple(refs.get(id(x), x) for x in job) for job in jobs]


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast (one line) when ``HOST:PORT`` / ``ray://HOST:PORT`` does not answer; Ray itself would retry
    for minutes."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local" or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise DsrError(f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                       "with 'ray start --head' or leave --ray-address out for a local cluster") from None


def preflight(settings: ExecutorSettings) -> None:
    """Check, before anything is written, that the executor can start: Ray importable, its address answering."""
    if settings.kind != "ray":
        return
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise DsrError("--executor ray needs Ray: pip install 'dsr[ray]'")
    if settings.ray_address:
        _check_reachable(settings.ray_address)


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` or start a local Ray cluster; returns whether this call started it."""
    try:
        import ray
    except ImportError:
        raise DsrError("--executor ray needs Ray: pip install 'dsr[ray]'") from None
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
        else:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DsrError(f"could not connect to the Ray cluster at {address or 'a new local cluster'}: "
                       f"{' '.join(str(exc).split())}") from None
    return True


def _run_ray(fn: Task, jobs: list, settings: ExecutorSettings, on_result: OnResult) -> None:
    import ray

    started = init_ray(settings.ray_address, settings.ray_num_cpus)
    try:
        n_gpus = int(ray.cluster_resources().get("GPU", 0)) if settings.n_gpus is None else settings.n_gpus
        use_gpu = uses_gpus(settings.device) and n_gpus > 0
        if settings.device.startswith("cuda") and not use_gpu:
            raise DsrError(f"--device {settings.device}: the Ray cluster has no GPU (use --device cpu or auto)")
        task = ray.remote(_ray_task).options(num_cpus=1, num_gpus=1.0 / settings.fits_per_gpu if use_gpu else 0,
                                             max_retries=settings.max_retries, retry_exceptions=False)
        log.info("ray executor: %d fit(s) on a cluster of %s CPU(s), %d GPU(s)%s", len(jobs),
                 int(ray.cluster_resources().get("CPU", 0)), n_gpus,
                 f", {settings.fits_per_gpu} fit(s) per GPU" if use_gpu else "")
        env = _dsr_env()
        refs = {task.remote(fn, job, env, use_gpu): i for i, job in enumerate(_share(ray, jobs))}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died max_retries + 1 times
                    res = {"status": "failed", "reason": f"the worker process died ({type(exc).__name__}, "
                                                         f"{settings.max_retries} retries); rerun to finish it"}
                on_result(refs[ref], res)
    finally:
        if started:
            ray.shutdown()

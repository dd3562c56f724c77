"""The Ray executor: every fit a Ray task with one CPU and ``1/fits_per_gpu`` of a GPU.

Ray places the tasks; with fractional GPUs it fills every GPU of the cluster (``CUDA_VISIBLE_DEVICES`` is
set per task, so the task's device is ``cuda``). Workers are started by the cluster, so the driver's
``DSR_*`` environment variables are passed with every task.
"""
from __future__ import annotations

import dataclasses
import logging

from dsr.errors import DsrError
from dsr.log import user_log
from dsr.pipelines.executors import (ExecutorSettings, OnResult, Task, _apply_env, _dsr_env, limit_threads,
                                     uses_gpus)

log = user_log()


def _ray_task(fn: Task, job, env: dict[str, str], use_gpu: bool, threads: int = 1) -> dict:
    """One fit in a Ray worker: ``threads`` compute threads (the CPUs the task asked for), the GPU Ray
    assigned (if any)."""
    import ray

    limit_threads(threads)
    _apply_env(env)
    if dataclasses.is_dataclass(job):  # shared parts of the jobs were put in the object store once
        job = dataclasses.replace(job, **{f.name: ray.get(getattr(job, f.name)) for f in dataclasses.fields(job)
                                          if isinstance(getattr(job, f.name), ray.ObjectRef)})
    return fn(job, "cuda" if use_gpu else "cpu")


def _share(ray, jobs: list) -> list:
    """Put objects that several dataclass jobs hold (atlas, settings, …) in the object store once."""
    if len(jobs) < 2 or not all(dataclasses.is_dataclass(j) for j in jobs):
        return jobs
    names = [f.name for f in dataclasses.fields(jobs[0])]
    seen: dict[int, int] = {}
    for job in jobs:
        for name in names:
            x = getattr(job, name)
            if not isinstance(x, (str, int, float, type(None))):
                seen[id(x)] = seen.get(id(x), 0) + 1
    refs: dict[int, object] = {}
    out = []
    for job in jobs:
        shared = {}
        for name in names:
            x = getattr(job, name)
            if seen.get(id(x), 0) > 1:
                if id(x) not in refs:
                    refs[id(x)] = ray.put(x)
                shared[name] = refs[id(x)]
        out.append(dataclasses.replace(job, **shared))
    return out


def check_reachable(address: str, timeout: float = 10.0) -> None:
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


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` or start a local Ray cluster; returns whether this call started it."""
    try:
        import ray
    except ImportError:
        raise DsrError("--executor ray needs Ray: pip install 'dsr[ray]'") from None
    if ray.is_initialized():
        return False
    if address:
        check_reachable(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
        else:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DsrError(f"could not connect to the Ray cluster at {address or 'a new local cluster'}: "
                       f"{' '.join(str(exc).split())}") from None
    return True


def run_ray(fn: Task, jobs: list, settings: ExecutorSettings, on_result: OnResult) -> None:
    import ray

    started = init_ray(settings.ray_address, settings.ray_num_cpus)
    try:
        n_gpus = int(ray.cluster_resources().get("GPU", 0)) if settings.n_gpus is None else settings.n_gpus
        use_gpu = uses_gpus(settings.device) and n_gpus > 0
        if settings.device.startswith("cuda") and not use_gpu:
            raise DsrError(f"--device {settings.device}: the Ray cluster has no GPU (use --device cpu or auto)")
        gpus = 1.0 / settings.fits_per_gpu if use_gpu else 0
        task = ray.remote(_ray_task).options(num_cpus=settings.threads, num_gpus=gpus,
                                             max_retries=settings.max_retries, retry_exceptions=False)
        log.info("ray executor: %d fit(s) on a cluster of %s CPU(s), %d GPU(s)%s", len(jobs),
                 int(ray.cluster_resources().get("CPU", 0)), n_gpus,
                 f", {settings.fits_per_gpu} fit(s) per GPU" if use_gpu else "")
        env = _dsr_env()
        refs = {task.remote(fn, job, env, use_gpu, settings.threads): i for i, job in enumerate(_share(ray, jobs))}
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

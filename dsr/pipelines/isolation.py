"""One fit per child process, so that a fit that kills its process fails alone and is named.

A subject whose data or config drives memory past the machine's limit is killed by the kernel (SIGKILL),
and so is any process it runs in: in the batch's own process the whole batch dies at that subject on every
rerun, and in a process pool every unfinished fit is lost. :func:`run_isolated` runs one task in a forked
child process and turns the child's death into a ``failed`` result that says how it died. The modules a
fit needs are imported once in the parent, so a child starts in milliseconds.

CUDA fits run in the calling process: CUDA cannot be forked once initialised, a spawned child would pay
seconds of imports and CUDA start-up per fit, and a GPU that runs out of memory raises an error (the fit
fails alone) rather than having the kernel kill the process. Inside Ray tasks nothing is isolated either:
Ray restarts a dead worker and retries its task itself.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import signal
import sys
from typing import Any, Callable

#: Modules a participant-level fit imports (extraction and fitting), imported before the first fork.
WARM_MODULES = ("dsr.pipelines.fit_array", "dsr.report.figures", "nilearn.maskers", "nilearn.signal")
#: ``DSR_ISOLATE=0`` runs tasks in the calling process (debugging with breakpoints).
ENV_SWITCH = "DSR_ISOLATE"


def _child(conn, fn: Callable, job: Any, device: str | None) -> None:
    try:
        result = fn(job, device)
    except BaseException as exc:  # the task never raises by contract; still report what happened
        result = {"status": "failed", "reason": f"internal error: {type(exc).__name__}: {exc}"}
    conn.send(result)
    conn.close()


def death_reason(exitcode: int | None) -> str:
    """How a child process ended, in words (``killed by SIGKILL, out of memory?``)."""
    if exitcode is None:
        return "did not end"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = ", out of memory?" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    hint = ", out of memory?" if exitcode == 137 else ""
    return f"exit code {exitcode}{hint}"


def _in_ray_worker() -> bool:
    """True inside a Ray task: Ray runs each task in a worker process it restarts and retries itself."""
    ray = sys.modules.get("ray")
    try:
        if ray is None or not ray.is_initialized():
            return False
        from ray._private.worker import WORKER_MODE

        return ray.get_runtime_context().worker.mode == WORKER_MODE
    except Exception:  # another Ray version: isolate anyway
        return False


def run_isolated(fn: Callable, job: Any, device: str | None = None,
                 warm: tuple[str, ...] = WARM_MODULES) -> dict:
    """``fn(job, device)`` in a child process; its result, or a ``failed`` result when the child dies.

    Parameters
    ----------
    fn : callable
        A module-level task that returns a result dict and never raises (``fitrun.run_job``).
    job : any
        Its argument.
    device : str or None
        Passed on; a CUDA device runs the task in this process (see the module docstring).
    warm : tuple of str
        Modules to import before forking.

    Returns
    -------
    dict
        The task's result, or ``{"status": "failed", "reason": "the worker process died (...)"}``.
    """
    if (os.environ.get(ENV_SWITCH, "1") == "0" or _in_ray_worker() or str(device or "").startswith("cuda")
            or "fork" not in mp.get_all_start_methods()):
        return fn(job, device)
    for module in warm:  # imported once here, shared by every forked child
        try:
            importlib.import_module(module)
        except ImportError:  # an optional dependency (nilearn) missing: the task will say so itself
            pass
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, job, device), daemon=False)
    proc.start()
    send.close()
    try:
        try:
            result = recv.recv()
        except EOFError:  # the child died before sending anything
            result = None
        proc.join()
    finally:
        if proc.is_alive():  # interrupted while waiting (Ctrl-C): do not leave the fit running
            proc.terminate()
            proc.join()
        recv.close()
    if result is None:
        return {"status": "failed", "reason": f"the worker process died ({death_reason(proc.exitcode)}) during "
                                              "this fit; the other fits go on"}
    return result

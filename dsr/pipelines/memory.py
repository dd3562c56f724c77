"""``--mem``: how many fits (or group analyses) may run at once in a memory budget, by an estimate.

The estimate of one participant-level fit, in bytes, is the sum of

- a worker process with dsr's imports (torch, nilearn, matplotlib): :data:`PROCESS_BYTES` (a process that
  fitted the ``quick`` preset to the example dataset peaked at 380 MB resident);
- its BOLD image read in double precision for the extraction: voxels x volumes x 8 (read from the NIfTI
  header only);
- training activations: batch_size x (sequence_length + 1) x (latent + hidden units) x
  :data:`BYTES_PER_ACTIVATION` (float32 values, gradients and the GTF mixing of the backward pass);
- evaluation: n_rollouts x samples x (latent + hidden + regions) x 8 x 4 (rollouts, their copies and the
  statistics of the metrics).

The local executor runs ``min(--nprocs, budget // (largest fit))`` workers beside the driver process; a
stack holds every fit's training and evaluation in its worker at once. A plan whose single largest fit (or
whole stack) cannot fit the budget is refused with one line before anything is fitted. This is an estimate,
not a limit the operating system enforces: leave headroom.
"""
from __future__ import annotations

import dataclasses
import math

from dsr.config import DsrConfig
from dsr.errors import ConfigError
from dsr.log import user_log
from dsr.pipelines.executors import ExecutorSettings, gpu_count, uses_gpus

log = user_log()
GB = 1e9
PROCESS_BYTES = 450e6
BYTES_PER_ACTIVATION = 40
#: A group-level worker: a process with dsr's imports and one participant's orbits and spectra.
GROUP_WORKER_BYTES = 600e6


def _image_shape(path) -> tuple[int, ...] | None:
    """A NIfTI file's shape from its header (None when it cannot be read: the fit will fail naming it)."""
    try:
        import nibabel as nib

        return tuple(int(k) for k in nib.load(str(path)).shape)
    except Exception:
        return None


def model_bytes(cfg: DsrConfig, n_samples: int, n_channels: int) -> float:
    """Training and evaluation memory of one fit (no process, no image)."""
    m = cfg.model
    units = max(m.latent_dim, n_channels) + m.hidden_dim
    train = cfg.train.batch_size * (cfg.train.sequence_length + 1) * units * BYTES_PER_ACTIVATION
    evaluation = cfg.eval.n_rollouts * n_samples * (units + n_channels) * 8 * 4
    return float(train + evaluation)


def job_bytes(job) -> tuple[float, float]:
    """``(image bytes, model bytes)`` of one :class:`~dsr.pipelines.plan.FitJob`."""
    shape = _image_shape(job.run.bold) or (1, 1, 1, 1)
    n_samples = shape[3] if len(shape) > 3 else 1
    return math.prod(shape) * 8.0, model_bytes(job.config, n_samples, max(1, len(job.atlas.names)))


def fit_memory(jobs: list, ex: ExecutorSettings, mem_gb: float | None) -> ExecutorSettings:
    """``ex`` with its parallel workers capped to what ``mem_gb`` holds (local and stack executors);
    ConfigError, one line, when even one worker does not fit."""
    if mem_gb is None or not jobs:
        return ex
    if ex.kind == "ray":
        raise ConfigError("--mem limits the workers of this machine (local and stack executors); on Ray, give "
                          "the cluster's nodes their memory (ray start --memory)")
    budget = mem_gb * GB - PROCESS_BYTES  # the driver process
    sizes = [job_bytes(j) for j in jobs]
    if ex.kind == "stack":
        need = PROCESS_BYTES + max(i for i, _ in sizes) + sum(m for _, m in sizes)
        if need > budget:
            raise ConfigError(f"--mem {mem_gb:g}: the stack of {len(jobs)} fit(s) needs about "
                              f"{(need + PROCESS_BYTES) / GB:.2f} GB; raise --mem, or fit fewer runs at once "
                              "(--participant-label) or without --stack")
        log.debug("--mem %g: the stack needs about %.2f GB", mem_gb, (need + PROCESS_BYTES) / GB)
        return ex
    per_fit = PROCESS_BYTES + max(i + m for i, m in sizes)
    if per_fit > budget:
        big = max(zip(sizes, jobs), key=lambda t: sum(t[0]))[1]
        raise ConfigError(f"--mem {mem_gb:g}: one fit needs about {(per_fit + PROCESS_BYTES) / GB:.2f} GB "
                          f"with dsr's own process ({big.run.bold.name}: image "
                          f"{max(i for i, _ in sizes) / GB:.2f} GB); raise --mem")
    cap = max(1, int(budget // per_fit))
    if uses_gpus(ex.device) and (ex.n_gpus if ex.n_gpus is not None else gpu_count()) > 0:
        n_gpus = ex.n_gpus if ex.n_gpus is not None else gpu_count()
        per_gpu = max(1, min(ex.fits_per_gpu, cap // n_gpus))
        if per_gpu < ex.fits_per_gpu:
            log.info("--mem %g: %d fit(s) per GPU instead of %d (about %.2f GB each)", mem_gb, per_gpu,
                     ex.fits_per_gpu, per_fit / GB)
        return dataclasses.replace(ex, fits_per_gpu=per_gpu)
    workers = min(ex.nprocs, cap)
    if workers < ex.nprocs:
        log.info("--mem %g: %d worker process(es) instead of %d (about %.2f GB per fit)", mem_gb, workers,
                 ex.nprocs, per_fit / GB)
    else:
        log.debug("--mem %g: %d worker process(es), about %.2f GB per fit", mem_gb, workers, per_fit / GB)
    return dataclasses.replace(ex, nprocs=workers)


def group_workers(nprocs: int, mem_gb: float | None) -> int:
    """Group-level worker processes that ``mem_gb`` holds beside the driver (ConfigError when not even one
    analysis fits)."""
    if mem_gb is None:
        return nprocs
    if mem_gb * GB < GROUP_WORKER_BYTES:
        raise ConfigError(f"--mem {mem_gb:g}: the group level needs about {GROUP_WORKER_BYTES / GB:.2f} GB; "
                          "raise --mem")
    workers = 1 if nprocs == 1 else max(1, min(nprocs, int((mem_gb * GB - PROCESS_BYTES) // GROUP_WORKER_BYTES)))
    if workers < nprocs:
        log.info("--mem %g: %d group worker process(es) instead of %d", mem_gb, workers, nprocs)
    return workers

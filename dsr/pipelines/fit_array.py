"""Fit, evaluate and write one recording given as an array (``dsr fit``; the per-run step of ``participant``).

Layering: this module orchestrates signal → training → analysis → report; the file names of a fit come
from :mod:`dsr.io.derivatives`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dsr import __version__
from dsr.analysis.checkpoint_score import selection_scorers
from dsr.analysis.evaluate import evaluate, initial_states
from dsr.config import DsrConfig, load_config
from dsr.errors import DsrError, InputError
from dsr.io.arrays import validate_companion, validate_series
from dsr.io.derivatives import fit_files
from dsr.io.feasibility import check_run_length, check_tr
from dsr.log import user_log
from dsr.models.convssm import ConvSSM, ConvSSMSpec
from dsr.signal.filters import make_filter
from dsr.timing import stage
from dsr.training.data import SubjectData, prepare_subject
from dsr.training.loop import TrainOutcome, train

log = user_log()


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:1' or 'auto' → torch.device; one clear error when CUDA or that GPU is missing."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DsrError(f"unknown device '{device}' (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DsrError(f"--device {device}: no CUDA device is available on this machine (use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DsrError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s) "
                       f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})")
    if dev.type not in ("cpu", "cuda"):
        raise DsrError(f"unknown device '{device}' (use cpu, cuda, cuda:N or auto)")
    return dev


def on_device(dev: torch.device):
    """A context in which ``dev`` is the current CUDA device (kernels, streams and CUDA graphs of a fit on
    ``cuda:1`` then go to that GPU); a no-op on the CPU."""
    return torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()


def build_filter(cfg: DsrConfig, tr: float) -> np.ndarray:
    """The decoder's filter taps for this config at this TR (validates TR)."""
    if not np.isfinite(tr) or tr <= 0:
        raise InputError(f"TR must be a positive number of seconds, got {tr}")
    f = cfg.filter
    check_tr(tr, f)  # before building: --tr 1e-9 would allocate a filter of 3e10 taps
    return make_filter(f.kind, tr, tau=f.tau, indicator=f.indicator)


@dataclass
class FitResult:
    """A fitted convSSM with its data preparation, training record and metrics (from :func:`dsr.fit`)."""

    model: ConvSSM
    data: SubjectData
    config: DsrConfig
    outcome: TrainOutcome
    metrics: dict
    x_gen: np.ndarray  # (T, N) generated observations, data units
    z_gen: np.ndarray  # (T+K-1, M) generated latents

    @property
    def status(self) -> str:
        return self.outcome.status[0]

    def generate(self, n: int, seed: int = 0) -> np.ndarray:
        """n generated observations (data units) from the first valid deconvolved state, (n, N)."""
        z0 = initial_states(self.model, self.data, 1, 0.0, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            Z = self.model.generate(z0, n + self.model.kernel_size - 1)
            X = self.model.observe(Z)[0, 0].cpu().double().numpy()  # (n, N)
        return X * self.data.std + self.data.mean


def resolve_config(cfg: DsrConfig, n_channels: int, has_nuisance: bool, announce: bool = False) -> DsrConfig:
    """The config a fit of ``n_channels`` channels (with or without nuisance regressors) really uses: the
    identity read-out gets ``latent_dim >= n_channels``, nuisance regressors switch to the regressor
    observation model. A fit's identity (:meth:`DsrConfig.hash`) is that of this resolved config."""
    if cfg.model.observation == "identity" and n_channels > cfg.model.latent_dim:
        cfg = cfg.replace(model={"latent_dim": n_channels})
        if announce:
            log.info("latent_dim raised to %d to read out all %d channels", n_channels, n_channels)
    if has_nuisance and cfg.model.observation != "regressor":
        cfg = cfg.replace(model={"observation": "regressor"})
        if announce:
            log.info("nuisance regressors given: using the regressor observation model")
    return cfg


def check_recording(x, tr, cfg: DsrConfig, nuisance=None, inputs=None, path=None):
    """Validate a recording for a fit with ``cfg`` (InputError naming ``path``): (x, nuisance, inputs, filter taps)."""
    h = build_filter(cfg, tr)
    x = validate_series(x, path, min_length=len(h) + 2)
    check_run_length(len(x), tr, cfg, path)  # long enough for training *and* evaluation, before training
    if nuisance is not None:
        nuisance = validate_companion(nuisance, len(x), None, "nuisance regressors")
    if inputs is not None:
        inputs = validate_companion(inputs, len(x), None, "external inputs")
    return x, nuisance, inputs, h


def prepare(x, tr, cfg: DsrConfig, nuisance=None, inputs=None, path=None, standardise: bool = True):
    """Validate a recording and turn it into :class:`SubjectData` plus its filter."""
    x, nuisance, inputs, h = check_recording(x, tr, cfg, nuisance, inputs, path)
    cfg = resolve_config(cfg, x.shape[1], nuisance is not None, announce=True)
    return prepare_subject(x, h, cfg, nuisance, inputs, standardise=standardise), h, cfg


def fit(x, tr: float, config: DsrConfig | None = None, *, seed: int | None = None, nuisance=None, inputs=None,
        latent_truth=None, device: str = "cpu", checkpoint_dir=None, resume: bool = False, progress=None,
        standardise: bool = True, path=None) -> FitResult:
    """Fit one convSSM to a (T, N) recording sampled every ``tr`` seconds and evaluate it.

    Parameters
    ----------
    x : array (T, N)
    tr : float
        Sampling interval in seconds.
    config : DsrConfig, optional
        Defaults to the ``paper`` preset.
    seed : int, optional
        Overrides ``config.seed``.
    nuisance, inputs : array (T, P), (T, Q), optional
        Nuisance regressors (switches to the regressor observation model) and external inputs.
    latent_truth : array (T', n), optional
        Ground-truth latents for latent-space metrics.
    path : str, optional
        The file ``x`` came from, named in error messages.
    """
    cfg = config if config is not None else load_config("paper")
    if seed is not None:
        cfg = cfg.replace(seed=seed)
    dev = resolve_device(device)
    with stage("deconvolution"):
        sd, h, cfg = prepare(x, tr, cfg, nuisance, inputs, path=path, standardise=standardise)
    spec = ConvSSMSpec(cfg.model.latent_model, cfg.model.latent_dim, cfg.model.hidden_dim, cfg.model.observation,
                       n_obs=sd.x.shape[1], n_regressors=0 if sd.r is None else sd.r.shape[1],
                       n_inputs=0 if sd.s is None else sd.s.shape[1], tr=float(tr),
                       meta=_model_meta(sd, cfg))
    with on_device(dev):
        with stage("training"):
            model = ConvSSM.initialise(spec, torch.as_tensor(h), [cfg.seed]).to(dev)
            scorer, rescorer = selection_scorers([sd], [cfg.seed], cfg.train, cfg.eval)
            outcome = train(model, [sd], cfg.train, [cfg.seed], checkpoint_dir=checkpoint_dir, resume=resume,
                            progress=progress, scorer=scorer, rescorer=rescorer)
        model.spec.meta["status"] = outcome.status[0]
        with stage("evaluation"):
            record, xg, zg = evaluate(model, [sd], cfg.eval, [cfg.seed], latent_truths=[latent_truth])[0]
    metrics = record.to_json()
    metrics.update(_fit_record(outcome.status[0], outcome.seconds, outcome.epochs_done, cfg, tr, sd, h, dev))
    metrics.update(_selection_record(outcome, 0))
    return FitResult(model, sd, cfg, outcome, metrics, xg * sd.std + sd.mean, zg)


def _model_meta(sd: SubjectData, cfg: DsrConfig) -> dict:
    """What a saved model carries besides its tensors: the data scaling and the config."""
    return {"mean": sd.mean.tolist(), "std": sd.std.tolist(), "config": cfg.to_dict(), "config_hash": cfg.hash(),
            "dsr_version": __version__}


def _selection_record(outcome: TrainOutcome, i: int) -> dict:
    """metrics.json entries of checkpoint selection for fit i (none when it was off): the epoch kept and its
    score, and the score trace (epoch, D_stsp of the training part) it was chosen from."""
    if outcome.selected_epoch is None:
        return {}
    trace = [(r["epoch"], r["select_score"]) for r in outcome.curve if r["fit"] == i and "select_score" in r]
    best = min((s for _, s in trace), default=float("inf"))
    out = {"selected_epoch": int(outcome.selected_epoch[i]), "select_score": best,
           "select_trace": [[int(e), float(s)] for e, s in trace]}
    if outcome.rescored is not None:  # train.select_rescore: the kept checkpoints, [epoch, score, rescore]
        out["select_rescored"] = outcome.rescored[i]
    return out


def _fit_record(status: str, seconds: float, epochs: int, cfg: DsrConfig, tr: float, sd: SubjectData, h,
                dev) -> dict:
    """The fit's own entries of metrics.json (status, timing, seed, data sizes)."""
    return {"status": status, "fit_seconds": seconds, "epochs": epochs, "seed": cfg.seed, "config_hash": cfg.hash(),
            "tr": float(tr), "n_samples": int(len(sd.x)), "n_train": int(sd.n_train),
            "n_channels": int(sd.x.shape[1]), "filter_taps": int(len(h)), "device": str(dev)}


def fit_many(xs: list, tr: float, configs: list[DsrConfig], *, device: str = "cpu", paths=None,
             progress=None, pool=None) -> list[FitResult]:
    """Fit several recordings at once: one stacked model (leading subject axis), one training run.

    Every fit equals what :func:`fit` gives for its recording and config alone (stacked fits are
    independent; to floating-point tolerance), but S small fits share each optimiser step, which is
    what fills a GPU. All recordings share the sampling interval and channel count, and the configs
    differ in nothing but the seed; no nuisance regressors or inputs (use :func:`fit` for those).

    ``pool`` (optional, a ``concurrent.futures`` executor) prepares the distinct recordings in parallel.

    Returns
    -------
    list of FitResult
        One per recording, in order; each with its own model (S = 1), status, curve and metrics.
    """
    base = configs[0].replace(seed=0).to_dict()
    if any(c.replace(seed=0).to_dict() != base for c in configs):
        raise DsrError("stacked fits must share their config apart from the seed")
    paths = paths or [None] * len(xs)
    with stage("deconvolution"):
        prepared = prepare_unique(xs, tr, configs, paths, pool)
    sds, h, cfgs = [p[0] for p in prepared], prepared[0][1], [p[2] for p in prepared]
    if len({sd.x.shape[1] for sd in sds}) != 1:
        raise DsrError("stacked fits must have the same number of channels")
    cfg, seeds = cfgs[0], [c.seed for c in cfgs]
    dev = resolve_device(device)
    spec = ConvSSMSpec(cfg.model.latent_model, cfg.model.latent_dim, cfg.model.hidden_dim, cfg.model.observation,
                       n_obs=sds[0].x.shape[1], tr=float(tr))
    with on_device(dev):
        with stage("training"):
            model = ConvSSM.initialise(spec, torch.as_tensor(h), seeds).to(dev)
            scorer, rescorer = selection_scorers(sds, seeds, cfg.train, cfg.eval)
            outcome = train(model, sds, cfg.train, seeds, progress=progress, scorer=scorer, rescorer=rescorer)
        with stage("evaluation"):
            evaluated = evaluate(model, sds, cfg.eval, seeds)  # all fits at once, on the training device
    results = []
    for i, (sd, c) in enumerate(zip(sds, cfgs)):
        one = model.subject(i)
        one.spec = dataclasses.replace(spec, meta=dict(_model_meta(sd, c), status=outcome.status[i],
                                                       stacked_with=len(sds)))
        out_i = TrainOutcome(status=[outcome.status[i]], seconds=outcome.seconds, epochs_done=outcome.epochs_done,
                             curve=[dict(r, fit=0) for r in outcome.curve if r["fit"] == i],
                             selected_epoch=None if outcome.selected_epoch is None else [outcome.selected_epoch[i]])
        record, xg, zg = evaluated[i]
        metrics = record.to_json()
        metrics.update(_fit_record(outcome.status[i], outcome.seconds / len(sds), outcome.epochs_done, c, tr, sd,
                                   h, dev), stacked_with=len(sds))
        metrics.update(_selection_record(outcome, i))
        results.append(FitResult(one, sd, c, out_i, metrics, xg * sd.std + sd.mean, zg))
    return results


def prepare_unique(xs: list, tr: float, configs: list[DsrConfig], paths: list, pool=None) -> list[tuple]:
    """:func:`prepare` of every recording, each distinct recording prepared (deconvolved) once: the seeds of
    one run share their data (the preparation does not depend on the seed; each fit keeps its own config).
    ``pool`` (a ``concurrent.futures`` executor) prepares the distinct recordings in parallel."""
    first: dict[tuple, int] = {}
    keys = []
    for x, c in zip(xs, configs):
        a = np.ascontiguousarray(x)
        keys.append((a.shape, str(a.dtype), hashlib.sha1(a.tobytes()).hexdigest(), c.replace(seed=0).hash()))
        first.setdefault(keys[-1], len(keys) - 1)
    args = [(np.asarray(xs[i]), tr, configs[i], None, None, paths[i]) for i in first.values()]
    done = dict(zip(first, pool.map(_prepare_args, args) if pool is not None and len(args) > 1
                    else map(_prepare_args, args)))
    return [(done[k][0], done[k][1], resolve_config(c, done[k][0].x.shape[1], False)) for k, c in zip(keys, configs)]


def _prepare_args(args: tuple):
    return prepare(*args)


def fit_to_dir(x, tr: float, out_dir, config: DsrConfig, *, prefix: str = "", nuisance=None, inputs=None,
               latent_truth=None, device: str = "cpu", resume: bool = False, source: str | None = None,
               progress=None, standardise: bool = True, checkpoint_dir=None) -> dict:
    """Fit one recording and write every output into ``out_dir``; returns the metrics dict.

    A checkpoint folder (``checkpoint_dir``, default ``out_dir/{prefix}_checkpoint``) is kept while training
    (for ``resume``) and removed once the outputs are written.
    """
    out_dir = Path(out_dir)
    ck = out_dir / fit_files(prefix)["checkpoint"] if checkpoint_dir is None else Path(checkpoint_dir)
    t0 = time.perf_counter()
    result = fit(x, tr, config, nuisance=nuisance, inputs=inputs, latent_truth=latent_truth, device=device,
                 checkpoint_dir=ck, resume=resume, progress=progress, path=source, standardise=standardise)
    result.metrics["total_seconds"] = time.perf_counter() - t0
    from dsr.pipelines.writer import write_outputs  # the writer module imports this one

    metrics = write_outputs(result, out_dir, prefix, source)
    shutil.rmtree(ck, ignore_errors=True)
    return metrics

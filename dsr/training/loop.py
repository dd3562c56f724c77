"""The GTF training loop for S independent fits at once.

Each fit has its own data, batches (own RNG), forcing α, learning-rate factor,
NaN guard and status; they share one optimiser step because every tensor has
a leading subject axis and the loss is the sum of the per-fit losses.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dsr.config import LOSS_STATES, TrainConfig
from dsr.errors import ConfigError
from dsr.models.convssm import ConvSSM
from dsr.ops import fused_step
from dsr.ops.conv import causal_conv
from dsr.ops.conv_loss import conv_mse
from dsr.ops.gtf import forcing_weights, gtf_rollout, gtf_rollout_weak
from dsr.training.checkpoint import load_checkpoint, save_checkpoint
from dsr.training.data import SubjectData, sample_batch, sequence_length
from dsr.training.device_batches import DeviceBatches
from dsr.training.forcing import estimate_alpha, update_alpha
from dsr.training.radam import SubjectRAdam, flat_leaves
from dsr.training.selection import BestKeeper, Scorer, scored_epoch, training_view
from dsr.training.step import StepRunner, StepState, guarded_update


@dataclass
class TrainOutcome:
    """What training leaves behind besides the fitted parameters."""

    status: list[str]  # "ok" or "diverged" per fit
    curve: list[dict] = field(default_factory=list)  # one row per epoch and fit
    seconds: float = 0.0
    epochs_done: int = 0
    selected_epoch: list[int] | None = None  # per fit, with train.select_every > 0: the epoch kept (0: no finite
    # score, the last epoch kept)
    last_params: dict[str, torch.Tensor] | None = None  # then also the last epoch's parameters (CPU)
    # with train.select_rescore: per fit, its kept checkpoints as [epoch, score, rescore] rows (empty slots left out)
    rescored: list[list[list[float]]] | None = None


def batch_loss(model: ConvSSM, batch, alpha: torch.Tensor, cfg: TrainConfig,
               forced: torch.Tensor | None = None, grad_mix: torch.Tensor | None = None) -> torch.Tensor:
    """Per-fit GTF loss (S,): MSE of the decoded states on steps with a full filter history.

    The decoded states are the un-forced z_t, or for fits with ``forced`` (S,) = 1 the forced states
    (1−α) z_t + α d_t (``train.loss_states = "forced"``; :func:`train` builds ``forced``); None: all free.
    ``grad_mix`` (S,) = 0 for such a fit takes the reference code's gradient instead of the exact one
    (``"reference"``, see :func:`dsr.ops.gtf.gtf_rollout_ref`); None: exact for every forced fit.
    """
    K = model.kernel_size
    d = model.targets(batch.d, batch.rd)  # (S, B, T̃+1, Mf)
    z0 = model.init_state(torch.nan_to_num(d[:, :, 0]))  # (S, B, M)
    if cfg.forcing in ("weak", "adaptive") and fused_step() and grad_mix is None:  # the kernel makes the forcing weights itself
        Z = gtf_rollout_weak(model.step, z0, d, alpha, model.spec.latent_dim, batch.s, model.spec.latent_model,
                             model.latent_params, forced=forced)  # (S, B, T̃, M)
    else:
        a, ad = forcing_weights(d, alpha, model.spec.latent_dim, cfg.forcing, cfg.forcing_interval)
        Z = gtf_rollout(model.step, z0, a, ad, batch.s, model.spec.latent_model, model.latent_params,
                        forced=forced, grad_mix=grad_mix)  # (S, B, T̃, M)
    if model.spec.observation == "identity" and batch.r is None and fused_step():
        return conv_mse(Z, model.filter, batch.x[:, :, K:])  # decoder + MSE, one kernel each way on CUDA
    r = None if batch.r is None else batch.r[:, :, K:]
    xhat = model.observe(Z, r, conv=causal_conv)  # (S, B, T̃-K+1, N)
    return (xhat - batch.x[:, :, K:]).pow(2).mean(dim=(1, 2, 3))


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Exponential decay from lr_start (epoch 0) to lr_end (last epoch)."""
    frac = epoch / max(cfg.epochs - 1, 1)
    return cfg.lr_start * (cfg.lr_end / cfg.lr_start) ** frac


def train(model: ConvSSM, subjects: list[SubjectData], cfg: TrainConfig, seeds: list[int],
          checkpoint_dir: str | Path | None = None, resume: bool = False,
          progress: Callable[[int, int, dict], None] | None = None,
          alphas: list[float] | None = None, loss_states: list[str] | None = None,
          scorer: Scorer | None = None, rescorer: Scorer | None = None) -> TrainOutcome:
    """Fit ``model`` (S = len(subjects)) in place by generalized teacher forcing.

    Parameters
    ----------
    model : ConvSSM
        S fits; its parameters are trained in place.
    subjects : list of SubjectData
        One per fit.
    cfg : TrainConfig
    seeds : list of int
        One seed per fit: it drives that fit's batches and noise.
    checkpoint_dir : path or None
        Where a checkpoint is written every ``cfg.checkpoint_every`` epochs.
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir`` when there is one.
    progress : callable or None
        Called as ``progress(epoch, epochs, info)`` after every epoch.
    alphas : list of float or None
        Per-fit forcing strength for weak forcing (default: ``cfg.alpha`` for every fit), so fits
        of a hyperparameter grid over α can share one stack.
    loss_states : list of str or None
        Per-fit ``"free"`` / ``"forced"`` / ``"reference"`` (default: ``cfg.loss_states`` for every
        fit), so the variants can share one stack.
    scorer : callable or None
        With ``cfg.select_every`` > 0: ``scorer(model)`` → (S,) scores of the current parameters, lower is
        better (e.g. :func:`dsr.analysis.checkpoint_score.dstsp_scorer`); each fit ends with the parameters
        of its best-scoring epoch (:mod:`dsr.training.selection`). Training itself is not changed by it.
    rescorer : callable or None
        With ``cfg.select_rescore`` ≥ 2: scores (S,) of the kept checkpoints when training ends (e.g.
        :func:`dsr.analysis.checkpoint_score.dstsp_scorer` with more rollouts and the observation noise); each fit ends
        with its lowest-rescored checkpoint instead.
    """
    S = model.n_subjects
    dev, dtype = model.filter.device, model.filter.dtype
    subjects = [training_view(sd, cfg.select_holdout) for sd in subjects]  # the same with no hold-out
    params = flat_leaves(model.params)  # views of one flat buffer: the fused optimiser updates them at once
    model.params = params
    opt = SubjectRAdam(params)
    seq_len = sequence_length(subjects, cfg.sequence_length, model.kernel_size)
    rngs = [np.random.default_rng(int(s)) for s in seeds]
    on_device = cfg.sampler == "device" or (cfg.sampler == "auto" and dev.type == "cuda")
    batches = DeviceBatches(subjects, seeds, seq_len, cfg.batch_size, cfg.noise, dev, dtype) if on_device else None
    alpha = torch.full((S,), cfg.alpha if cfg.forcing != "adaptive" else 0.0, dtype=dtype, device=dev)
    if alphas is not None:
        if len(alphas) != S or cfg.forcing != "weak" or not all(0.0 <= a <= 1.0 for a in alphas):
            raise ConfigError(f"per-fit alphas need weak forcing and {S} values in [0, 1]")
        alpha = torch.tensor([float(a) for a in alphas], dtype=dtype, device=dev)  # (S,)
    states = [cfg.loss_states] * S if loss_states is None else list(loss_states)
    if len(states) != S or any(x not in LOSS_STATES for x in states):
        raise ConfigError(f"per-fit loss_states need {S} values, each one of {LOSS_STATES}")
    forced = None if all(x == "free" for x in states) else \
        torch.tensor([float(x != "free") for x in states], dtype=dtype, device=dev)  # (S,)
    grad_mix = None if "reference" not in states else \
        torch.tensor([float(x == "forced") for x in states], dtype=dtype, device=dev)  # (S,)
    st = StepState.create(params, opt, alpha)  # the NaN guard's state lives on the device
    if cfg.select_every > 0 and scorer is None:
        raise ConfigError("train.select_every > 0 needs a checkpoint scorer (dsr.analysis.checkpoint_score)")
    if cfg.select_every > 0 and cfg.select_rescore > 0 and rescorer is None:
        raise ConfigError("train.select_rescore needs a rescorer (dsr.analysis.checkpoint_score.dstsp_scorer)")
    keeper = BestKeeper(params, opt.flat_p, max(1, cfg.select_rescore)) if cfg.select_every > 0 else None
    curve: list[dict] = []
    start_epoch, elapsed = 0, 0.0

    identity = {"train": dataclasses.asdict(cfg), "seeds": [int(x) for x in seeds],
                "alphas": None if alphas is None else [float(a) for a in alphas],
                "loss_states": None if loss_states is None else states, "shapes":
                {k: list(v.shape) for k, v in params.items()}}
    if resume and checkpoint_dir is not None and (ck := load_checkpoint(checkpoint_dir)) is not None:
        tensors, state = ck
        if state.get("identity") != identity:
            raise ConfigError(f"{checkpoint_dir}: the checkpoint was written by a run with another config, seed "
                              "or data shape; remove it or run without --resume")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(tensors[f"param.{k}"])
            for k, v in opt.state.items():
                v.copy_(tensors[f"opt.{k}"])
            st.alpha.copy_(tensors["alpha"])
            st.lr_factor.copy_(tensors["lr_factor"])
            st.retries.copy_(torch.tensor(state["retries"]))
            st.active.copy_(torch.tensor([s == "ok" for s in state["status"]]))
        for rng, rs in zip(rngs, state["rng"]):
            rng.bit_generator.state = rs
        curve = state["curve"]
        if keeper is not None:
            keeper.load(tensors)
        start_epoch, elapsed = state["epoch"] + 1, state["seconds"]
        st.keep_good(params, opt)

    def step(batch=None):
        batch = batches.draw() if batch is None else batch
        loss_s = batch_loss(model, batch, st.alpha, cfg, forced, grad_mix)  # (S,)
        guarded_update(loss_s, _regularisation(model, cfg), params, opt, st, cfg)

    graphable = batches is not None and dev.type == "cuda" and cfg.forcing != "adaptive" and cfg.cuda_graph
    runner = StepRunner(step, graph=graphable, device=dev)
    status = ["ok" if ok else "diverged" for ok in st.active.tolist()]
    t0 = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        lr_epoch = learning_rate(cfg, epoch)
        st.start_epoch(lr_epoch)
        for b in range(cfg.batches_per_epoch):
            if batches is None:
                batch = sample_batch(subjects, rngs, seq_len, cfg.batch_size, cfg.noise, dev, dtype)
            else:
                batches.stage(epoch * cfg.batches_per_epoch + b)
                batch = None
            if cfg.forcing == "adaptive" and b % cfg.adaptive_every == 0:
                batch = batches.draw() if batch is None else batch
                with torch.no_grad():
                    est = estimate_alpha(model, model.targets(batch.d, batch.rd))
                    st.alpha.copy_(update_alpha(st.alpha, est, cfg.adaptive_decay))
            if batch is None:
                runner()
            else:
                step(batch)
        # one host round trip per epoch: the curve rows and the status
        host = torch.stack([st.losses / st.n_ok.clamp_min(1), st.alpha.double(), st.lr_factor,
                            st.active.double()]).cpu()
        mean_loss, alpha_h, lrf_h = host[0].tolist(), host[1].tolist(), host[2].tolist()
        status = ["ok" if a else "diverged" for a in host[3].tolist()]
        for i in range(S):
            curve.append({"epoch": epoch + 1, "fit": i, "loss": mean_loss[i], "alpha": alpha_h[i],
                          "lr": float(lr_epoch * lrf_h[i]), "status": status[i]})
        st.keep_good(params, opt)
        if keeper is not None and scored_epoch(epoch + 1, cfg.select_every, cfg.epochs):
            scores = np.asarray(scorer(model), dtype=np.float64)  # (S,) outside any captured graph
            keeper.update(scores, epoch + 1)
            for row, sc in zip(curve[-S:], scores.tolist()):
                row["select_score"] = sc
        seconds = elapsed + time.perf_counter() - t0
        if progress is not None:
            progress(epoch + 1, cfg.epochs, {"loss": float(np.nanmean(mean_loss)), "seconds": seconds})
        last = epoch + 1 == cfg.epochs
        if checkpoint_dir is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or last):
            tensors = {f"param.{k}": v for k, v in params.items()}
            tensors.update({f"opt.{k}": v for k, v in opt.state.items()})
            tensors.update({"alpha": st.alpha, "lr_factor": st.lr_factor})
            if keeper is not None:
                tensors.update(keeper.tensors())
            state = {"identity": identity, "epoch": epoch, "seconds": seconds, "retries": st.retries.tolist(),
                     "status": status, "curve": curve, "rng": [rng.bit_generator.state for rng in rngs]}
            save_checkpoint(checkpoint_dir, tensors, state)
        if all(s != "ok" for s in status):
            break
    selected, last, rescored = None, None, None
    if keeper is not None:
        last = {k: v.detach().cpu().clone() for k, v in params.items()}
        if keeper.k > 1:
            again = keeper.rescore(rescorer, model)  # (S, k)
            rescored = [[[int(e), float(sc), float(r)] for e, sc, r in zip(keeper.epochs[i], keeper.scores[i], again[i])
                         if e > 0] for i in range(S)]
        keeper.restore()
        selected = [int(e) for e in keeper.epoch]
    model.params = {k: v.detach() for k, v in params.items()}
    done = curve[-1]["epoch"] if curve else 0
    return TrainOutcome(status=status, curve=curve, seconds=elapsed + time.perf_counter() - t0, epochs_done=done,
                        selected_epoch=selected, last_params=last, rescored=rescored)


def _regularisation(model: ConvSSM, cfg: TrainConfig) -> torch.Tensor | float:
    if cfg.latent_reg == 0 and cfg.obs_reg == 0:
        return 0.0
    lat, obs = model.regularisation()
    return cfg.latent_reg * lat + cfg.obs_reg * obs


def log_progress(stream=None, every: int = 10):
    """A progress callback: a tqdm bar on a terminal, a log line every ``every`` epochs otherwise."""
    stream = sys.stderr if stream is None else stream
    if stream.isatty():
        from tqdm import tqdm

        bar = {}

        def on_epoch(epoch, total, info):
            if "bar" not in bar:
                bar["bar"] = tqdm(total=total, initial=epoch - 1, unit="epoch", file=stream)
            bar["bar"].update(1)
            bar["bar"].set_postfix(loss=f"{info['loss']:.4g}")
            if epoch == total:
                bar["bar"].close()

        return on_epoch

    def on_epoch(epoch, total, info):
        if epoch % every == 0 or epoch == total or epoch == 1:
            print(f"epoch {epoch}/{total} loss {info['loss']:.5g} ({info['seconds']:.1f} s)", file=stream,
                  flush=True)

    return on_epoch

"""One GTF training step for S stacked fits, with its NaN guard, written so it can be a CUDA graph.

Everything a step reads or writes between steps lives in device tensors that are updated in place
(:class:`StepState`, the optimiser state, the parameters, the staged batch indices), and the step
never waits for the host. So on a GPU the whole step -- batch drawing, forced rollout (fused
kernel), decoder, loss, backward, RAdam, NaN guard -- can be captured once as a CUDA graph and
replayed: one launch per step instead of a few hundred (:class:`StepRunner`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from dsr.config import TrainConfig
from dsr.ops import fused_step
from dsr.ops.radam import guarded_radam
from dsr.training.radam import SubjectRAdam, views_like

log = logging.getLogger(__name__)


@dataclass
class StepState:
    """Per-fit guard and bookkeeping tensors (all (S,), on the training device, updated in place)."""

    alpha: torch.Tensor  # forcing strength
    lr_epoch: torch.Tensor  # (1,) float64: this epoch's scheduled learning rate
    lr_factor: torch.Tensor  # float64: halved at every NaN roll-back
    retries: torch.Tensor  # int64: roll-backs so far
    active: torch.Tensor  # bool: still "ok"
    losses: torch.Tensor  # float64: sum of this epoch's losses
    n_ok: torch.Tensor  # float64: steps that counted this epoch
    good: dict[str, torch.Tensor]  # parameters at the end of the last good epoch
    good_opt: dict[str, torch.Tensor]  # optimiser state then
    good_flat: dict[str, torch.Tensor] | None = None  # "p", "m", "v": flat buffers behind good / good_opt

    @classmethod
    def create(cls, params: dict[str, torch.Tensor], opt: SubjectRAdam, alpha: torch.Tensor) -> "StepState":
        S, dev = alpha.shape[0], alpha.device
        f64 = dict(dtype=torch.float64, device=dev)
        if opt.fused:  # the roll-back copies in the optimiser's flat layout, for the fused update
            flat = {"p": opt.flat_p.clone(), "m": opt.flat_m.clone(), "v": opt.flat_v.clone()}
            good = views_like(flat["p"], params)
            good_opt = {"step": opt.state["step"].clone()}
            for name in ("m", "v"):
                good_opt.update({f"{name}.{k}": t for k, t in views_like(flat[name], params).items()})
        else:
            flat, good = None, {k: v.detach().clone() for k, v in params.items()}
            good_opt = {k: v.clone() for k, v in opt.state.items()}
        return cls(alpha=alpha.clone(), lr_epoch=torch.zeros(1, **f64), lr_factor=torch.ones(S, **f64),
                   retries=torch.zeros(S, dtype=torch.int64, device=dev),
                   active=torch.ones(S, dtype=torch.bool, device=dev), losses=torch.zeros(S, **f64),
                   n_ok=torch.zeros(S, **f64), good=good, good_opt=good_opt, good_flat=flat)

    def start_epoch(self, lr: float) -> None:
        self.lr_epoch.fill_(lr)
        self.losses.zero_()
        self.n_ok.zero_()

    def keep_good(self, params: dict[str, torch.Tensor], opt: SubjectRAdam) -> None:
        """Remember the current parameters and optimiser state as the roll-back point."""
        with torch.no_grad():
            if self.good_flat is not None and opt.fused:
                for name, src in (("p", opt.flat_p), ("m", opt.flat_m), ("v", opt.flat_v)):
                    self.good_flat[name].copy_(src)
                self.good_opt["step"].copy_(opt.state["step"])
                return
            for k, v in params.items():
                self.good[k].copy_(v)
            for k, v in opt.state.items():
                self.good_opt[k].copy_(v)


def guarded_update(loss_s: torch.Tensor, reg, params: dict[str, torch.Tensor], opt: SubjectRAdam,
                   st: StepState, cfg: TrainConfig) -> None:
    """Backward, RAdam and the NaN guard for per-fit losses ``loss_s`` (S,), all on the device.

    A fit whose loss is not finite is not updated; a fit whose loss or parameters are not finite is
    rolled back to its last good epoch with its learning rate halved, and after ``cfg.nan_retries``
    roll-backs it stops (status "diverged"). Other fits never notice.

    With flat parameters (:func:`dsr.training.radam.flat_leaves`) everything after the backward is one
    fused update (:func:`dsr.ops.radam.guarded_radam`: one kernel on CUDA); otherwise the per-tensor
    optimiser and guard below do the same.
    """
    if opt.fused and st.good_flat is not None and fused_step():
        # Every fit's gradient comes from its own loss alone (the stack shares no parameters), and the
        # fused update ignores the gradients of fits it does not update, so the plain sum needs no mask.
        total = loss_s.sum() if isinstance(reg, float) and reg == 0.0 else (loss_s + reg).sum()
        opt.zero_grad()
        total.backward()
        has_grad = tuple(p.grad is not None for p in params.values())
        guarded_radam(opt.flat_p, opt.gather_grads(), opt.flat_m, opt.flat_v, st.good_flat["p"],
                      st.good_flat["m"], st.good_flat["v"], opt.segment_table(has_grad), opt.state["step"],
                      st.good_opt["step"], loss_s.detach(), st.lr_epoch, st.lr_factor, st.retries, st.active,
                      st.losses, st.n_ok, b1=opt.b1, b2=opt.b2, eps=opt.eps, nan_lr_factor=cfg.nan_lr_factor,
                      nan_retries=cfg.nan_retries)
        return
    finite = torch.isfinite(loss_s.detach())  # (S,)
    use = finite & st.active  # (S,)
    total = torch.where(use, loss_s + reg, torch.zeros_like(loss_s)).sum()
    opt.zero_grad()
    total.backward()
    opt.step(st.lr_epoch * st.lr_factor, use)
    with torch.no_grad():
        bad = st.active & ~(finite & finite_params(params))  # (S,)
        rollback(params, opt, st.good, st.good_opt, bad)
        st.retries.add_(bad.to(torch.int64))
        st.lr_factor.copy_(torch.where(bad, st.lr_factor * cfg.nan_lr_factor, st.lr_factor))
        st.active.copy_(st.active & (st.retries <= cfg.nan_retries))
        st.losses.add_(torch.where(use, loss_s.detach().double(), torch.zeros_like(st.losses)))
        st.n_ok.add_(use.double())


def finite_params(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """(S,) True where every parameter of the fit is finite (on the parameters' device)."""
    ok = None
    for p in params.values():
        f = torch.isfinite(p.detach()).flatten(1).all(1)
        ok = f if ok is None else ok & f
    return ok


def rollback(params, opt, good, good_opt, bad: torch.Tensor) -> None:
    """Restore the fits with ``bad`` (S,) True to their parameters and optimiser state of the last good epoch."""
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(torch.where(bad.view((-1,) + (1,) * (p.ndim - 1)), good[k], p))
        for k, v in opt.state.items():
            v.copy_(torch.where(bad.view((-1,) + (1,) * (v.ndim - 1)), good_opt[k], v))


class StepRunner:
    """Run a step function eagerly, or (on CUDA) capture it as a CUDA graph after a few warm-up steps.

    Parameters
    ----------
    step : callable
        The whole training step; it must read its inputs from, and write its results to, tensors
        that stay in place between calls.
    graph : bool
        Try to capture (CUDA only). A failed capture logs one line and the run goes on eagerly.
    warmup : int
        Eager steps (on a side stream, as CUDA graph capture requires) before the capture; they
        also compile the Triton kernels.
    device : torch.device or None
        The GPU the step's tensors live on. Warm-up and capture streams are made on it, and it is the
        current device while they run. (``torch.cuda.graph`` otherwise captures on a stream it made once
        per process on whatever device was current at the first capture: after a fit on ``cuda:1`` a
        capture for ``cuda:0`` recorded nothing -- "The CUDA Graph is empty" -- while the step ran
        uncaptured on ``cuda:0``'s default stream.)
    """

    def __init__(self, step: Callable[[], None], graph: bool, warmup: int = 3, device=None):
        self.step, self.want_graph, self.warmup = step, graph, warmup
        self.device = torch.device(device) if device is not None else None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
            return
        if not self.want_graph:
            self.step()
            return
        dev = self.device if self.device is not None else torch.device("cuda", torch.cuda.current_device())
        with torch.cuda.device(dev):
            self._warmup_or_capture(dev)

    def _warmup_or_capture(self, dev: torch.device) -> None:
        if self.calls <= self.warmup:
            side = torch.cuda.Stream(device=dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                self.step()
            torch.cuda.current_stream(dev).wait_stream(side)
            return
        try:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=torch.cuda.Stream(device=dev)):
                self.step()
            self.graph = g
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager steps
            log.warning("CUDA graph capture failed (%s: %s); training goes on without it",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            self.want_graph = False
            torch.cuda.synchronize(dev)
            self.step()
            return
        self.graph.replay()  # capturing records the step without running it

"""RAdam (Liu et al., 2020) written out elementwise, with one learning rate per subject.

Because every parameter carries a leading subject axis S and the update is
elementwise, S fits share one optimiser yet stay independent: each subject has
its own step count and learning rate, and a subject can be rolled back or
frozen without touching the others. For S = 1 it matches ``torch.optim.RAdam``.

When the parameters are views of one flat buffer (:func:`flat_leaves`), the moments are laid out the
same way and the training step updates everything with one fused launch
(:func:`dsr.ops.radam.guarded_radam`: RAdam, NaN guard and bookkeeping together); :meth:`SubjectRAdam.step`
stays the per-tensor form (any parameter dict).
"""
from __future__ import annotations

import torch


def flat_leaves(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copies of ``params`` (S, ...) as leaf tensors requiring gradients that are contiguous views of one
    flat buffer, block after block in dict order (the layout of :mod:`dsr.ops.radam`)."""
    first = next(iter(params.values()))
    flat = torch.empty(sum(v.numel() for v in params.values()), dtype=first.dtype, device=first.device)
    out, off = {}, 0
    for k, v in params.items():
        view = flat[off:off + v.numel()].view(v.shape)
        view.copy_(v.detach())
        out[k] = view.requires_grad_(True)
        off += v.numel()
    return out


def _flat_base(params: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The flat buffer ``params`` are consecutive views of (as :func:`flat_leaves` makes them), else None."""
    vals = list(params.values())
    base = vals[0]._base if vals[0]._base is not None else None
    if base is None or base.dim() != 1 or not base.is_contiguous():
        return None
    off = 0
    for v in vals:
        if v._base is not base or not v.is_contiguous() or v.storage_offset() != base.storage_offset() + off:
            return None
        off += v.numel()
    return base if off == base.numel() else None


def views_like(flat: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, off = {}, 0
    for k, v in params.items():
        out[k] = flat[off:off + v.numel()].view(v.shape)
        off += v.numel()
    return out


class SubjectRAdam:
    """RAdam over a dict of tensors whose first axis indexes subjects.

    Parameters
    ----------
    params : dict of str to Tensor
        Leaf tensors with ``requires_grad``; shape (S, ...).
    betas, eps : RAdam constants (PyTorch defaults).
    """

    def __init__(self, params: dict[str, torch.Tensor], betas=(0.9, 0.999), eps=1e-8):
        self.params = params
        self.b1, self.b2 = betas
        self.eps = eps
        first = next(iter(params.values()))
        S = first.shape[0]
        self.state = {"step": torch.zeros(S, dtype=torch.float64, device=first.device)}
        self.flat_p = _flat_base(params)  # (P,) or None: the fused update needs flat parameters
        if self.flat_p is not None:
            self.flat_m, self.flat_v = torch.zeros_like(self.flat_p), torch.zeros_like(self.flat_p)
            self.flat_g = torch.zeros_like(self.flat_p)
            ms, vs = views_like(self.flat_m, params), views_like(self.flat_v, params)
        for k, p in params.items():
            self.state[f"m.{k}"] = ms[k] if self.flat_p is not None else torch.zeros_like(p)
            self.state[f"v.{k}"] = vs[k] if self.flat_p is not None else torch.zeros_like(p)
        self._segments: dict[tuple, torch.Tensor] = {}

    @property
    def fused(self) -> bool:
        """Whether the parameters are flat, so :func:`dsr.ops.radam.guarded_radam` can update them."""
        return self.flat_p is not None

    def segment_table(self, has_grad: tuple[bool, ...]) -> torch.Tensor:
        """(n_params, 3) int64 on the device: offset, entries per fit, has-gradient flag (cached per flags,
        so a CUDA graph replays the table made by an eager step)."""
        if has_grad not in self._segments:
            rows, off = [], 0
            for (k, p), hg in zip(self.params.items(), has_grad):
                rows.append([off, p[0].numel(), int(hg)])
                off += p.numel()
            self._segments[has_grad] = torch.tensor(rows, dtype=torch.int64, device=self.flat_p.device)
        return self._segments[has_grad]

    def gather_grads(self, grads: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The gradients (``grads`` or each parameter's ``.grad``) in the flat layout, one copy launch;
        entries of parameters without a gradient are left as they are (the update skips them)."""
        grads = {k: p.grad for k, p in self.params.items()} if grads is None else grads
        have = [grads[k].reshape(-1) for k in self.params if grads.get(k) is not None]
        if len(have) == len(self.params):
            torch.cat(have, out=self.flat_g)
        else:
            views = views_like(self.flat_g, self.params)
            for k in self.params:
                if grads.get(k) is not None:
                    views[k].copy_(grads[k])
        return self.flat_g

    @torch.no_grad()
    def step(self, lr: torch.Tensor, active: torch.Tensor) -> None:
        """Update every subject with ``active`` True at its learning rate ``lr`` (S,).

        Everything stays on the parameters' device (no host round trip), so a training step on the
        GPU never waits for the host.
        """
        dev = self.state["step"].device
        active, lr = active.to(dev), lr.to(dev, torch.float64)
        self.state["step"].add_(active.to(torch.float64))  # in place: a captured CUDA graph reads it again
        t = self.state["step"].clamp(min=1)  # (S,)
        rho_inf = 2 / (1 - self.b2) - 1
        b2t = self.b2 ** t
        rho = rho_inf - 2 * t * b2t / (1 - b2t)  # (S,)
        rect = torch.sqrt(((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)).clamp(min=0))
        adapt_scale = torch.where(rho > 5.0, rect, torch.zeros_like(rect))  # (S,) factor on the adaptive step
        plain_scale = torch.where(rho > 5.0, torch.zeros_like(rect), torch.ones_like(rect))  # (S,) un-rectified
        bc1 = 1 - self.b1 ** t  # (S,)
        bc2_sqrt = torch.sqrt(1 - b2t)  # (S,)
        step_size = lr / bc1  # (S,)
        for k, p in self.params.items():
            if p.grad is None:
                continue
            g, dt = p.grad, p.dtype
            shape = (-1,) + (1,) * (p.ndim - 1)
            act = active.view(shape)
            m, v = self.state[f"m.{k}"], self.state[f"v.{k}"]
            m.copy_(torch.where(act, self.b1 * m + (1 - self.b1) * g, m))
            v.copy_(torch.where(act, self.b2 * v + (1 - self.b2) * g * g, v))
            adapt = bc2_sqrt.to(dt).view(shape) / (v.sqrt() + self.eps)
            scale = adapt_scale.to(dt).view(shape) * adapt + plain_scale.to(dt).view(shape)
            upd = step_size.to(dt).view(shape) * m * scale
            p.sub_(torch.where(act, upd, torch.zeros((), dtype=dt, device=p.device)))

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def subject_state(self, i: int) -> dict[str, torch.Tensor]:
        """Copy of subject i's optimiser state (for roll-back)."""
        return {k: v[i].clone() for k, v in self.state.items()}

    def restore_subject(self, i: int, saved: dict[str, torch.Tensor]) -> None:
        for k, v in saved.items():
            self.state[k][i] = v

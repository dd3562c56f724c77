"""RAdam (Liu et al., 2020) written out elementwise, with one learning rate per subject.

Because every parameter carries a leading subject axis S and the update is
elementwise, S fits share one optimiser yet stay independent: each subject has
its own step count and learning rate, and a subject can be rolled back or
frozen without touching the others. For S = 1 it matches ``torch.optim.RAdam``.
"""
from __future__ import annotations

import torch


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
        for k, p in params.items():
            self.state[f"m.{k}"] = torch.zeros_like(p)
            self.state[f"v.{k}"] = torch.zeros_like(p)

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

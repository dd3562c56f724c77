"""MINDy: Mesoscale Individualized NeuroDynamics (Singh et al., NeuroImage 2020).

A whole-brain rate model fitted to *deconvolved* BOLD (pass ``SubjectData.d`` to the trainer,
not the raw observations)::

    x_{t+1} = x_t + dt · (W ψ(x_t) − D ⊙ x_t) + c
    ψ_i(x)  = √(α_i² + (b_i x + ½)²) − √(α_i² + (b_i x − ½)²)

a smooth sigmoid-like transfer per region (slope b_i/√(α_i² + ¼) at 0, saturating at ±1).
W = W_S + U Vᵀ (sparse part with an L1 penalty, optional low-rank part with an L2 penalty),
D = exp(d_log) > 0 the decay, c a constant drive. The model is a one-step map, so training
is parallel over time and generation feeds each prediction back (state-free).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dsr.models.baselines.base import Params, SequenceModel


@dataclass
class MINDyConfig:
    """Hyperparameters of :class:`MINDy`."""

    dt: float = 1.0  # integration step in samples (TR units)
    rank: int = 0  # rank of the low-rank part U Vᵀ of W; 0 = none
    l1: float = 1e-4  # L1 weight on W_S (mean absolute value)
    l2: float = 1e-4  # L2 weight on U, V (mean square)
    alpha0: float = 5.0  # initial α
    b0: float = 20.0 / 3.0  # initial b
    d0: float = 0.1  # initial decay D


def transfer(x: Tensor, alpha: Tensor, b: Tensor) -> Tensor:
    """MINDy transfer ψ(x) (..., N) with per-region α, b (N,)."""
    return torch.sqrt(alpha ** 2 + (b * x + 0.5) ** 2) - torch.sqrt(alpha ** 2 + (b * x - 0.5) ** 2)


class MINDy(SequenceModel):
    """MINDy next-step model; see the module docstring."""

    name = "mindy"

    def __init__(self, cfg: MINDyConfig | None = None):
        super().__init__(cfg or MINDyConfig())

    def init_params(self, n_channels: int, seed: int) -> Params:
        c = self.cfg
        gen = torch.Generator().manual_seed(int(seed))
        N = n_channels
        p: Params = {
            "w_s": torch.randn(N, N, generator=gen) * (0.1 / math.sqrt(N)),
            "alpha_log": torch.full((N,), math.log(c.alpha0)),
            "b_log": torch.full((N,), math.log(c.b0)),
            "d_log": torch.full((N,), math.log(c.d0)),
            "c": torch.zeros(N),
        }
        if c.rank > 0:
            p["u"] = torch.randn(N, c.rank, generator=gen) * (0.1 / math.sqrt(N))
            p["v"] = torch.randn(N, c.rank, generator=gen) * (0.1 / math.sqrt(N))
        return p

    def weights(self, params: Params) -> Tensor:
        """Effective connectivity W (N, N) = W_S + U Vᵀ."""
        w = params["w_s"]
        return w + params["u"] @ params["v"].T if "u" in params else w

    def forward(self, params: Params, x_in: Tensor) -> Tensor:
        """One-step map applied at every time step: (B, T, N) -> (B, T, N)."""
        psi = transfer(x_in, params["alpha_log"].exp(), params["b_log"].exp())  # (B, T, N)
        flow = psi @ self.weights(params).T - params["d_log"].exp() * x_in  # (B, T, N)
        return x_in + self.cfg.dt * flow + params["c"]

    def init_state(self, params: Params, batch: int) -> list[Tensor]:
        return []

    def step(self, params: Params, state: list[Tensor], x_t: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x_t (B, N) -> x_{t+1} (B, N); no hidden state."""
        return self.forward(params, x_t[:, None])[:, 0], state

    def regularisation(self, params: Params) -> Tensor:
        """L1 on W_S plus L2 on the low-rank factors."""
        reg = self.cfg.l1 * params["w_s"].abs().mean()
        if "u" in params:
            reg = reg + self.cfg.l2 * (params["u"].pow(2).mean() + params["v"].pow(2).mean())
        return reg

"""LRU: the Linear Recurrent Unit (Orvieto et al., ICML 2023).

Each layer is a complex diagonal linear recurrence of state size P on a width-H stream::

    s_t = λ ⊙ s_{t-1} + γ ⊙ (B u_t),   y_t = Re(C s_t) + D ⊙ u_t

with λ = exp(−exp(ν) + i·exp(θ)) (stable by construction), |λ| initialised uniformly on the ring
[r_min, r_max], phases uniform in [0, max_phase], and the normalisation γ = √(1 − |λ|²).
Training uses the convolutional form (per-state kernels λ^j, complex FFT); generation the recurrence.
Block: h ← h + W·GELU(LRU(RMSNorm(h))); readout x_{t+1} = x_t + dec(h) (residual).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dsr.models.baselines.base import Params, SequenceModel, linear, linear_init, rms_norm
from dsr.models.baselines.width_scaling import width_init


@dataclass
class LRUConfig:
    """Hyperparameters of :class:`LRU`."""

    hidden: int = 32  # H
    state: int = 32  # P
    layers: int = 2
    r_min: float = 0.4  # ring of initial |λ|
    r_max: float = 0.99
    max_phase: float = 2 * math.pi
    residual: bool = True
    width_scaling: str = "standard"  # or "spectral" (dsr.models.baselines.width_scaling)
    base_width: int = 32  # width at which "spectral" equals "standard"


def _complex_causal_conv(v: Tensor, k: Tensor) -> Tensor:
    """Per-channel causal convolution of complex v (B, T, P) with complex kernels k (T, P)."""
    T = v.shape[1]
    n = 2 * T
    out = torch.fft.ifft(torch.fft.fft(v, n=n, dim=1) * torch.fft.fft(k, n=n, dim=0), n=n, dim=1)
    return out[:, :T]  # (B, T, P)


class LRU(SequenceModel):
    """LRU next-step model; see the module docstring."""

    name = "lru"

    def __init__(self, cfg: LRUConfig | None = None):
        super().__init__(cfg or LRUConfig())

    def init_params(self, n_channels: int, seed: int) -> Params:
        c = self.cfg
        gen = torch.Generator().manual_seed(int(seed))
        H, P = c.hidden, c.state
        p: Params = {}
        p["enc.w"], p["enc.b"] = linear_init(gen, n_channels, H)
        for i in range(c.layers):
            k = f"l{i}"
            u1, u2 = torch.rand(P, generator=gen), torch.rand(P, generator=gen)
            nu = -0.5 * torch.log(u1 * (c.r_max ** 2 - c.r_min ** 2) + c.r_min ** 2)  # (P,) −log|λ|
            theta = (c.max_phase * u2).clamp_min(1e-4)  # (P,)
            p[f"{k}.nu_log"] = torch.log(nu)
            p[f"{k}.theta_log"] = torch.log(theta)
            p[f"{k}.gamma_log"] = torch.log(torch.sqrt(1 - torch.exp(-2 * nu)))
            p[f"{k}.b_re"] = torch.randn(P, H, generator=gen) / math.sqrt(2 * H)
            p[f"{k}.b_im"] = torch.randn(P, H, generator=gen) / math.sqrt(2 * H)
            p[f"{k}.c_re"] = torch.randn(H, P, generator=gen) / math.sqrt(P)
            p[f"{k}.c_im"] = torch.randn(H, P, generator=gen) / math.sqrt(P)
            p[f"{k}.d"] = torch.randn(H, generator=gen)
            p[f"{k}.norm"] = torch.ones(H)
            p[f"{k}.out.w"], p[f"{k}.out.b"] = linear_init(gen, H, H)
        p["dec.w"], p["dec.b"] = linear_init(gen, H, n_channels, scale=0.1)
        return width_init(self, p)

    def _lambda(self, params: Params, k: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(log λ (P,), γ-scaled B (P, H), C (H, P)) of layer k, complex."""
        log_lam = torch.complex(-params[f"{k}.nu_log"].exp(), params[f"{k}.theta_log"].exp())  # (P,)
        B = torch.complex(params[f"{k}.b_re"], params[f"{k}.b_im"]) * params[f"{k}.gamma_log"].exp()[:, None]
        C = torch.complex(params[f"{k}.c_re"], params[f"{k}.c_im"])
        return log_lam, B, C

    def _readout(self, params: Params, x: Tensor, h: Tensor) -> Tensor:
        y = linear(params, "dec", h)
        return x + y if self.cfg.residual else y

    def forward(self, params: Params, x_in: Tensor) -> Tensor:
        """Convolutional form (B, T, N) -> (B, T, N)."""
        T = x_in.shape[1]
        h = linear(params, "enc", x_in)  # (B, T, H)
        j = torch.arange(T, dtype=h.dtype, device=h.device)
        for i in range(self.cfg.layers):
            k = f"l{i}"
            log_lam, B, C = self._lambda(params, k)
            u = rms_norm(h, params[f"{k}.norm"])  # (B, T, H)
            v = u.to(B.dtype) @ B.T  # (B, T, P)
            s = _complex_causal_conv(v, torch.exp(j[:, None] * log_lam))  # (B, T, P)
            y = (s @ C.T).real + params[f"{k}.d"] * u  # (B, T, H)
            h = h + linear(params, f"{k}.out", F.gelu(y))
        return self._readout(params, x_in, h)

    def init_state(self, params: Params, batch: int) -> list[Tensor]:
        dtype = torch.complex128 if params["enc.w"].dtype == torch.float64 else torch.complex64
        return [torch.zeros(batch, self.cfg.state, dtype=dtype, device=params["enc.w"].device)
                for _ in range(self.cfg.layers)]

    def step(self, params: Params, state: list[Tensor], x_t: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Recurrent form: x_t (B, N), states (B, P) per layer."""
        h = linear(params, "enc", x_t)  # (B, H)
        new = []
        for i in range(self.cfg.layers):
            k = f"l{i}"
            log_lam, B, C = self._lambda(params, k)
            u = rms_norm(h, params[f"{k}.norm"])  # (B, H)
            s = torch.exp(log_lam) * state[i] + u.to(B.dtype) @ B.T  # (B, P)
            y = (s @ C.T).real + params[f"{k}.d"] * u  # (B, H)
            h = h + linear(params, f"{k}.out", F.gelu(y))
            new.append(s)
        return self._readout(params, x_t, h), new

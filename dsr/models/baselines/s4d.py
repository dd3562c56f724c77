"""S4D: a stack of diagonal linear state-space layers (Gu et al., NeurIPS 2022).

Each layer runs H independent single-input single-output diagonal SSMs of state size P,
discretised by zero-order hold with a learned step Δ_h::

    s_t = Ā s_{t-1} + B̄ u_t,   y_t = c · Re(C s_t) + D u_t,   Ā = exp(ΔA), B̄ = (Ā − 1)/A · B

with A complex (c = 2, conjugate pairs implied) or real (c = 1). Initialisations: S4D-Lin
A_n = −½ + iπn and S4D-Inv A_n = −½ + i(P/π)(P/(2n+1) − 1); the real parameterisation uses
S4D-Real A_n = −(n+1) for "lin" and the inverse law A_n = −P/(2(n+1)) for "inv".
Training uses the convolutional form (kernel k_j = c·Re(C Ā^j B̄), FFT); generation the recurrence.
Block: h ← h + W·GELU(SSM(RMSNorm(h))); the readout predicts x_{t+1} = x_t + dec(h) (residual).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dsr.errors import ConfigError
from dsr.models.baselines.base import (Params, SequenceModel, linear, linear_init, per_channel_causal_conv,
                                       rms_norm)
from dsr.models.baselines.width_scaling import width_init


@dataclass
class S4DConfig:
    """Hyperparameters of :class:`S4D`."""

    hidden: int = 32  # H, model width
    state: int = 16  # P, state size per channel
    layers: int = 2
    complex: bool = True  # complex (S4D) vs real (S4D-Real) diagonal A
    init: str = "lin"  # "lin" or "inv"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    residual: bool = True  # predict x_{t+1} - x_t
    width_scaling: str = "standard"  # or "spectral" (dsr.models.baselines.width_scaling)
    base_width: int = 32  # width at which "spectral" equals "standard"


class S4D(SequenceModel):
    """S4D next-step model; see the module docstring."""

    name = "s4d"

    def __init__(self, cfg: S4DConfig | None = None):
        cfg = cfg or S4DConfig()
        if cfg.init not in ("lin", "inv"):
            raise ConfigError(f"S4D init must be 'lin' or 'inv', got {cfg.init!r}")
        super().__init__(cfg)

    def _init_a(self) -> tuple[Tensor, Tensor]:
        """Initial (Re A, Im A), each (P,)."""
        P = self.cfg.state
        n = torch.arange(P, dtype=torch.float64)
        if self.cfg.complex:
            re = torch.full((P,), -0.5, dtype=torch.float64)
            im = math.pi * n if self.cfg.init == "lin" else (P / math.pi) * (P / (2 * n + 1) - 1)
        else:
            re = -(n + 1) if self.cfg.init == "lin" else -P / (2 * (n + 1))
            im = torch.zeros(P, dtype=torch.float64)
        return re.float(), im.float()

    def init_params(self, n_channels: int, seed: int) -> Params:
        c = self.cfg
        gen = torch.Generator().manual_seed(int(seed))
        H, P = c.hidden, c.state
        p: Params = {}
        p["enc.w"], p["enc.b"] = linear_init(gen, n_channels, H)
        a_re, a_im = self._init_a()
        for i in range(c.layers):
            k = f"l{i}"
            u = torch.rand(H, generator=gen)
            p[f"{k}.log_dt"] = math.log(c.dt_min) + u * (math.log(c.dt_max) - math.log(c.dt_min))  # (H,)
            p[f"{k}.log_a_re"] = torch.log(-a_re).expand(H, P).clone()  # (H, P)
            p[f"{k}.b_re"] = torch.ones(H, P)
            p[f"{k}.c_re"] = torch.randn(H, P, generator=gen) * math.sqrt(0.5)
            if c.complex:
                p[f"{k}.a_im"] = a_im.expand(H, P).clone()
                p[f"{k}.b_im"] = torch.zeros(H, P)
                p[f"{k}.c_im"] = torch.randn(H, P, generator=gen) * math.sqrt(0.5)
            p[f"{k}.d"] = torch.randn(H, generator=gen)
            p[f"{k}.norm"] = torch.ones(H)
            p[f"{k}.out.w"], p[f"{k}.out.b"] = linear_init(gen, H, H)
        p["dec.w"], p["dec.b"] = linear_init(gen, H, n_channels, scale=0.1)
        return width_init(self, p)

    # ---- discretisation ---------------------------------------------------------------
    def _discrete(self, params: Params, k: str) -> tuple[Tensor, Tensor, Tensor, float]:
        """(ΔA, B̄, C, c) for layer k, each (H, P), complex if the model is; Ā = exp(ΔA)."""
        dt = params[f"{k}.log_dt"].exp()[:, None]  # (H, 1)
        re = -params[f"{k}.log_a_re"].exp()  # (H, P)
        if self.cfg.complex:
            A = torch.complex(re, params[f"{k}.a_im"])
            B = torch.complex(params[f"{k}.b_re"], params[f"{k}.b_im"])
            C = torch.complex(params[f"{k}.c_re"], params[f"{k}.c_im"])
            scale = 2.0
        else:
            A, B, C, scale = re, params[f"{k}.b_re"], params[f"{k}.c_re"], 1.0
        dtA = dt * A  # (H, P)
        Bb = (torch.exp(dtA) - 1) / A * B  # (H, P)
        return dtA, Bb, C, scale

    def kernel(self, params: Params, k: str, T: int) -> Tensor:
        """Convolution kernel of layer k, (T, H): k_j = c·Re(Σ_p C Ā^j B̄)."""
        dtA, Bb, C, scale = self._discrete(params, k)
        j = torch.arange(T, dtype=params[f"{k}.log_dt"].dtype, device=dtA.device)
        powers = torch.exp(dtA[..., None] * j)  # (H, P, T)
        kern = ((C * Bb)[..., None] * powers).sum(1)  # (H, T)
        return (scale * kern.real if self.cfg.complex else kern).T  # (T, H)

    # ---- forms ------------------------------------------------------------------------
    def _readout(self, params: Params, x: Tensor, h: Tensor) -> Tensor:
        y = linear(params, "dec", h)
        return x + y if self.cfg.residual else y

    def features(self, params: Params, x_in: Tensor) -> Tensor:
        """The residual stream after the last layer (B, T, N) -> (B, T, H) (convolutional form)."""
        h = linear(params, "enc", x_in)  # (B, T, H)
        for i in range(self.cfg.layers):
            k = f"l{i}"
            u = rms_norm(h, params[f"{k}.norm"])  # (B, T, H)
            y = per_channel_causal_conv(u, self.kernel(params, k, x_in.shape[1])) + params[f"{k}.d"] * u
            h = h + linear(params, f"{k}.out", F.gelu(y))
        return h

    def forward(self, params: Params, x_in: Tensor) -> Tensor:
        """Convolutional form (B, T, N) -> (B, T, N)."""
        return self._readout(params, x_in, self.features(params, x_in))

    def init_state(self, params: Params, batch: int) -> list[Tensor]:
        dtype = torch.complex64 if self.cfg.complex else params["enc.w"].dtype
        if self.cfg.complex and params["enc.w"].dtype == torch.float64:
            dtype = torch.complex128
        return [torch.zeros(batch, self.cfg.hidden, self.cfg.state, dtype=dtype, device=params["enc.w"].device)
                for _ in range(self.cfg.layers)]

    def step(self, params: Params, state: list[Tensor], x_t: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Recurrent form: x_t (B, N), states (B, H, P) per layer."""
        h = linear(params, "enc", x_t)  # (B, H)
        new = []
        for i in range(self.cfg.layers):
            k = f"l{i}"
            dtA, Bb, C, scale = self._discrete(params, k)
            u = rms_norm(h, params[f"{k}.norm"])  # (B, H)
            s = torch.exp(dtA) * state[i] + Bb * u[..., None]  # (B, H, P)
            ys = (C * s).sum(-1)  # (B, H)
            y = (scale * ys.real if self.cfg.complex else ys) + params[f"{k}.d"] * u
            h = h + linear(params, f"{k}.out", F.gelu(y))
            new.append(s)
        return self._readout(params, x_t, h), new

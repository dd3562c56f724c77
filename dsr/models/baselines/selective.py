"""A Mamba-style selective SSM (Gu & Dao, 2023), in plain PyTorch.

Each layer (pre-RMSNorm, residual) expands the width-H stream to E = expand·H channels, applies a
short causal depthwise convolution and SiLU, and runs a diagonal SSM of state size P per channel
whose step Δ_t, input matrix B_t and output matrix C_t depend on the input::

    Δ_t = softplus(W_Δ (W_r u_t) + b_Δ)        (E,)
    s_t = exp(Δ_t A) ⊙ s_{t-1} + Δ_t B_t u_t     (E, P), A = −exp(a_log) real (S4D-Real init)
    y_t = (s_t C_t + D ⊙ u_t) ⊙ SiLU(z_t)

then projects back to H. The scan is a Python loop over time (one code path for training with
T steps and for generation with T = 1, so the two forms agree exactly).
Readout x_{t+1} = x_t + dec(h) (residual).
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
class SelectiveConfig:
    """Hyperparameters of :class:`SelectiveSSM`."""

    hidden: int = 32  # H
    state: int = 8  # P
    layers: int = 2
    expand: int = 2  # E = expand * H
    conv: int = 4  # depthwise causal conv width (1 = none)
    dt_rank: int = 0  # rank of the Δ projection; 0 = ceil(H / 16)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    residual: bool = True
    width_scaling: str = "standard"  # or "spectral" (dsr.models.baselines.width_scaling)
    base_width: int = 32  # width at which "spectral" equals "standard"


class SelectiveSSM(SequenceModel):
    """Selective (Mamba-style) SSM next-step model; see the module docstring."""

    name = "selective"

    def __init__(self, cfg: SelectiveConfig | None = None):
        super().__init__(cfg or SelectiveConfig())

    @property
    def _dims(self) -> tuple[int, int, int, int, int]:
        c = self.cfg
        R = c.dt_rank or math.ceil(c.hidden / 16)
        return c.hidden, c.expand * c.hidden, c.state, R, c.conv

    def init_params(self, n_channels: int, seed: int) -> Params:
        c = self.cfg
        gen = torch.Generator().manual_seed(int(seed))
        H, E, P, R, K = self._dims
        p: Params = {}
        p["enc.w"], p["enc.b"] = linear_init(gen, n_channels, H)
        for i in range(c.layers):
            k = f"l{i}"
            p[f"{k}.norm"] = torch.ones(H)
            p[f"{k}.in.w"], p[f"{k}.in.b"] = linear_init(gen, H, 2 * E)
            p[f"{k}.conv.w"] = (torch.rand(E, 1, K, generator=gen) * 2 - 1) / math.sqrt(K)
            p[f"{k}.conv.b"] = torch.zeros(E)
            p[f"{k}.xproj.w"], p[f"{k}.xproj.b"] = linear_init(gen, E, R + 2 * P)
            p[f"{k}.dt.w"], _ = linear_init(gen, R, E)  # U(±R^-½) as in Mamba
            dt = torch.exp(torch.rand(E, generator=gen) * (math.log(c.dt_max) - math.log(c.dt_min))
                           + math.log(c.dt_min))  # (E,)
            p[f"{k}.dt.b"] = dt + torch.log(-torch.expm1(-dt))  # softplus^{-1}(dt)
            p[f"{k}.a_log"] = torch.log(torch.arange(1, P + 1, dtype=torch.float32)).expand(E, P).clone()
            p[f"{k}.d"] = torch.ones(E)
            p[f"{k}.out.w"], p[f"{k}.out.b"] = linear_init(gen, E, H)
        p["dec.w"], p["dec.b"] = linear_init(gen, H, n_channels, scale=0.1)
        return width_init(self, p)

    def _layer(self, params: Params, k: str, h: Tensor, conv_s: Tensor, ssm_s: Tensor, stash: dict | None = None):
        """Mixer of layer k on h (B, T, H) from states conv (B, K-1, E), ssm (B, E, P).

        Returns the mixer output (B, T, H) and the two new states; ``stash``, when given, receives the
        input-dependent step ``stash["dt"]`` (B, T, E).
        """
        H, E, P, R, K = self._dims
        xz = linear(params, f"{k}.in", rms_norm(h, params[f"{k}.norm"]))  # (B, T, 2E)
        u, z = xz[..., :E], xz[..., E:]  # (B, T, E) each
        full = torch.cat([conv_s, u], 1)  # (B, K-1+T, E)
        u = F.conv1d(full.transpose(1, 2), params[f"{k}.conv.w"], params[f"{k}.conv.b"], groups=E)  # (B, E, T)
        u = F.silu(u.transpose(1, 2))  # (B, T, E)
        new_conv = full[:, full.shape[1] - (K - 1):]  # (B, K-1, E)
        proj = linear(params, f"{k}.xproj", u)  # (B, T, R + 2P)
        dt = F.softplus(linear(params, f"{k}.dt", proj[..., :R]))  # (B, T, E)
        if stash is not None:
            stash["dt"] = dt
        Bm, Cm = proj[..., R:R + P], proj[..., R + P:]  # (B, T, P)
        A = -params[f"{k}.a_log"].exp()  # (E, P)
        decay = torch.exp(dt[..., None] * A)  # (B, T, E, P)
        drive = (dt * u)[..., None] * Bm[:, :, None, :]  # (B, T, E, P)
        s = ssm_s
        ys = []
        # unbind once: indexing [:, t] inside the loop makes backward zero-fill a full-size grad per step (O(T²))
        for dec_t, drv_t, c_t in zip(decay.unbind(1), drive.unbind(1), Cm.unbind(1)):
            s = dec_t * s + drv_t  # (B, E, P)
            ys.append((s * c_t[:, None, :]).sum(-1))  # (B, E)
        y = torch.stack(ys, 1) + params[f"{k}.d"] * u  # (B, T, E)
        return linear(params, f"{k}.out", y * F.silu(z)), new_conv, s

    def layers_from(self, params: Params, h: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Run every layer on the embedded stream h (B, T, H) from ``state``: (B, T, H) and the new state."""
        new = []
        for i in range(self.cfg.layers):
            dh, cs, ss = self._layer(params, f"l{i}", h, state[2 * i], state[2 * i + 1])
            h = h + dh
            new += [cs, ss]
        return h, new

    def _run(self, params: Params, state: list[Tensor], x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x (B, T, N) from ``state`` -> predictions (B, T, N) and the state after T steps."""
        h, new = self.layers_from(params, linear(params, "enc", x), state)  # (B, T, H)
        y = linear(params, "dec", h)
        return (x + y if self.cfg.residual else y), new

    def init_state(self, params: Params, batch: int) -> list[Tensor]:
        H, E, P, R, K = self._dims
        kw = dict(dtype=params["enc.w"].dtype, device=params["enc.w"].device)
        out = []
        for _ in range(self.cfg.layers):
            out += [torch.zeros(batch, K - 1, E, **kw), torch.zeros(batch, E, P, **kw)]
        return out

    def forward(self, params: Params, x_in: Tensor) -> Tensor:
        """Teacher-forced predictions (B, T, N) -> (B, T, N)."""
        return self._run(params, self.init_state(params, x_in.shape[0]), x_in)[0]

    def step(self, params: Params, state: list[Tensor], x_t: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Recurrent form: x_t (B, N); states per layer: conv (B, K-1, E), ssm (B, E, P)."""
        y, new = self._run(params, state, x_t[:, None])
        return y[:, 0], new

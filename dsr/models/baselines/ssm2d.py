"""A 2-D (time × variate) SSM in the spirit of Chimera (Behrouz et al., 2024).

Every variate v of x_t is a token: e_{t,v} = w_in x_{t,v} + b_in + E_v (E a learned variate
embedding, width H). Each layer holds, per direction d ∈ {→, ←} along the variates, a state
s^d_{t,v} ∈ R^{H×P} that obeys a 2-D recurrence — along time with an input-dependent (selective)
step, along the variates with a learned decay::

    Δ_{t,v}   = softplus(W_Δ u_{t,v} + b_Δ)                          (H,)
    s→_{t,v}  = exp(Δ_{t,v} A1) ⊙ s→_{t-1,v} + Δ_{t,v} B u_{t,v} + Ā2→ ⊙ s→_{t,v-1}
    s←_{t,v}  = ... + Ā2← ⊙ s←_{t,v+1}
    y_{t,v}   = Σ_p (C→ ⊙ s→_{t,v} + C← ⊙ s←_{t,v}) + D ⊙ u_{t,v}

with u = RMSNorm(h), A1 = −exp(a1_log) (S4D-Real init), Ā2 = tanh(a2) ∈ (−1, 1). Within a time
step the variate recursion is solved in closed form, s_{t,·} = M c_{t,·} with M[v, w] = Ā2^{|v−w|}
on one triangle. The two directions make the model indifferent to the variate order, as Chimera's
bidirectional variate scan does. Block h ← h + W·GELU(y); readout x_{t+1,v} = x_{t,v} + dec(h_{t,v}).
Differences from Chimera: no separate seasonal/trend modules, no data-dependent variate-direction
parameters, and the time recursion runs as a Python loop (one code path for training and
generation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dsr.models.baselines.base import Params, SequenceModel, linear, linear_init, rms_norm


@dataclass
class SSM2DConfig:
    """Hyperparameters of :class:`SSM2D`."""

    hidden: int = 16  # H, token width
    state: int = 8  # P
    layers: int = 2
    dt_min: float = 1e-2  # wider than S4D's: the cross-variate path runs only through the state,
    dt_max: float = 1.0  # and a small initial Δ starves it (measured on the oscillator test)
    residual: bool = True


def _variate_mixer(a: Tensor, n: int, forward: bool) -> Tensor:
    """M (N, N, H, P): M[v, w] = a^(v−w) for w ≤ v (forward) or a^(w−v) for w ≥ v, else 0."""
    idx = torch.arange(n, device=a.device)
    lag = idx[:, None] - idx[None, :] if forward else idx[None, :] - idx[:, None]  # (N, N)
    lag = lag.to(a.dtype)[..., None, None]  # (N, N, 1, 1)
    powers = torch.where(lag >= 1, a.pow(lag.clamp_min(1)), torch.ones_like(a))  # (N, N, H, P)
    return powers * (lag >= 0)


def mix_variates(M: Tensor, c: Tensor) -> Tensor:
    """s[b, v] = Σ_w M[v, w] ⊙ c[b, w] for M (N, N, H, Q), c (B, N, H, Q) -> (B, N, H, Q).

    Broadcasting for few variates (fast on small tensors), einsum beyond (memory O(B N H Q)).
    """
    if M.shape[0] <= 8:
        return (M * c[:, None]).sum(2)
    return torch.einsum("vwhq,bwhq->bvhq", M, c)


class SSM2D(SequenceModel):
    """2-D time × variate SSM next-step model; see the module docstring."""

    name = "ssm2d"

    def __init__(self, cfg: SSM2DConfig | None = None):
        super().__init__(cfg or SSM2DConfig())

    def init_params(self, n_channels: int, seed: int) -> Params:
        c = self.cfg
        gen = torch.Generator().manual_seed(int(seed))
        H, P = c.hidden, c.state
        p: Params = {
            "in.w": torch.randn(H, generator=gen),
            "in.b": torch.zeros(H),
            "emb": torch.randn(n_channels, H, generator=gen) * 0.1,
        }
        for i in range(c.layers):
            k = f"l{i}"
            p[f"{k}.norm"] = torch.ones(H)
            p[f"{k}.dt.w"], _ = linear_init(gen, H, H, scale=0.1)
            dt = torch.exp(torch.rand(H, generator=gen) * (math.log(c.dt_max) - math.log(c.dt_min))
                           + math.log(c.dt_min))  # (H,)
            p[f"{k}.dt.b"] = dt + torch.log(-torch.expm1(-dt))  # softplus^{-1}(dt)
            p[f"{k}.a1_log"] = torch.log(torch.arange(1, P + 1, dtype=torch.float32)).expand(H, P).clone()
            p[f"{k}.b"] = torch.randn(H, P, generator=gen)
            for d in ("f", "b"):
                p[f"{k}.a2_{d}"] = torch.atanh(0.2 + 0.6 * torch.rand(H, P, generator=gen))
                p[f"{k}.c_{d}"] = torch.randn(H, P, generator=gen) / math.sqrt(P)
            p[f"{k}.d"] = torch.ones(H)
            p[f"{k}.out.w"], p[f"{k}.out.b"] = linear_init(gen, H, H)
        p["dec.w"], p["dec.b"] = linear_init(gen, H, 1, scale=0.1)
        return p

    def init_state(self, params: Params, batch: int) -> list[Tensor]:
        n = params["emb"].shape[0]
        kw = dict(dtype=params["in.w"].dtype, device=params["in.w"].device)
        return [torch.zeros(batch, n, self.cfg.hidden, 2 * self.cfg.state, **kw) for _ in range(self.cfg.layers)]

    def _layer(self, params: Params, k: str, h: Tensor, state: Tensor):
        """Layer k on tokens h (B, T, N, H) from state (B, N, H, 2P) -> (dh, new state)."""
        n = h.shape[2]
        u = rms_norm(h, params[f"{k}.norm"])  # (B, T, N, H)
        dt = F.softplus(linear(params, f"{k}.dt", u))  # (B, T, N, H)
        decay = torch.exp(dt[..., None] * -params[f"{k}.a1_log"].exp())  # (B, T, N, H, P)
        drive = (dt * u)[..., None] * params[f"{k}.b"]  # (B, T, N, H, P)
        # both directions in one state: (…, H, 2P), the first P → and the last P ←
        M = torch.cat([_variate_mixer(torch.tanh(params[f"{k}.a2_f"]), n, True),
                       _variate_mixer(torch.tanh(params[f"{k}.a2_b"]), n, False)], -1)  # (N, N, H, 2P)
        C = torch.cat([params[f"{k}.c_f"], params[f"{k}.c_b"]], -1)  # (H, 2P)
        decay, drive = decay.repeat(1, 1, 1, 1, 2), drive.repeat(1, 1, 1, 1, 2)  # (B, T, N, H, 2P)
        s, ys = state, []
        # unbind once: indexing [:, t] inside the loop makes backward zero-fill a full-size grad per step (O(T²))
        for dec_t, drv_t in zip(decay.unbind(1), drive.unbind(1)):
            s = mix_variates(M, dec_t * s + drv_t)  # (B, N, H, 2P)
            ys.append((s * C).sum(-1))  # (B, N, H)
        y = params[f"{k}.d"] * u + torch.stack(ys, 1)  # (B, T, N, H)
        return linear(params, f"{k}.out", F.gelu(y)), s

    def _run(self, params: Params, state: list[Tensor], x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x (B, T, N) from ``state`` -> predictions (B, T, N) and the state after T steps."""
        h = x[..., None] * params["in.w"] + params["in.b"] + params["emb"]  # (B, T, N, H)
        new = []
        for i in range(self.cfg.layers):
            dh, st = self._layer(params, f"l{i}", h, state[i])
            h = h + dh
            new.append(st)
        out = linear(params, "dec", h)[..., 0]  # (B, T, N)
        return (x + out if self.cfg.residual else out), new

    def forward(self, params: Params, x_in: Tensor) -> Tensor:
        """Teacher-forced predictions (B, T, N) -> (B, T, N) (layer by layer, scan over time)."""
        return self._run(params, self.init_state(params, x_in.shape[0]), x_in)[0]

    def step(self, params: Params, state: list[Tensor], x_t: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Recurrent form: x_t (B, N); one state (B, N, H, 2P) per layer (→ then ← along P)."""
        y, new = self._run(params, state, x_t[:, None])
        return y[:, 0], new

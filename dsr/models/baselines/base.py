"""Common interface of the sequence baselines and small shared building blocks.

Every baseline is a :class:`SequenceModel`: a typed config plus pure functions of a flat
parameter dict (``str -> Tensor``, real tensors only, so it saves as safetensors):

* ``init_params(n_channels, seed)`` — fresh parameters from ``seed`` alone;
* ``forward(params, x_in)`` — teacher-forced next-step prediction (B, T, N) -> (B, T, N),
  ``out[:, t]`` predicts ``x_in[:, t + 1]``;
* ``init_state(params, batch)`` / ``step(params, state, x_t)`` — the recurrent form;
* ``generate(params, x_prefix, n_steps)`` — warm up on the prefix, then closed loop
  (each prediction fed back as the next input).

Unlike the convSSM the parameters carry no subject axis: one model is one fit.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

Params = dict[str, Tensor]


class SequenceModel:
    """Base class: a config and pure functions of a parameter dict.

    Subclasses set ``name`` and implement ``init_params``, ``init_state`` and ``step``; they may
    override ``forward`` with a parallel (convolutional / scan) form that must agree with ``step``.
    """

    name = "base"

    def __init__(self, cfg):
        self.cfg = cfg

    # ---- to implement -----------------------------------------------------------------
    def init_params(self, n_channels: int, seed: int) -> Params:
        raise NotImplementedError

    def init_state(self, params: Params, batch: int) -> list[Tensor]:
        """Zero recurrent state for ``batch`` sequences (a list of tensors)."""
        raise NotImplementedError

    def step(self, params: Params, state: list[Tensor], x_t: Tensor) -> tuple[Tensor, list[Tensor]]:
        """One step: input x_t (B, N) -> prediction of x_{t+1} (B, N) and the new state."""
        raise NotImplementedError

    def regularisation(self, params: Params) -> Tensor:
        """Penalty added to the training loss (default 0)."""
        return torch.zeros((), dtype=next(iter(params.values())).dtype)

    # ---- generic forms ----------------------------------------------------------------
    def forward(self, params: Params, x_in: Tensor) -> Tensor:
        """Teacher-forced next-step predictions (B, T, N) -> (B, T, N) via the recurrent form."""
        state = self.init_state(params, x_in.shape[0])
        out = []
        for t in range(x_in.shape[1]):
            y, state = self.step(params, state, x_in[:, t])  # (B, N)
            out.append(y)
        return torch.stack(out, 1)  # (B, T, N)

    @torch.no_grad()
    def generate(self, params: Params, x_prefix: Tensor, n_steps: int) -> Tensor:
        """Closed-loop generation (B, T0, N) -> (B, n_steps, N).

        The prefix is fed teacher-forced; the prediction after its last step is the first output,
        and from then on every prediction is the next input.
        """
        if x_prefix.ndim != 3 or x_prefix.shape[1] < 1:
            raise ValueError(f"x_prefix must be (B, T0 >= 1, N), got shape {tuple(x_prefix.shape)}")
        state = self.init_state(params, x_prefix.shape[0])
        y = None
        for t in range(x_prefix.shape[1]):
            y, state = self.step(params, state, x_prefix[:, t])
        out = []
        for _ in range(n_steps):
            out.append(y)
            y, state = self.step(params, state, y)
        return torch.stack(out, 1)  # (B, n_steps, N)

    def n_params(self, params: Params) -> int:
        return sum(v.numel() for v in params.values())


# ---- shared building blocks ----------------------------------------------------------
def linear_init(gen: torch.Generator, n_in: int, n_out: int, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Weight (n_out, n_in) ~ U(±scale/√n_in) and zero bias (n_out,)."""
    bound = scale / math.sqrt(n_in)
    w = (torch.rand(n_out, n_in, generator=gen) * 2 - 1) * bound
    return w, torch.zeros(n_out)


def linear(params: Params, key: str, x: Tensor) -> Tensor:
    """x (..., n_in) -> (..., n_out) with ``key.w`` (n_out, n_in), ``key.b`` (n_out,)."""
    return x @ params[f"{key}.w"].T + params[f"{key}.b"]


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-5) -> Tensor:
    """RMSNorm over the last axis (..., H) with gain ``weight`` (H,)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def per_channel_causal_conv(u: Tensor, k: Tensor) -> Tensor:
    """Causal convolution, one kernel per channel, by FFT.

    Parameters
    ----------
    u : Tensor (B, T, H)
    k : Tensor (T, H)
        ``k[j, h]`` is lag j of channel h's kernel.

    Returns
    -------
    Tensor (B, T, H): ``y[:, t, h] = Σ_{j<=t} k[j, h] u[:, t-j, h]``.
    """
    T = u.shape[1]
    n = 2 * T
    U = torch.fft.rfft(u, n=n, dim=1)  # (B, F, H)
    K = torch.fft.rfft(k, n=n, dim=0)  # (F, H)
    return torch.fft.irfft(U * K, n=n, dim=1)[:, :T]  # (B, T, H)

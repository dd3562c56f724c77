"""Sequence encoders: read a whole recording (T, N) and predict one scalar covariate (issue 19).

They are the end-to-end competitors of "fit a dynamics model per subject, extract features, regress".
Every encoder is a typed config plus pure functions of a flat parameter dict (real tensors,
safetensors-ready), like the next-step baselines beside it:

* ``init_params(n_channels, seed)`` — fresh parameters from ``seed`` alone;
* ``forward(params, x, perturb=None)`` — recordings (B, T, N) -> predictions (B,).

Backbones (the layers are the baselines' own, not copies):

* ``selective`` — the Mamba-style selective SSM of :mod:`.selective` (Gu & Dao, 2023);
* ``s4d`` / ``s4d_real`` — S4D with complex or real diagonal A (:mod:`.s4d`; Gu et al., NeurIPS 2022);
* ``rir`` — recursion in recursion (Ray Chowdhury & Caragea, NeurIPS 2023): a balanced binary tree of a
  gated recursive cell inside each chunk of ``chunk`` steps (depth log2(chunk)), and a diagonal linear
  recurrence across the chunk summaries (:mod:`.encoders_rir`).

The stream after the backbone (B, T, H) is pooled over time (mean and standard deviation per channel)
and a linear head gives the prediction. The selective encoder optionally applies START (Guo et al.,
NeurIPS 2024), a saliency-driven token-aware style perturbation for domain generalisation, during
training (:func:`start_perturb`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dsr.errors import ConfigError
from dsr.models.baselines.base import Params, linear, linear_init
from dsr.models.baselines.encoders_rir import rir_features, rir_init
from dsr.models.baselines.s4d import S4D, S4DConfig
from dsr.models.baselines.selective import SelectiveConfig, SelectiveSSM
from dsr.models.persistence import load_model, save_model

BACKBONES = ("selective", "s4d", "s4d_real", "rir")


@dataclass
class EncoderConfig:
    """Hyperparameters of :class:`SequenceEncoder`."""

    backbone: str = "selective"  # one of BACKBONES
    hidden: int = 16  # H, width of the stream
    state: int = 8  # P, SSM state size per channel (selective, s4d)
    layers: int = 1  # backbone layers (selective, s4d)
    chunk: int = 16  # rir: steps per chunk (the tree's leaves)
    start: bool = False  # selective only: START perturbation while training
    start_fraction: float = 0.5  # START: fraction of tokens (the most salient) that are perturbed
    start_prob: float = 0.5  # START: probability that a training batch is perturbed
    start_saliency: str = "delta"  # START: "delta" (mean input-dependent Δ_t), "norm" (‖token‖) or "random"


class SequenceEncoder:
    """Whole-recording regressor; see the module docstring."""

    name = "encoder"

    def __init__(self, cfg: EncoderConfig | None = None):
        cfg = cfg or EncoderConfig()
        if cfg.backbone not in BACKBONES:
            raise ConfigError(f"encoder backbone must be one of {BACKBONES}, got {cfg.backbone!r}")
        if cfg.start and cfg.backbone != "selective":
            raise ConfigError("START perturbation is defined for the selective backbone only")
        if cfg.start_saliency not in ("delta", "norm", "random"):
            raise ConfigError(f"start_saliency must be 'delta', 'norm' or 'random', got {cfg.start_saliency!r}")
        if cfg.chunk < 2:
            raise ConfigError(f"rir chunk must be >= 2, got {cfg.chunk}")
        self.cfg = cfg
        if cfg.backbone == "selective":
            self.backbone = SelectiveSSM(SelectiveConfig(hidden=cfg.hidden, state=cfg.state, layers=cfg.layers))
        elif cfg.backbone.startswith("s4d"):
            self.backbone = S4D(S4DConfig(hidden=cfg.hidden, state=cfg.state, layers=cfg.layers,
                                          complex=cfg.backbone == "s4d"))
        else:
            self.backbone = None

    def init_params(self, n_channels: int, seed: int) -> Params:
        """Backbone parameters (the baseline's, without its next-step readout) and the head."""
        gen = torch.Generator().manual_seed(int(seed) + 7919)
        if self.backbone is None:
            p = rir_init(n_channels, self.cfg.hidden, int(seed))
        else:
            p = {k: v for k, v in self.backbone.init_params(n_channels, seed).items() if not k.startswith("dec.")}
        p["head.w"], p["head.b"] = linear_init(gen, 2 * self.cfg.hidden, 1)
        return p

    def features(self, params: Params, x: Tensor, perturb: torch.Generator | None = None) -> Tensor:
        """Backbone stream (B, T, N) -> (B, T', H) (T' = T, or the number of chunks for rir)."""
        if self.cfg.backbone == "rir":
            return rir_features(params, x, self.cfg.chunk)
        if self.cfg.backbone != "selective":
            return self.backbone.features(params, x)
        h = linear(params, "enc", x)  # (B, T, H)
        if perturb is not None and self.cfg.start:
            sal = self.saliency(params, h, perturb)  # (B, T)
            h = start_perturb(h, sal, self.cfg.start_fraction, self.cfg.start_prob, perturb)
        state = self.backbone.init_state(params, x.shape[0])
        return self.backbone.layers_from(params, h, state)[0]

    def saliency(self, params: Params, h: Tensor, gen: torch.Generator | None = None) -> Tensor:
        """Token saliency (B, T) of h (B, T, H): the mean input-dependent step Δ_t of layer 0, ‖h_t‖, or
        uniform noise from ``gen`` (``"random"``: the token-agnostic control)."""
        if self.cfg.start_saliency == "norm":
            return h.detach().norm(dim=-1)
        if self.cfg.start_saliency == "random":
            return torch.rand(h.shape[:2], generator=gen).to(h.device)
        stash: dict = {}
        with torch.no_grad():
            state = self.backbone.init_state(params, h.shape[0])
            self.backbone._layer(params, "l0", h.detach(), state[0], state[1], stash=stash)
        return stash["dt"].mean(-1)  # (B, T)

    def forward(self, params: Params, x: Tensor, perturb: torch.Generator | None = None) -> Tensor:
        """Recordings (B, T, N) -> predictions (B,); ``perturb`` (a generator) switches START on in training."""
        if x.ndim != 3:
            raise ValueError(f"x must be (B, T, N), got shape {tuple(x.shape)}")
        h = self.features(params, x, perturb)  # (B, T', H)
        pooled = torch.cat([h.mean(1), h.std(1, unbiased=False)], -1)  # (B, 2H)
        return linear(params, "head", pooled)[:, 0]  # (B,)


def start_perturb(h: Tensor, saliency: Tensor, fraction: float, prob: float, gen: torch.Generator) -> Tensor:
    """START-style token-aware style perturbation of the most salient tokens.

    With probability ``prob`` the batch is perturbed: each sequence's channel statistics over time
    (mean μ and std σ, (B, 1, H)) are resampled as μ' = μ + ε·s_μ, σ' = σ + ε'·s_σ, where s_μ, s_σ are
    the statistics' spread over the batch (uncertainty-style resampling), and only the top ``fraction``
    of tokens by ``saliency`` are restyled, h_t ← σ'(h_t − μ)/σ + μ'. The rest pass unchanged, so the
    model is discouraged from relying on the style of the tokens it attends to most.

    Parameters
    ----------
    h : Tensor (B, T, H)
    saliency : Tensor (B, T)
    """
    if float(torch.rand((), generator=gen)) >= prob or h.shape[0] < 2:
        return h
    B, T, H = h.shape
    mu = h.mean(1, keepdim=True)  # (B, 1, H)
    sig = (h.var(1, keepdim=True, unbiased=False) + 1e-6).sqrt()  # (B, 1, H)
    s_mu = (mu.var(0, keepdim=True) + 1e-6).sqrt()  # (1, 1, H)
    s_sig = (sig.var(0, keepdim=True) + 1e-6).sqrt()  # (1, 1, H)
    eps = torch.randn(2, B, 1, H, generator=gen, dtype=h.dtype).to(h.device)
    mu2, sig2 = mu + eps[0] * s_mu, (sig + eps[1] * s_sig).abs()  # (B, 1, H)
    restyled = (h - mu) / sig * sig2 + mu2  # (B, T, H)
    k = max(1, int(math.ceil(fraction * T)))
    top = saliency.topk(k, dim=1).indices  # (B, k)
    mask = torch.zeros(B, T, dtype=torch.bool, device=h.device).scatter_(1, top, True)  # (B, T)
    return torch.where(mask[..., None], restyled, h)


def make_encoder(backbone: str, **overrides) -> SequenceEncoder:
    """Build an encoder with ``backbone`` and the default config updated by ``overrides``."""
    return SequenceEncoder(EncoderConfig(backbone=backbone, **overrides))


def save_encoder(path: str | Path, encoder: SequenceEncoder, fit: dict) -> Path:
    """Write a fit of :func:`dsr.training.encoders.train_encoder` to ``path`` (.safetensors) and its config
    and target standardisation to the ``.json`` sidecar."""
    return save_model(path, fit["params"], "dsr.encoder", config=dataclasses.asdict(encoder.cfg),
                      y_mean=fit["y_mean"], y_std=fit["y_std"])


def load_encoder(path: str | Path) -> tuple[SequenceEncoder, dict]:
    """Read what :func:`save_encoder` wrote: (encoder, fit)."""
    params, side = load_model(path, "dsr.encoder")
    return SequenceEncoder(EncoderConfig(**side["config"])), {"params": params, "y_mean": side["y_mean"],
                                                               "y_std": side["y_std"]}

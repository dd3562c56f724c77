"""Width scaling of the SSM baselines: per-parameter learning-rate and initialisation multipliers.

``width_scaling = "standard"`` (the default) trains every parameter at the one learning rate and keeps the
initialisations of the modules. ``"spectral"`` follows the spectral scaling condition for feature learning
(Yang, Simon & Bernstein, 2023: a weight matrix and its update should have spectral norm
Θ(√(fan_out / fan_in))) as it applies to structured state-space models (Vankadara, Xu, Haas & Cevher,
"On feature learning in structured state space models", NeurIPS 2024, who show that μP's usual
bookkeeping does not carry over to SSMs and derive the scaling from forward and backward signal
propagation through the recurrence). With width H (the stream), the expansion E = expand·H and the state
size P held fixed, and m = H / ``base_width``:

* **state-space parameters** of each channel — the diagonal A (``log_a_re``, ``a_im``, ``a_log``,
  ``nu_log``, ``theta_log``), the step Δ (``log_dt``, ``dt.b``), S4D's per-channel B and C, the skip D,
  LRU's γ, the depthwise convolution, norms and biases — are vectors over channels: learning rate ×1;
* **matrices whose fan-in grows with the width** — the channel mixers (``out``, ``in``), the selective
  SSM's input-dependent projections to (Δ, B_t, C_t) (``xproj``, ``dt.w``), LRU's input matrix B
  (P × H) — are hidden matrices: with Adam, whose update is Θ(1) per entry, the spectral condition
  gives learning rate × 1/m;
* the **readout** (``dec.w``) is an output matrix: learning rate × 1/m, and its initial scale × 1/√m
  (entries Θ(1/H) instead of Θ(1/√H)), so the prediction at initialisation does not grow with H;
* the **embedding** (``enc.w``, fan-in = the data's channels) keeps its learning rate.

LRU's output matrix C (H × P) has fan-in P, held fixed: ×1. The rule is checked empirically by
``benchmarks/width_scaling.py`` (a learning rate tuned at width 64 stays near the best at 256 and 1024).
"""
from __future__ import annotations

import torch

from dsr.errors import ConfigError

WIDTH_SCALINGS = ("standard", "spectral")
#: Parameter-name suffixes of matrices whose fan-in grows with the width.
HIDDEN_SUFFIXES = (".out.w", ".in.w", ".xproj.w", ".dt.w")
LRU_INPUT = (".b_re", ".b_im")  # LRU's B (P, H): fan-in H
READOUT = ("dec.w",)


def _check(cfg) -> str:
    mode = getattr(cfg, "width_scaling", "standard")
    if mode not in WIDTH_SCALINGS:
        raise ConfigError(f"width_scaling must be one of {WIDTH_SCALINGS}, got {mode!r}")
    if getattr(cfg, "base_width", 1) < 1:
        raise ConfigError(f"base_width must be >= 1, got {cfg.base_width}")
    return mode


def parameter_role(model_name: str, key: str) -> str:
    """"readout", "hidden", "input" or "vector" for parameter ``key`` of baseline ``model_name``."""
    if key in READOUT:
        return "readout"
    if key == "enc.w":
        return "input"
    if key.endswith(HIDDEN_SUFFIXES) or (model_name == "lru" and key.endswith(LRU_INPUT)):
        return "hidden"
    return "vector"


def lr_multipliers(model, params: dict) -> dict[str, float]:
    """Learning-rate multiplier per parameter (all 1 under ``"standard"``)."""
    cfg = model.cfg
    if _check(cfg) == "standard":
        return {k: 1.0 for k in params}
    m = cfg.hidden / cfg.base_width
    return {k: (1.0 / m if parameter_role(model.name, k) in ("hidden", "readout") else 1.0) for k in params}


def width_init(model, params: dict) -> dict:
    """Apply the initialisation part of the rule to fresh parameters (in place; returns them)."""
    cfg = model.cfg
    if _check(cfg) == "spectral":
        params["dec.w"] = params["dec.w"] * (cfg.base_width / cfg.hidden) ** 0.5
    return params


def param_groups(model, params: dict, lr: float) -> list[dict]:
    """torch.optim parameter groups: one per distinct multiplier, ``lr`` × multiplier."""
    mult = lr_multipliers(model, params) if hasattr(model, "cfg") else {k: 1.0 for k in params}
    groups: dict[float, list[torch.Tensor]] = {}
    for k, v in params.items():
        groups.setdefault(mult[k], []).append(v)
    return [{"params": vs, "lr": lr * f} for f, vs in sorted(groups.items())]

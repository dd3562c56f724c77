"""Recursion in recursion (Ray Chowdhury & Caragea, NeurIPS 2023), as a sequence encoder backbone.

Two nested recursions:

* **inner** — each chunk of ``chunk`` consecutive steps is reduced to one vector by a balanced binary
  tree of a gated recursive cell (pairs of neighbours merge level by level; an odd node out is carried up
  unchanged), so the depth is ceil(log2(chunk)) whatever the recording length. The cell follows the gated
  recursive cell of their BBT-GRC: from the pair (l, r), ``[f_l, f_r, g, c] = W₂ GELU(W₁ [l; r])`` and the
  parent is ``RMSNorm(σ(f_l) ⊙ l + σ(f_r) ⊙ r + σ(g) ⊙ tanh(c))``;
* **outer** — a diagonal linear recurrence across the chunk summaries v_c,
  ``s_c = λ ⊙ s_{c-1} + (1 − λ) ⊙ W v_c`` with λ = sigmoid(·) ∈ (0, 1), computed in parallel as a causal
  convolution with the kernel (1 − λ) λ^j.

A trailing partial chunk is its own (shallower) tree, so no step of the recording is dropped.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dsr.models.baselines.base import Params, linear, linear_init, per_channel_causal_conv, rms_norm


def rir_init(n_channels: int, hidden: int, seed: int) -> Params:
    """Parameters of the leaf embedding, the tree cell and the outer recurrence."""
    gen = torch.Generator().manual_seed(int(seed))
    H = hidden
    p: Params = {}
    p["enc.w"], p["enc.b"] = linear_init(gen, n_channels, H)
    p["cell.l1.w"], p["cell.l1.b"] = linear_init(gen, 2 * H, 2 * H)
    p["cell.l2.w"], p["cell.l2.b"] = linear_init(gen, 2 * H, 4 * H)
    p["cell.norm"] = torch.ones(H)
    p["outer.in.w"], p["outer.in.b"] = linear_init(gen, H, H)
    lam = 0.5 + 0.45 * torch.rand(H, generator=gen)  # (H,) initial λ in [0.5, 0.95]
    p["outer.logit"] = torch.log(lam / (1 - lam))
    return p


def tree_cell(params: Params, left: Tensor, right: Tensor) -> Tensor:
    """Gated recursive cell: children (..., H) each -> parent (..., H)."""
    H = left.shape[-1]
    z = linear(params, "cell.l2", F.gelu(linear(params, "cell.l1", torch.cat([left, right], -1))))  # (..., 4H)
    f_l, f_r, g, c = z.split(H, -1)
    parent = torch.sigmoid(f_l) * left + torch.sigmoid(f_r) * right + torch.sigmoid(g) * torch.tanh(c)
    return rms_norm(parent, params["cell.norm"])


def tree_reduce(params: Params, leaves: Tensor) -> Tensor:
    """Balanced-binary-tree reduction of leaves (B, C, L, H) -> roots (B, C, H), depth ceil(log2 L)."""
    nodes = leaves
    while nodes.shape[2] > 1:
        L = nodes.shape[2]
        m = L // 2
        pairs = nodes[:, :, :2 * m].reshape(*nodes.shape[:2], m, 2, nodes.shape[-1])  # (B, C, m, 2, H)
        merged = tree_cell(params, pairs[:, :, :, 0], pairs[:, :, :, 1])  # (B, C, m, H)
        nodes = torch.cat([merged, nodes[:, :, 2 * m:]], 2) if L % 2 else merged
    return nodes[:, :, 0]


def rir_features(params: Params, x: Tensor, chunk: int) -> Tensor:
    """Outer states per chunk: recordings (B, T, N) -> (B, ceil(T / chunk), H)."""
    B, T, _ = x.shape
    e = linear(params, "enc", x)  # (B, T, H)
    n_full = T // chunk
    roots = []
    if n_full:
        roots.append(tree_reduce(params, e[:, :n_full * chunk].reshape(B, n_full, chunk, -1)))  # (B, C, H)
    if T % chunk:
        roots.append(tree_reduce(params, e[:, n_full * chunk:][:, None]))  # (B, 1, H)
    v = torch.cat(roots, 1)  # (B, C, H)
    u = linear(params, "outer.in", v)  # (B, C, H)
    lam = torch.sigmoid(params["outer.logit"])  # (H,)
    j = torch.arange(v.shape[1], dtype=v.dtype, device=v.device)[:, None]  # (C, 1)
    kernel = (1 - lam) * torch.exp(j * torch.log(lam))  # (C, H): (1 − λ) λ^j
    return per_channel_causal_conv(u, kernel)  # (B, C, H)


def tree_depth(chunk: int) -> int:
    """Depth of the inner tree for ``chunk`` leaves."""
    return int(math.ceil(math.log2(chunk)))

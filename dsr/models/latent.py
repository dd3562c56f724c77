"""Latent PLRNN family as pure functions of a flat parameter dict.

Every parameter carries a leading subject axis S, so one call advances S
independent models at once. States are ``z`` of shape (S, B, M).

Models (the PLRNN family of the reference code, github humml-lab/GTF-ConvSSM src/models/):
    PLRNN     z' = A⊙z + W ReLU(z) + h                      (W off-diagonal)
    mcPLRNN   z' = A⊙z + W ReLU(z − mean(z)) + h            (mean-centred)
    shPLRNN   z' = A⊙z + W1 ReLU(W2 z + h2) + h1
    cshPLRNN  z' = A⊙z + W1 [ReLU(W2 z + h2) − ReLU(W2 z)] + h1
    dendPLRNN z' = A⊙z + W Σ_b α_b ReLU(z − θ_b) + h
    clipped_dendPLRNN  the same with ReLU(z − θ_b) − ReLU(z)
External inputs add ``C s`` with C of shape (S, M, P).
"""
from __future__ import annotations

import math

import torch

Params = dict[str, torch.Tensor]


def _uniform(gen, shape, bound, dtype):
    return (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * bound


def _init_A(gen, S, M, dtype):
    """Diagonal of a normalised positive-definite matrix K = RᵀR/M + I."""
    out = torch.empty(S, M, dtype=dtype)
    for s in range(S):
        R = torch.randn(M, M, generator=gen, dtype=torch.float64)
        K = R.T @ R / M + torch.eye(M, dtype=torch.float64)  # (M, M)
        out[s] = (torch.diagonal(K) / torch.linalg.eigvalsh(K).max()).to(dtype)
    return out


def init_params(kind: str, S: int, M: int, L: int, gen: torch.Generator, n_inputs: int = 0,
                dtype=torch.float32) -> Params:
    """Draw initial parameters for S independent models of one kind.

    Parameters
    ----------
    kind : str
        One of the names in ``dsr.config.LATENT_MODELS``.
    S, M, L : int
        Subjects, latent dimension, hidden dimension (number of bases for dendritic models).
    gen : torch.Generator
        Seeded generator (explicit seeds make runs reproducible).
    n_inputs : int
        Number of external input channels P (0 for none).
    """
    p: Params = {"A": _init_A(gen, S, M, dtype), "h1": torch.zeros(S, M, dtype=dtype)}
    if kind in ("shPLRNN", "cshPLRNN"):
        p["W1"] = _uniform(gen, (S, M, L), 1 / math.sqrt(L), dtype)  # (S, M, L)
        p["W2"] = _uniform(gen, (S, L, M), 1 / math.sqrt(M), dtype)  # (S, L, M)
        # h2 uniform ±1/√L for the clipped model, zero otherwise (humml-lab/GTF-ConvSSM
        # src/models/shallow_plrnn.jl: uniform_init((hidden_dim,)), whose bound is 1/√(last dim))
        p["h2"] = (_uniform(gen, (S, L), 1 / math.sqrt(L), dtype) if kind == "cshPLRNN"
                   else torch.zeros(S, L, dtype=dtype))
    elif kind in ("PLRNN", "mcPLRNN"):
        p["W"] = _uniform(gen, (S, M, M), 1 / math.sqrt(M), dtype) * _offdiag(M, dtype)  # (S, M, M)
    elif kind in ("dendPLRNN", "clipped_dendPLRNN"):
        p["W"] = _uniform(gen, (S, M, M), 1 / math.sqrt(M), dtype) * _offdiag(M, dtype)  # (S, M, M)
        p["alpha"] = _uniform(gen, (S, L), 1 / math.sqrt(L), dtype)  # (S, Bases)
        p["theta"] = torch.randn(S, M, L, generator=gen, dtype=dtype) * 0.5  # (S, M, Bases)
    else:
        raise ValueError(f"unknown latent model {kind!r}")
    if n_inputs:
        p["C"] = _uniform(gen, (S, M, n_inputs), 1 / math.sqrt(n_inputs), dtype)  # (S, M, P)
    return p


def _offdiag(M, dtype):
    return 1.0 - torch.eye(M, dtype=dtype)


def step(kind: str, p: Params, z: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
    """One step of S models: z (S, B, M) → (S, B, M); s (S, B, P) external inputs or None."""
    out = p["A"].unsqueeze(1) * z + p["h1"].unsqueeze(1)  # (S, B, M)
    if kind in ("shPLRNN", "cshPLRNN"):
        pre = torch.einsum("slm,sbm->sbl", p["W2"], z)  # (S, B, L)
        act = torch.relu(pre + p["h2"].unsqueeze(1))  # (S, B, L)
        if kind == "cshPLRNN":
            act = act - torch.relu(pre)
        out = out + torch.einsum("sml,sbl->sbm", p["W1"], act)  # (S, B, M)
    else:
        out = out + torch.einsum("smn,sbn->sbm", p["W"] * _offdiag(z.shape[-1], z.dtype).to(z.device),
                                 _phi(kind, p, z))
    if s is not None and "C" in p:
        out = out + torch.einsum("smp,sbp->sbm", p["C"], s)
    return out


def _phi(kind, p, z):
    """Elementwise nonlinearity of the PLRNN / dendritic variants, (S, B, M)."""
    if kind == "PLRNN":
        return torch.relu(z)
    if kind == "mcPLRNN":
        return torch.relu(z - z.mean(-1, keepdim=True))
    alpha = p["alpha"][:, None, None, :]  # (S, 1, 1, Bases)
    zb = z.unsqueeze(-1)  # (S, B, M, 1)
    basis = torch.relu(zb - p["theta"].unsqueeze(1))  # (S, B, M, Bases)
    if kind == "clipped_dendPLRNN":
        basis = basis - torch.relu(zb)
    return (alpha * basis).sum(-1)


def jacobian(kind: str, p: Params, z: torch.Tensor) -> torch.Tensor:
    """Analytic Jacobian ∂z'/∂z at z (S, B, M) → (S, B, M, M)."""
    M = z.shape[-1]
    J = torch.diag_embed(p["A"].unsqueeze(1).expand_as(z))  # (S, B, M, M)
    if kind in ("shPLRNN", "cshPLRNN"):
        pre = torch.einsum("slm,sbm->sbl", p["W2"], z)  # (S, B, L)
        gate = (pre > -p["h2"].unsqueeze(1)).to(z.dtype)  # (S, B, L)
        if kind == "cshPLRNN":
            gate = gate - (pre > 0).to(z.dtype)
        return J + torch.einsum("sml,sbl,sln->sbmn", p["W1"], gate, p["W2"])
    W = p["W"] * _offdiag(M, z.dtype).to(z.device)  # (S, M, M)
    if kind == "PLRNN":
        return J + W.unsqueeze(1) * (z > 0).to(z.dtype).unsqueeze(-2)
    if kind == "mcPLRNN":
        gate = (z - z.mean(-1, keepdim=True) > 0).to(z.dtype)  # (S, B, M)
        centre = torch.eye(M, dtype=z.dtype, device=z.device) - 1.0 / M  # (M, M)
        return J + torch.einsum("smn,sbn,nk->sbmk", W, gate, centre)
    zb = z.unsqueeze(-1)  # (S, B, M, 1)
    slope = (zb > p["theta"].unsqueeze(1)).to(z.dtype)  # (S, B, M, Bases)
    if kind == "clipped_dendPLRNN":
        slope = slope - (zb > 0).to(z.dtype)
    deriv = (p["alpha"][:, None, None, :] * slope).sum(-1)  # (S, B, M)
    return J + W.unsqueeze(1) * deriv.unsqueeze(-2)


def regularisation(kind: str, p: Params) -> torch.Tensor:
    """L2 penalty on the latent model's weights, one value per subject (S,)."""
    names = ("W1", "W2") if kind in ("shPLRNN", "cshPLRNN") else ("W",)
    return sum(p[n].pow(2).flatten(1).sum(1) for n in names)


def project_(kind: str, p: Params) -> None:
    """Keep structural constraints after an optimiser step (W off-diagonal)."""
    if "W" in p:
        with torch.no_grad():
            p["W"].mul_(_offdiag(p["W"].shape[-1], p["W"].dtype).to(p["W"].device))

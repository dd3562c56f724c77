"""Observation models: identity, affine and regressor, on a flat parameter dict.

All parameters have a leading subject axis S. ``N`` is the number of observed
channels, ``M`` the latent dimension and ``P`` the number of nuisance regressors.

    identity   x̂ = z[:N]                      targets d = x (first N units forced)
    affine     x̂ = B z + b                    targets d = B⁺(x − b) (all M units)
    regressor  x̂ = B z + b + J r              targets d = B⁺(x − b − J r)
"""
from __future__ import annotations

import math

import torch

Params = dict[str, torch.Tensor]


def init_params(kind: str, S: int, N: int, M: int, P: int, gen: torch.Generator, dtype=torch.float32) -> Params:
    """Initial observation parameters for S subjects."""
    if kind == "identity":
        if N > M:
            raise ValueError(f"the identity observation model needs latent_dim M >= {N} observed channels")
        if M == N:
            return {}
        bound = 1 / math.sqrt(N)
        return {"L": (torch.rand(S, M - N, N, generator=gen, dtype=dtype) * 2 - 1) * bound}  # (S, M-N, N)
    bound = 1 / math.sqrt(M)
    p = {"B": (torch.rand(S, N, M, generator=gen, dtype=dtype) * 2 - 1) * bound,  # (S, N, M)
         "b": torch.zeros(S, N, dtype=dtype)}  # (S, N)
    if kind == "regressor":
        p["J"] = torch.zeros(S, N, P, dtype=dtype)  # (S, N, P)
    elif kind != "affine":
        raise ValueError(f"unknown observation model {kind!r}")
    return p


def n_forced(kind: str, N: int, M: int) -> int:
    """How many latent units are forced by the targets."""
    return N if kind == "identity" else M


def targets(kind: str, p: Params, x: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
    """Latent targets from (deconvolved) observations x (S, B, T, N) → (S, B, T, n_forced)."""
    if kind == "identity":
        return x
    # NaN marks unreliable targets: compute on zeros and put the NaN back, so that no NaN reaches
    # the gradient of B, b or J through the products below.
    valid = torch.isfinite(x).all(-1, keepdim=True)  # (S, B, T, 1)
    if r is not None:
        valid = valid & torch.isfinite(r).all(-1, keepdim=True)
        r = torch.nan_to_num(r)
    resid = torch.nan_to_num(x) - p["b"][:, None, None, :]  # (S, B, T, N)
    if kind == "regressor" and r is not None:
        resid = resid - torch.einsum("snp,sbtp->sbtn", p["J"], r)
    Binv = torch.linalg.pinv(p["B"])  # (S, M, N)
    d = torch.einsum("smn,sbtn->sbtm", Binv, resid)  # (S, B, T, M)
    return torch.where(valid, d, torch.full_like(d, float("nan")))


def init_state(kind: str, p: Params, d0: torch.Tensor, M: int) -> torch.Tensor:
    """Full latent state from a target d0 (S, B, n_forced) → (S, B, M)."""
    if kind != "identity" or d0.shape[-1] == M:
        return d0
    rest = torch.einsum("sqn,sbn->sbq", p["L"], d0)  # (S, B, M-N)
    return torch.cat([d0, rest], dim=-1)


def decode(kind: str, p: Params, zc: torch.Tensor, N: int, r: torch.Tensor | None = None) -> torch.Tensor:
    """Observations from filtered latents zc (S, B, T, M) → (S, B, T, N)."""
    if kind == "identity":
        return zc[..., :N]
    x = torch.einsum("snm,sbtm->sbtn", p["B"], zc) + p["b"][:, None, None, :]  # (S, B, T, N)
    if kind == "regressor" and r is not None:
        x = x + torch.einsum("snp,sbtp->sbtn", p["J"], r)
    return x


def regularisation(kind: str, p: Params) -> torch.Tensor | float:
    """L2 penalty on the observation matrix, one value per subject (S,)."""
    return p["B"].pow(2).flatten(1).sum(1) if "B" in p else 0.0

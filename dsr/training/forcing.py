"""Forcing strength: fixed α, or adaptive GTF (Hess et al., ICML 2023).

Adaptive GTF sets α = max(0, 1 − 1/𝒩) where 𝒩 bounds the growth of
perturbations along the data: for each sequence the geometric mean over time
of the spectral norm ‖J(d_t)‖₂ of the latent Jacobian at the targets, maxed
over the batch. The estimate is raised at once and decays by γ otherwise.
"""
from __future__ import annotations

import torch


@torch.no_grad()
def estimate_alpha(model, d: torch.Tensor) -> torch.Tensor:
    """Adaptive-GTF α estimate per subject from latent targets d (S, B, T, Mf) → (S,)."""
    S, B, T, Mf = d.shape
    finite = torch.isfinite(d).all(-1)  # (S, B, T)
    z = model.init_state(torch.nan_to_num(d).reshape(S, B * T, Mf))  # (S, B*T, M)
    J = model.jacobian(z)  # (S, B*T, M, M)
    norms = torch.linalg.matrix_norm(J, ord=2).reshape(S, B, T)  # (S, B, T)
    logn = torch.where(finite, norms.clamp_min(1e-12).log(), torch.zeros_like(norms))
    count = finite.sum(-1).clamp_min(1)  # (S, B)
    geo = torch.exp(logn.sum(-1) / count)  # (S, B)
    bound = geo.max(-1).values  # (S,)
    return (1 - 1 / bound).clamp_min(0.0)


def update_alpha(current: torch.Tensor, estimate: torch.Tensor, decay: float) -> torch.Tensor:
    """Raise to the new estimate at once, otherwise decay towards it by γ."""
    decayed = torch.maximum(current * decay, estimate)
    return torch.where(estimate > current, estimate, decayed)

"""Lyapunov exponents of a discrete-time map by the QR (Benettin) method, model-agnostic.

The model enters through two callables: ``step`` (B, M) -> (B, M) and ``jacobian`` (B, M) -> (B, M, M),
the Jacobian of ``step`` at each state. Exponents are per step, in natural log units; divide by the
sampling interval (e.g. the TR) for per-second units.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor


def finite_rows(x: Tensor) -> Tensor:
    """True for each batch element whose entries are all finite: x (B, ...) -> (B,)."""
    return torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)


@torch.no_grad()
def lyapunov_spectrum(
    step: Callable[[Tensor], Tensor],
    jacobian: Callable[[Tensor], Tensor],
    z0: Tensor,
    n_steps: int,
    transient: int = 1000,
    n_exponents: int | None = None,
    ortho_every: int = 1,
    qr: str = "auto",
) -> Tensor:
    """Leading Lyapunov exponents along the orbit started at each row of z0.

    Parameters
    ----------
    step : callable
        The map, (B, M) -> (B, M).
    jacobian : callable
        Jacobian of ``step`` at each state, (B, M) -> (B, M, M).
    z0 : Tensor (B, M)
        Initial states; their dtype (float64 recommended) is used throughout.
    n_steps : int
        Steps averaged over, after the transient.
    transient : int
        Steps run first and discarded.
    n_exponents : int or None
        Number k of exponents (default M).
    ortho_every : int
        Re-orthonormalise the frame by QR every this many steps (1 is safest).
    qr : {"auto", "lapack", "gram_schmidt", "cholesky"}
        QR of the frame: ``torch.linalg.qr`` (sign-fixed), :func:`qr_gram_schmidt` (batched, ~10 kernels
        per column), or :func:`qr_cholesky` (batched, ~15 kernels in all; ``torch.linalg.qr`` loops over
        the batch on a GPU for small matrices). "auto": Cholesky QR on CUDA, LAPACK elsewhere. All give
        the same exponents to ~1e-9.

    Returns
    -------
    Tensor (B, k)
        Exponents per step, sorted descending; a row is NaN where the orbit or the frame became
        non-finite (a diverging model).
    """
    if n_steps < 1 or ortho_every < 1:
        raise ValueError("n_steps and ortho_every must be >= 1")
    if qr not in ("auto", "lapack", "gram_schmidt", "cholesky"):
        raise ValueError(f"qr must be 'auto', 'lapack', 'gram_schmidt' or 'cholesky', got {qr!r}")
    batched_qr = {"gram_schmidt": qr_gram_schmidt, "cholesky": qr_cholesky}.get(qr)
    if qr == "auto" and z0.is_cuda:
        batched_qr = qr_cholesky
    batch, m = z0.shape
    k = m if n_exponents is None else int(n_exponents)
    if not 1 <= k <= m:
        raise ValueError(f"n_exponents must be in [1, {m}], got {k}")
    z = z0.clone()  # (B, M)
    ok = finite_rows(z)  # (B,)
    for _ in range(transient):
        z = step(z)  # (B, M)
        ok &= finite_rows(z)
        z = torch.where(ok[:, None], z, torch.zeros_like(z))  # (B, M) park diverged rows at 0

    eye = torch.eye(m, k, dtype=z.dtype, device=z.device)  # (M, k)
    q = eye.expand(batch, m, k).clone()  # (B, M, k)
    log_r = torch.zeros(batch, k, dtype=z.dtype, device=z.device)  # (B, k)
    for t in range(n_steps):
        q = jacobian(z) @ q  # (B, M, k)
        z = step(z)  # (B, M)
        ok &= finite_rows(z) & finite_rows(q)
        z = torch.where(ok[:, None], z, torch.zeros_like(z))  # (B, M)
        q = torch.where(ok[:, None, None], q, eye)  # (B, M, k)
        if (t + 1) % ortho_every == 0 or t + 1 == n_steps:
            if batched_qr is not None:
                q, d = batched_qr(q)  # (B, M, k), (B, k) with diag(R) >= 0
            else:
                q, r = torch.linalg.qr(q)  # (B, M, k), (B, k, k)
                d = torch.diagonal(r, dim1=-2, dim2=-1)  # (B, k)
                sign = torch.where(d < 0, -1.0, 1.0).to(d.dtype)  # (B, k)
                q = q * sign[:, None, :]  # (B, M, k) make diag(R) positive: a continuous frame
            log_r += torch.log(d.abs())  # (B, k)
    exps = torch.sort(log_r / n_steps, dim=1, descending=True).values  # (B, k)
    return torch.where(ok[:, None], exps, torch.full_like(exps, float("nan")))  # (B, k)


def qr_gram_schmidt(a: Tensor) -> tuple[Tensor, Tensor]:
    """Thin QR of a batch of small matrices by classical Gram–Schmidt, orthogonalised twice.

    a (B, M, k) -> Q (B, M, k), diag(R) (B, k) >= 0 (LAPACK's after the sign fix).
    """
    q = a.clone()  # (B, M, k)
    d = torch.empty(a.shape[0], a.shape[2], dtype=a.dtype, device=a.device)  # (B, k)
    for j in range(a.shape[2]):
        v = q[:, :, j]  # (B, M)
        if j:
            prev = q[:, :, :j]  # (B, M, j)
            for _ in range(2):
                v = v - (prev @ (prev.transpose(1, 2) @ v[..., None]))[..., 0]  # (B, M)
        d[:, j] = torch.linalg.vector_norm(v, dim=1)
        q[:, :, j] = v / d[:, j, None]
    return q, d


def qr_cholesky(a: Tensor) -> tuple[Tensor, Tensor]:
    """Thin QR of a batch of small matrices by Cholesky QR done twice (CholeskyQR2; Fukaya et al. 2014).

    R₁ᵀR₁ = AᵀA (Cholesky), Q₁ = A R₁⁻¹, then the same for Q₁: Q = Q₁ R₂⁻¹ and diag(R) = diag(R₂) diag(R₁).
    The second pass restores orthogonality to rounding for cond(A) up to ~10⁸ in float64 (one map step of a
    frame that was orthonormal). a (B, M, k) -> Q (B, M, k), diag(R) (B, k) > 0; NaN for a rank-deficient
    or non-finite frame.
    """
    q, d = a, None
    for _ in range(2):
        chol, info = torch.linalg.cholesky_ex(q.transpose(1, 2) @ q)  # (B, k, k) lower, R = Lᵀ
        bad = (info != 0)[:, None, None]  # (B, 1, 1) not positive definite
        chol = torch.where(bad, torch.full_like(chol, float("nan")), chol)
        q = torch.linalg.solve_triangular(chol.transpose(1, 2), q, upper=True, left=False)  # (B, M, k) q R⁻¹
        diag = torch.diagonal(chol, dim1=-2, dim2=-1)  # (B, k)
        d = diag if d is None else d * diag
    return q, d


def max_lyapunov(
    step: Callable[[Tensor], Tensor],
    jacobian: Callable[[Tensor], Tensor],
    z0: Tensor,
    n_steps: int,
    transient: int = 1000,
) -> Tensor:
    """Maximal Lyapunov exponent per step of each orbit: z0 (B, M) -> (B,); NaN where diverged."""
    return lyapunov_spectrum(step, jacobian, z0, n_steps, transient=transient, n_exponents=1)[:, 0]


def kaplan_yorke_dimension(exponents) -> float:
    """Kaplan–Yorke (Lyapunov) dimension D = j + (λ_1 + … + λ_j) / |λ_{j+1}|.

    Parameters
    ----------
    exponents : array (k,)
        Lyapunov exponents (any order; sorted descending here).

    Returns
    -------
    float
        j is the largest index with a non-negative partial sum: 0.0 if λ_1 < 0, k if every partial
        sum is non-negative (the spectrum is too short to bound the dimension); NaN for non-finite input.
    """
    if hasattr(exponents, "detach"):
        exponents = exponents.detach().cpu().numpy()
    lam = np.sort(np.asarray(exponents, dtype=np.float64).ravel())[::-1]  # (k,)
    if lam.size == 0 or np.isnan(lam).any():
        return float("nan")
    csum = np.cumsum(lam)  # (k,)
    nonneg = np.nonzero(csum >= 0)[0]
    if nonneg.size == 0:
        return 0.0
    j = int(nonneg[-1]) + 1  # number of exponents in the non-negative partial sum
    if j == lam.size:
        return float(j)
    return float(j + csum[j - 1] / abs(lam[j]))

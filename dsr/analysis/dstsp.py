"""State-space divergence D_stsp: KL(p_true || p_gen) between the state-space occupations of two series.

Two estimators, as in the reference code (humml-lab/GTF-ConvSSM, src/measures/stsp_measure.jl):

* binned -- N-dim histogram, ``n_bins`` bins per dim over [min - 0.1σ, max + 0.1σ] of the true
  data, Laplace smoothing α = 1e-5 on the counts, exact KL of the two smoothed pmfs;
* GMM -- each series is a mixture of isotropic Gaussians (variance ``scaling``), one per time point
  of its first ``max_points`` (10 000) rows; KL by Monte Carlo with samples drawn from the true
  mixture (Hershey & Olsen 2007).

The reference uses the binned estimator for N < 6 dims (``bins_max_dims = 5``), the GMM otherwise.

Each estimator exists twice: a batched float64 torch version (``*_batch``: F fits, each with its
reference and R generated series, on any device; what the metric engine uses) and a one-pair NumPy
twin (``*_ref``) that the tests compare it with. The plain names (:func:`dstsp`, :func:`dstsp_bins`,
:func:`dstsp_gmm`) score one pair through the batched code.

A generated series with non-finite values (a diverged model), or one that never enters the binned
volume, gets ``inf``: the worst possible score, which keeps medians over rollouts meaningful.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from dsr.ops.gmm import log_mixture

LAPLACE_ALPHA = 1e-5
GMM_MAX_POINTS = 10000
_CHUNK_ENTRIES = 4_000_000  # samples x centres per block of the NumPy GMM distance matrix (32 MB in float64)
_BIN_ENTRIES = 2**25  # generated values binned at once (index tensors of ~8 bytes each)
_GMM_ENTRIES = {"cpu": 2**24, "cuda": 2**28}  # squared distances per block of the torch GMM (float64)


def _as_2d(x, name: str) -> np.ndarray:
    """Convert numpy / torch input to a float64 (T, N) array (a 1-D input becomes (T, 1))."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.ascontiguousarray(x, dtype=np.float64)  # torch refuses negative strides (e.g. x[::-1])
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (T, N) array, got shape {x.shape}")
    return x


def _check_pair(x_true, x_gen) -> tuple[np.ndarray, np.ndarray]:
    x_true, x_gen = _as_2d(x_true, "x_true"), _as_2d(x_gen, "x_gen")
    if x_true.shape[1] != x_gen.shape[1]:
        raise ValueError(f"x_true has {x_true.shape[1]} dims but x_gen has {x_gen.shape[1]}")
    if not np.isfinite(x_true).all():
        raise ValueError("x_true contains non-finite values")
    return x_true, x_gen


# ---- binned estimator ---------------------------------------------------------------------------
def _volume(x_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[min − 0.1σ, max + 0.1σ] per dim of x_true (T, N); a dim of zero variance uses σ = 1."""
    n_dims = x_true.shape[1]
    sigma = x_true.std(axis=0, ddof=1) if x_true.shape[0] > 1 else np.zeros(n_dims)  # (N,)
    sigma = np.where(sigma > 0, sigma, 1.0)  # (N,)
    return x_true.min(axis=0) - 0.1 * sigma, x_true.max(axis=0) + 0.1 * sigma


def _bin_index(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_bins: int) -> np.ndarray:
    """Flat histogram-cell index of every row of x (T, N) -> (T_in,); rows outside the volume are dropped.

    Bins are left-closed [e_i, e_{i+1}) on n_bins + 1 equally spaced edges from lo to hi, so a value
    equal to the last edge is outside (StatsBase convention of the reference).
    """
    idx = np.empty(x.shape, dtype=np.int64)  # (T, N)
    for d in range(x.shape[1]):
        edges = np.linspace(lo[d], hi[d], n_bins + 1)  # (n_bins + 1,)
        idx[:, d] = np.searchsorted(edges, x[:, d], side="right") - 1
    inside = ((idx >= 0) & (idx < n_bins)).all(axis=1)  # (T,)
    return np.ravel_multi_index(tuple(idx[inside].T), (n_bins,) * x.shape[1])  # (T_in,)


def dstsp_bins_ref(x_true, x_gen, n_bins: int = 30) -> float:
    """Binned D_stsp of one pair in NumPy (the twin of :func:`dstsp_bins_batch`).

    Smoothed pmf of a histogram h with C = n_bins**N cells: (h + α) / (sum(h) + α C), α = 1e-5. The KL
    is summed over occupied cells plus one closed-form term for all empty cells, so memory grows with
    T, not with C. Returns ``inf`` if x_gen is non-finite or has no point inside the volume.
    """
    x_true, x_gen = _check_pair(x_true, x_gen)
    if not np.isfinite(x_gen).all():
        return float("inf")
    n_dims = x_true.shape[1]
    lo, hi = _volume(x_true)
    keys_t, cnt_t = np.unique(_bin_index(x_true, lo, hi, n_bins), return_counts=True)  # (K_t,)
    keys_g, cnt_g = np.unique(_bin_index(x_gen, lo, hi, n_bins), return_counts=True)  # (K_g,)
    if cnt_g.size == 0:
        return float("inf")
    keys = np.union1d(keys_t, keys_g)  # (K,) occupied in either histogram
    h_t = np.zeros(keys.size)
    h_g = np.zeros(keys.size)
    h_t[np.searchsorted(keys, keys_t)] = cnt_t
    h_g[np.searchsorted(keys, keys_g)] = cnt_g
    n_cells = float(n_bins) ** n_dims
    a = LAPLACE_ALPHA
    norm_t = cnt_t.sum() + a * n_cells
    norm_g = cnt_g.sum() + a * n_cells
    p = (h_t + a) / norm_t  # (K,)
    q = (h_g + a) / norm_g  # (K,)
    kl = float(np.sum(p * (np.log(p) - np.log(q))))
    n_empty = n_cells - keys.size  # cells empty in both histograms share one value of p and q
    p0, q0 = a / norm_t, a / norm_g
    kl += n_empty * p0 * (np.log(p0) - np.log(q0))
    return float(kl)


def _cells(x: torch.Tensor, edges: torch.Tensor, n_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat cell of every row and whether it lies inside: x (F, P, N), edges (F, N, n_bins+1) -> (F, P) twice."""
    idx = torch.searchsorted(edges, x.transpose(1, 2).contiguous(), right=True) - 1  # (F, N, P)
    inside = ((idx >= 0) & (idx < n_bins)).all(dim=1)  # (F, P)
    weights = n_bins ** torch.arange(x.shape[2] - 1, -1, -1, device=x.device)  # (N,) C-order strides
    return (idx.clamp(0, n_bins - 1) * weights[None, :, None]).sum(1), inside  # (F, P), (F, P)


def dstsp_bins_batch(refs: torch.Tensor, gens: torch.Tensor, n_bins: int = 30) -> torch.Tensor:
    """Binned D_stsp of R generated series of each of F fits against that fit's reference.

    Parameters
    ----------
    refs : Tensor (F, T_ref, N), float64, finite
    gens : Tensor (F, R, T, N), float64; a rollout with a non-finite value scores ``inf``
    n_bins : int

    Returns
    -------
    Tensor (F, R)
        :func:`dstsp_bins_ref` of every pair, from the decomposition
        KL = Σ_c p log p − log q0 − Σ_{c: h_g > 0} p_c (log q_c − log q0), which touches only the cells
        the reference or the rollout occupies.
    """
    F, R, T, N = gens.shape
    block = max(1, _BIN_ENTRIES // (F * T * N))
    if R > block:  # bound the index tensors: rollouts in blocks
        return torch.cat([dstsp_bins_batch(refs, gens[:, r:r + block], n_bins) for r in range(0, R, block)], 1)
    dev = refs.device
    n_cells = float(n_bins) ** N
    if n_cells * F * R >= 2.0**62:
        raise ValueError(f"{n_bins}**{N} bins is too many for the binned D_stsp; use the GMM estimator")
    C, a = int(n_bins) ** N, LAPLACE_ALPHA
    sd = refs.std(dim=1, correction=1) if refs.shape[1] > 1 else torch.zeros_like(refs[:, 0])  # (F, N)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    lo, hi = refs.amin(1) - 0.1 * sd, refs.amax(1) + 0.1 * sd  # (F, N)
    steps = torch.arange(n_bins + 1, dtype=refs.dtype, device=dev)  # (n_bins+1,)
    edges = steps * ((hi - lo) / n_bins)[..., None] + lo[..., None]  # (F, N, n_bins+1) as np.linspace
    edges[..., -1] = hi
    fin = torch.isfinite(gens).all(-1).all(-1)  # (F, R)
    # reference histogram: sorted unique keys f*C + cell with counts
    cell_t, in_t = _cells(refs, edges, n_bins)  # (F, T_ref)
    f_idx = torch.arange(F, device=dev)
    keys_t, cnt_t = torch.unique((f_idx[:, None] * C + cell_t)[in_t], return_counts=True)  # (K,)
    cnt_t = cnt_t.to(refs.dtype)
    norm_t = in_t.sum(1).to(refs.dtype) + a * n_cells  # (F,)
    kt_f = keys_t // C
    p_occ = (cnt_t + a) / norm_t[kt_f]  # (K,)
    p0 = a / norm_t  # (F,)
    n_occ = torch.zeros(F, dtype=refs.dtype, device=dev).index_add_(0, kt_f, torch.ones_like(cnt_t))  # (F,)
    plogp = torch.zeros(F, dtype=refs.dtype, device=dev).index_add_(0, kt_f, p_occ * p_occ.log())  # (F,)
    plogp = plogp + (n_cells - n_occ) * p0 * p0.log()  # (F,) Σ_c p log p over all cells
    # generated histograms: unique keys (f*R + r)*C + cell with counts
    g = torch.where(fin[..., None, None], gens, refs[:, None, :1])  # (F, R, T, N) diverged rows parked
    cell_g, in_g = _cells(g.reshape(F, R * T, N), edges, n_bins)  # (F, R*T)
    in_g = in_g.view(F, R, T) & fin[..., None]  # (F, R, T)
    fr = torch.arange(F * R, device=dev).view(F, R, 1)  # (F, R, 1)
    keys_g, cnt_g = torch.unique((fr * C + cell_g.view(F, R, T))[in_g], return_counts=True)  # (G,)
    cnt_g = cnt_g.to(refs.dtype)
    fr_g = keys_g // C
    f_g = fr_g // R
    n_in_g = in_g.sum(-1).to(refs.dtype).view(F * R)  # (F*R,)
    norm_g = n_in_g + a * n_cells  # (F*R,)
    log_q0 = math.log(a) - norm_g.log()  # (F*R,)
    lookup = f_g * C + keys_g % C  # (G,) the reference key of each generated cell
    pos = torch.searchsorted(keys_t, lookup).clamp(max=max(len(keys_t) - 1, 0))  # (G,)
    hit = keys_t[pos] == lookup if len(keys_t) else torch.zeros_like(lookup, dtype=torch.bool)
    h_t = torch.where(hit, cnt_t[pos] if len(keys_t) else torch.zeros_like(cnt_g), torch.zeros_like(cnt_g))
    p_g = (h_t + a) / norm_t[f_g]  # (G,)
    log_q = (cnt_g + a).log() - norm_g[fr_g].log()  # (G,)
    cross = torch.zeros(F * R, dtype=refs.dtype, device=dev).index_add_(0, fr_g, p_g * (log_q - log_q0[fr_g]))
    kl = plogp.repeat_interleave(R) - log_q0 - cross  # (F*R,)
    kl = kl.view(F, R)
    bad = ~fin | (n_in_g.view(F, R) == 0)
    return torch.where(bad, torch.full_like(kl, float("inf")), kl)


def dstsp_bins(x_true, x_gen, n_bins: int = 30) -> float:
    """Binned D_stsp of one pair (T, N), (T', N) in nats; ``inf`` for a diverged or out-of-volume x_gen."""
    x_true, x_gen = _check_pair(x_true, x_gen)
    return float(dstsp_bins_batch(torch.as_tensor(x_true)[None], torch.as_tensor(x_gen)[None, None], n_bins)[0, 0])


# ---- GMM estimator ------------------------------------------------------------------------------
def gmm_reference(x_true, scaling: float = 1.0, n_samples: int = 1000, max_points: int = GMM_MAX_POINTS,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The reference mixture's centres and the Monte-Carlo samples drawn from it (shared by both GMM paths).

    Returns
    -------
    mu_t : ndarray (T_s, N)
        Centres: the first ``max_points`` rows of x_true (stsp_measure.jl uses ``X[1:min(T, max_T)]``).
    samples : ndarray (n_samples, N)
        Draws from the mixture, from ``np.random.default_rng(seed)``.
    """
    if scaling <= 0:
        raise ValueError(f"scaling must be > 0, got {scaling}")
    x_true = _as_2d(x_true, "x_true")
    if not np.isfinite(x_true).all():
        raise ValueError("x_true contains non-finite values")
    mu_t = x_true[:max_points]  # (T_s, N)
    rng = np.random.default_rng(seed)
    t_idx = rng.integers(0, mu_t.shape[0], n_samples)  # (S,)
    samples = mu_t[t_idx] + np.sqrt(scaling) * rng.standard_normal((n_samples, mu_t.shape[1]))  # (S, N)
    return mu_t, samples


def _gmm_log_density(samples: np.ndarray, centres: np.ndarray, scaling: float) -> np.ndarray:
    """log of (1/T) Σ_t exp(-||s - μ_t||² / (2 scaling)) for each sample, up to a constant shared by all GMMs.

    samples (S, N), centres (T, N) -> (S,). The dropped constant -(N/2) log(2π scaling) cancels in the KL.
    """
    c_sq = np.sum(centres**2, axis=1)  # (T,)
    chunk = max(1, _CHUNK_ENTRIES // centres.shape[0])
    out = np.empty(samples.shape[0])
    for i in range(0, samples.shape[0], chunk):
        s = samples[i : i + chunk]  # (S_c, N)
        d2 = np.sum(s**2, axis=1)[:, None] + c_sq[None, :] - 2.0 * (s @ centres.T)  # (S_c, T)
        np.maximum(d2, 0.0, out=d2)
        a = -0.5 * d2 / scaling  # (S_c, T)
        m = a.max(axis=1, keepdims=True)  # (S_c, 1)
        out[i : i + chunk] = (m + np.log(np.exp(a - m).sum(axis=1, keepdims=True)))[:, 0]
    return out - np.log(centres.shape[0])


def dstsp_gmm_ref(x_true, x_gen, scaling: float = 1.0, n_samples: int = 1000, max_points: int = GMM_MAX_POINTS,
                  seed: int = 0) -> float:
    """GMM D_stsp of one pair in NumPy (the twin of :func:`dstsp_gmm_batch`): KL in nats, ``inf`` if diverged.

    Each series contributes its first ``max_points`` rows as mixture centres; the Monte-Carlo samples
    come from :func:`gmm_reference` (may be slightly negative by Monte-Carlo error).
    """
    x_true, x_gen = _check_pair(x_true, x_gen)
    if not np.isfinite(x_gen).all():
        return float("inf")
    mu_t, samples = gmm_reference(x_true, scaling, n_samples, max_points, seed)  # (T_s, N), (S, N)
    log_p = _gmm_log_density(samples, mu_t, scaling)  # (S,)
    log_q = _gmm_log_density(samples, x_gen[:max_points], scaling)  # (S,)
    return float(np.mean(log_p - log_q))


def gmm_references(refs: list[np.ndarray], seeds: list[int], scaling: float = 1.0, n_samples: int = 1000,
                   max_points: int = GMM_MAX_POINTS, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gmm_reference` of F fits stacked on ``device``: centres (F, T_s, N), samples (F, Sm, N)."""
    ref = [gmm_reference(x, scaling, n_samples, max_points, seed=int(s)) for x, s in zip(refs, seeds)]
    return (torch.as_tensor(np.stack([m for m, _ in ref]), device=device),
            torch.as_tensor(np.stack([s for _, s in ref]), device=device))


def dstsp_gmm_batch(refs: list[np.ndarray], gens: torch.Tensor, seeds: list[int], scaling: float = 1.0,
                    n_samples: int = 1000, max_points: int = GMM_MAX_POINTS,
                    reference: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """GMM D_stsp of R generated series of each of F fits against that fit's reference.

    Parameters
    ----------
    refs : list of F ndarrays (T_ref, N), equal lengths
    gens : Tensor (F, R, T, N), float64; a rollout with a non-finite value scores ``inf``
    seeds : list of F ints
        Seed of each fit's Monte-Carlo samples (:func:`gmm_reference`).

    reference : (Tensor, Tensor), optional
        :func:`gmm_references` of refs and seeds, where the caller has them already.

    Returns
    -------
    Tensor (F, R)
        :func:`dstsp_gmm_ref` of every pair.
    """
    dev = gens.device
    budget = _GMM_ENTRIES["cuda" if dev.type == "cuda" else "cpu"]
    mu, smp = reference or gmm_references(refs, seeds, scaling, n_samples, max_points, dev)  # (F, T_s, N), (F, Sm, N)
    fin = torch.isfinite(gens).all(-1).all(-1)  # (F, R)
    cen = gens[:, :, :max_points]  # (F, R, T', N)
    cen = torch.where(fin[:, :, None, None], cen, torch.zeros((), dtype=cen.dtype, device=dev))
    log_p = log_mixture(smp, mu[:, None], scaling, budget)[:, 0]  # (F, Sm)
    log_q = log_mixture(smp, cen, scaling, budget)  # (F, R, Sm)
    kl = (log_p[:, None] - log_q).mean(-1)  # (F, R)
    return torch.where(fin, kl, torch.full_like(kl, float("inf")))


def dstsp_gmm(x_true, x_gen, scaling: float = 1.0, n_samples: int = 1000, max_points: int = GMM_MAX_POINTS,
              seed: int = 0) -> float:
    """GMM D_stsp of one pair (T, N), (T', N) in nats; ``inf`` for a diverged x_gen."""
    x_true, x_gen = _check_pair(x_true, x_gen)
    out = dstsp_gmm_batch([x_true], torch.as_tensor(x_gen)[None, None], [seed], scaling, n_samples, max_points)
    return float(out[0, 0])


# ---- dispatch -----------------------------------------------------------------------------------
def dstsp_batch(refs: list[np.ndarray], gens: torch.Tensor, seeds: list[int], n_bins: int = 30,
                scaling: float = 1.0, bins_max_dims: int = 5,
                reference: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """D_stsp (F, R) of rollouts gens (F, R, T, N) against refs (F × (T_ref, N)): bins if N <= bins_max_dims,
    else GMM (``reference``: :func:`gmm_references` of refs and seeds where the caller has them)."""
    if refs[0].shape[1] <= bins_max_dims:
        ref_t = torch.as_tensor(np.stack(refs), dtype=torch.float64, device=gens.device)  # (F, T_ref, N)
        return dstsp_bins_batch(ref_t, gens, n_bins)
    return dstsp_gmm_batch(refs, gens, seeds, scaling, reference=reference)


def dstsp_ref(x_true, x_gen, n_bins: int = 30, scaling: float = 1.0, bins_max_dims: int = 5,
              seed: int = 0) -> float:
    """NumPy twin of :func:`dstsp`."""
    x_true, x_gen = _check_pair(x_true, x_gen)
    if x_true.shape[1] <= bins_max_dims:
        return dstsp_bins_ref(x_true, x_gen, n_bins=n_bins)
    return dstsp_gmm_ref(x_true, x_gen, scaling=scaling, seed=seed)


def dstsp(x_true, x_gen, n_bins: int = 30, scaling: float = 1.0, bins_max_dims: int = 5, seed: int = 0) -> float:
    """D_stsp of one pair with the estimator chosen by dimension: bins if N <= bins_max_dims, else GMM.

    Parameters
    ----------
    x_true, x_gen : array (T, N), (T', N)
        Reference and generated series.
    n_bins : int
        Bins per dim of the binned estimator.
    scaling : float
        Component variance of the GMM estimator.
    bins_max_dims : int
        Largest N that uses the binned estimator (the reference switches at N < 6, i.e. 5).
    seed : int
        Seed of the GMM Monte-Carlo sampler.

    Returns
    -------
    float
        KL(p_true || p_gen) in nats; ``inf`` for a non-finite (diverged) x_gen.
    """
    x_true, x_gen = _check_pair(x_true, x_gen)
    return float(dstsp_batch([x_true], torch.as_tensor(x_gen)[None, None], [seed], n_bins, scaling,
                             bins_max_dims)[0, 0])

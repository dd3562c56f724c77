"""State-space divergence D_stsp: KL(p_true || p_gen) between the state-space occupations of two series.

Two estimators (DESIGN.md §1, "Generation and evaluation"):

* ``dstsp_bins`` -- N-dim histogram, ``n_bins`` bins per dim over [min - 0.1σ, max + 0.1σ] of the
  true data, Laplace smoothing α = 1e-5 on the counts, exact KL of the two smoothed pmfs.
* ``dstsp_gmm`` -- each series is a mixture of isotropic Gaussians (variance ``scaling``), one per
  time point; KL by Monte Carlo with samples drawn from the true mixture (Hershey & Olsen 2007).

A generated series with non-finite values (a diverged model), or one that never enters the binned
volume, gets ``inf``: the worst possible score, which keeps medians over rollouts meaningful.
"""
from __future__ import annotations

import numpy as np

LAPLACE_ALPHA = 1e-5
_CHUNK_ENTRIES = 4_000_000  # samples x centres per block of the GMM distance matrix (32 MB in float64)


def _as_2d(x, name: str) -> np.ndarray:
    """Convert numpy / torch input to a float64 (T, N) array (a 1-D input becomes (T, 1))."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
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


def dstsp_bins(x_true, x_gen, n_bins: int = 30) -> float:
    """Binned state-space divergence KL(p_true || p_gen).

    Parameters
    ----------
    x_true : array (T, N)
        Reference series; it alone sets the binned volume.
    x_gen : array (T', N)
        Generated series; points outside the volume are dropped.
    n_bins : int
        Bins per dimension.

    Returns
    -------
    float
        KL divergence in nats; ``inf`` if x_gen is non-finite or has no point inside the volume.

    Notes
    -----
    Smoothed pmf of a histogram h with C = n_bins**N cells: (h + α) / (sum(h) + α C), α = 1e-5.
    The KL is computed over occupied cells plus one closed-form term for all empty cells, so memory
    grows with T, not with C. A dim of zero variance uses σ = 1 to set its margin.
    """
    x_true, x_gen = _check_pair(x_true, x_gen)
    if not np.isfinite(x_gen).all():
        return float("inf")
    n_dims = x_true.shape[1]
    sigma = x_true.std(axis=0, ddof=1) if x_true.shape[0] > 1 else np.zeros(n_dims)  # (N,)
    sigma = np.where(sigma > 0, sigma, 1.0)  # (N,)
    lo = x_true.min(axis=0) - 0.1 * sigma  # (N,)
    hi = x_true.max(axis=0) + 0.1 * sigma  # (N,)

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


def subsample_index(n: int, max_points: int) -> np.ndarray | None:
    """Row indices of an even subsample of at most max_points of n rows (first and last kept); None: keep all."""
    if n <= max_points:
        return None
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def _even_subsample(x: np.ndarray, max_points: int) -> np.ndarray:
    """At most max_points rows of x (T, N), evenly spaced in time, first and last kept."""
    idx = subsample_index(x.shape[0], max_points)
    return x if idx is None else x[idx]


def gmm_reference(x_true, scaling: float = 1.0, n_samples: int = 1000, max_points: int = 10000,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The reference mixture's centres and the Monte-Carlo samples drawn from it (shared by all GMM paths).

    Returns
    -------
    mu_t : ndarray (T_s, N)
        Centres: x_true subsampled evenly to at most ``max_points`` rows.
    samples : ndarray (n_samples, N)
        Draws from the mixture, from ``np.random.default_rng(seed)``.
    """
    if scaling <= 0:
        raise ValueError(f"scaling must be > 0, got {scaling}")
    x_true = _as_2d(x_true, "x_true")
    if not np.isfinite(x_true).all():
        raise ValueError("x_true contains non-finite values")
    mu_t = _even_subsample(x_true, max_points)  # (T_s, N)
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
        out[i : i + chunk] = _logsumexp_rows(-0.5 * d2 / scaling)  # (S_c,)
    return out - np.log(centres.shape[0])


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """log Σ_j exp(a_ij) per row of a finite (R, C) array, (R,) (plain NumPy: scipy's generic version
    was most of the evaluation time)."""
    m = a.max(axis=1, keepdims=True)  # (R, 1)
    return (m + np.log(np.exp(a - m).sum(axis=1, keepdims=True)))[:, 0]


def dstsp_gmm(
    x_true, x_gen, scaling: float = 1.0, n_samples: int = 1000, max_points: int = 10000, seed: int = 0
) -> float:
    """Gaussian-mixture state-space divergence KL(p_true || p_gen) by Monte Carlo.

    Parameters
    ----------
    x_true, x_gen : array (T, N), (T', N)
        Reference and generated series; each is subsampled evenly to at most ``max_points`` rows.
    scaling : float
        Variance σ² of the isotropic Gaussian put on every time point.
    n_samples : int
        Monte-Carlo samples drawn from the true mixture.
    max_points : int
        Most time points (mixture components) kept per series.
    seed : int
        Seed of the sampler (the result is deterministic given the seed).

    Returns
    -------
    float
        Estimated KL in nats (may be slightly negative by Monte-Carlo error); ``inf`` if x_gen is
        non-finite.
    """
    return dstsp_gmm_many(x_true, [x_gen], scaling, n_samples, max_points, seed)[0]


def dstsp_gmm_many(x_true, x_gens, scaling: float = 1.0, n_samples: int = 1000, max_points: int = 10000,
                   seed: int = 0) -> list[float]:
    """:func:`dstsp_gmm` of one reference against several generated series (e.g. 100 rollouts).

    The Monte-Carlo samples and the reference mixture's density at them depend only on ``x_true`` and
    ``seed``, so they are computed once; each entry equals ``dstsp_gmm(x_true, x_gens[i], ...)``.
    """
    x_true = _as_2d(x_true, "x_true")
    mu_t, samples = gmm_reference(x_true, scaling, n_samples, max_points, seed)  # (T_s, N), (S, N)
    log_p = None
    out = []
    for x_gen in x_gens:
        x_gen = _check_pair(x_true, x_gen)[1]
        if not np.isfinite(x_gen).all():
            out.append(float("inf"))
            continue
        if log_p is None:
            log_p = _gmm_log_density(samples, mu_t, scaling)  # (S,)
        log_q = _gmm_log_density(samples, _even_subsample(x_gen, max_points), scaling)  # (S,)
        out.append(float(np.mean(log_p - log_q)))
    return out


def dstsp(x_true, x_gen, n_bins: int = 30, scaling: float = 1.0, bins_max_dims: int = 3, seed: int = 0) -> float:
    """D_stsp with the estimator chosen by dimension: bins if N <= bins_max_dims, else GMM.

    Parameters
    ----------
    x_true, x_gen : array (T, N), (T', N)
        Reference and generated series.
    n_bins : int
        Bins per dim of the binned estimator.
    scaling : float
        Component variance of the GMM estimator.
    bins_max_dims : int
        Largest N that uses the binned estimator (the reference switches at N < 6).
    seed : int
        Seed of the GMM Monte-Carlo sampler.

    Returns
    -------
    float
        KL(p_true || p_gen) in nats; ``inf`` for a non-finite (diverged) x_gen.
    """
    x_true, x_gen = _check_pair(x_true, x_gen)
    if x_true.shape[1] <= bins_max_dims:
        return dstsp_bins(x_true, x_gen, n_bins=n_bins)
    return dstsp_gmm(x_true, x_gen, scaling=scaling, seed=seed)


def dstsp_many(x_true, x_gens, n_bins: int = 30, scaling: float = 1.0, bins_max_dims: int = 3,
               seed: int = 0) -> list[float]:
    """:func:`dstsp` of one reference against each of several generated series (shared work done once)."""
    x_true = _as_2d(x_true, "x_true")
    if x_true.shape[1] <= bins_max_dims:
        return [dstsp_bins(x_true, g, n_bins=n_bins) for g in x_gens]
    return dstsp_gmm_many(x_true, x_gens, scaling=scaling, seed=seed)

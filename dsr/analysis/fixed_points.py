"""Fixed points and k-cycles of piecewise-linear latent models, found exactly by searching linear regions.

Every model of the PLRNN family is written in one form (numpy, float64, one model, no subject axis)::

    F(z) = a ⊙ z + h + V ReLU(P z + q)

with H "hidden" pre-activations u = P z + q. A linear region is a pattern d ∈ {0, 1}^H (d_i = 1 where
u_i > 0); inside it F(z) = J_d z + c_d with J_d = diag(a) + V diag(d) P and c_d = h + V diag(d) q.

SCYFI (Eisenmann et al., NeurIPS 2023): start from the region of a random state, solve
(I − J_d) z = c_d; if z lies in d it is a fixed point, else move to the region of z and solve again; random
restarts. For k-cycles the k affine maps of a region sequence are composed, the composed fixed point
z_1 is solved, its orbit z_1 … z_k computed with the k maps, and the sequence is replaced by the orbit's
regions until it is self-consistent.

====================  =========================  ==========  ============================
model                 V                          P           q
====================  =========================  ==========  ============================
PLRNN                 W (off-diagonal)           I           0
mcPLRNN               W                          I − 1/M     0
shPLRNN               W1                         W2          h2
cshPLRNN              [W1, −W1]                  [W2; W2]    [h2; 0]
dendPLRNN             W ⊗ α (per basis)          I per basis −θ
clipped_dendPLRNN     the above and −W Σα        + I         + 0
====================  =========================  ==========  ============================
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PWLMap:
    """F(z) = a ⊙ z + h + V ReLU(P z + q); a (M,), h (M,), V (M, H), P (H, M), q (H,)."""

    a: np.ndarray
    h: np.ndarray
    V: np.ndarray
    P: np.ndarray
    q: np.ndarray

    @property
    def dim(self) -> int:
        return self.a.shape[0]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Apply the map to z (..., M) → (..., M)."""
        u = z @ self.P.T + self.q  # (..., H)
        return self.a * z + self.h + np.maximum(u, 0.0) @ self.V.T

    def region(self, z: np.ndarray) -> np.ndarray:
        """Region pattern of z (..., M) → bool (..., H)."""
        return z @ self.P.T + self.q > 0

    def affine(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """J_d (M, M) and c_d (M,) of region d (H,)."""
        Vd = self.V * d  # (M, H)
        return np.diag(self.a) + Vd @ self.P, self.h + Vd @ self.q


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def pwl_from_params(kind: str, params: dict, subject: int = 0) -> PWLMap:
    """The piecewise-linear form of one model of the PLRNN family.

    Parameters
    ----------
    kind : str
        Latent model name (``PLRNN``, ``mcPLRNN``, ``shPLRNN``, ``cshPLRNN``, ``dendPLRNN``,
        ``clipped_dendPLRNN``).
    params : dict
        Latent parameters with a leading subject axis S (tensors or arrays), as in :mod:`dsr.models.latent`.
    subject : int
        Which of the S models.
    """
    p = {k: _np(v)[subject] for k, v in params.items()}
    a, h = p["A"], p["h1"]
    M = a.shape[0]
    if kind in ("shPLRNN", "cshPLRNN"):
        W1, W2, h2 = p["W1"], p["W2"], p["h2"]
        if kind == "shPLRNN":
            return PWLMap(a, h, W1, W2, h2)
        return PWLMap(a, h, np.concatenate([W1, -W1], 1), np.concatenate([W2, W2]),
                      np.concatenate([h2, np.zeros_like(h2)]))
    W = p["W"] * (1.0 - np.eye(M))  # (M, M)
    if kind == "PLRNN":
        return PWLMap(a, h, W, np.eye(M), np.zeros(M))
    if kind == "mcPLRNN":
        return PWLMap(a, h, W, np.eye(M) - 1.0 / M, np.zeros(M))
    if kind in ("dendPLRNN", "clipped_dendPLRNN"):
        alpha, theta = p["alpha"], p["theta"]  # (B,), (M, B)
        B = alpha.shape[0]
        V = (W[:, :, None] * alpha[None, None, :]).reshape(M, M * B)  # unit (n, b) at column n*B + b
        P = np.repeat(np.eye(M), B, axis=0)  # (M*B, M)
        q = -theta.reshape(M * B)
        if kind == "clipped_dendPLRNN":
            V = np.concatenate([V, -W * alpha.sum()], 1)
            P = np.concatenate([P, np.eye(M)])
            q = np.concatenate([q, np.zeros(M)])
        return PWLMap(a, h, V, P, q)
    raise ValueError(f"no piecewise-linear form for latent model {kind!r}")


@dataclass
class Cycle:
    """A fixed point (period 1) or a k-cycle of a piecewise-linear map.

    Attributes
    ----------
    points : ndarray (k, M)
        The cycle's states z_1 … z_k (z_{i+1} = F(z_i), F(z_k) = z_1).
    eigenvalues : ndarray (M,) complex
        Eigenvalues of the cycle's Jacobian J_{d_k} ⋯ J_{d_1}.
    stable : bool
        All eigenvalues inside the unit circle.
    residual : float
        max_i ‖F(z_i) − z_{i+1}‖.
    """

    points: np.ndarray
    eigenvalues: np.ndarray
    stable: bool
    residual: float

    @property
    def period(self) -> int:
        return self.points.shape[0]

    @property
    def spectral_radius(self) -> float:
        return float(np.max(np.abs(self.eigenvalues)))


def _solve_sequence(f: PWLMap, regions: list[np.ndarray]):
    """Fixed point of the composed affine maps of a region sequence: orbit (k, M) and product Jacobian."""
    M = f.dim
    Jc, cc = np.eye(M), np.zeros(M)
    for d in regions:
        J, c = f.affine(d)
        Jc, cc = J @ Jc, J @ cc + c
    try:
        z1 = np.linalg.solve(np.eye(M) - Jc, cc)  # (M,)
    except np.linalg.LinAlgError:
        return None, Jc
    if not np.isfinite(z1).all():
        return None, Jc
    orbit = [z1]
    for d in regions[:-1]:
        J, c = f.affine(d)
        orbit.append(J @ orbit[-1] + c)
    return np.stack(orbit), Jc


def _consistent(f: PWLMap, orbit: np.ndarray, regions: list[np.ndarray], tol: float) -> bool:
    u = orbit @ f.P.T + f.q  # (k, H)
    d = np.stack(regions)  # (k, H)
    return bool(np.all(np.where(d, u > -tol, u < tol)))


def _minimal_period(orbit: np.ndarray, tol: float) -> int:
    k = orbit.shape[0]
    for p in range(1, k):
        if k % p == 0 and np.allclose(orbit, np.roll(orbit, -p, axis=0), atol=tol, rtol=0):
            return p
    return k


def _canonical(orbit: np.ndarray) -> np.ndarray:
    """Rotate a cycle so that its lexicographically smallest point comes first."""
    i = min(range(len(orbit)), key=lambda j: tuple(np.round(orbit[j], 8)))
    return np.roll(orbit, -i, axis=0)


class _Collector:
    """De-duplicated cycles (as canonical rotations) with their eigenvalues."""

    def __init__(self, f: PWLMap, tol: float):
        self.f, self.tol, self.items = f, tol, []

    def add(self, orbit: np.ndarray, Jc: np.ndarray) -> None:
        if _minimal_period(orbit, self.tol * (1 + np.abs(orbit).max())) != orbit.shape[0]:
            return
        orbit = _canonical(orbit)
        scale = 1.0 + np.abs(orbit).max()
        for c in self.items:
            if np.abs(c.points - orbit).max() <= 1e-7 * scale:
                return
        nxt = self.f(orbit)  # (k, M)
        residual = float(np.linalg.norm(nxt - np.roll(orbit, -1, axis=0), axis=1).max())
        ev = np.linalg.eigvals(Jc)
        self.items.append(Cycle(orbit, ev, bool(np.max(np.abs(ev)) < 1.0), residual))


def scyfi(f: PWLMap, k: int = 1, n_restarts: int = 200, max_iter: int = 50, scale: float | None = None,
          seed: int = 0, tol: float = 1e-10, max_found: int | None = None) -> list[Cycle]:
    """All k-cycles SCYFI finds (fixed points for k = 1), each listed once.

    Parameters
    ----------
    f : PWLMap
        The map (see :func:`pwl_from_params`).
    k : int
        Period; cycles of a smaller minimal period (e.g. fixed points when k = 2) are left out.
    n_restarts : int
        The search stops after this many consecutive random restarts (outer loop) without a new cycle,
        or after 10 · n_restarts restarts in all.
    max_iter : int
        Region updates per restart (inner loop).
    scale : float, optional
        Typical size of the states; random initial states have norms log-uniform in
        [scale/100, 100·scale]. Default: from the map's size, ‖(I − diag a)⁻¹ h‖ + 1.
    seed : int
    tol : float
        Slack on the region test (u_i > −tol for d_i = 1, u_i < tol for d_i = 0).
    max_found : int, optional
        Stop once this many cycles are found.

    Returns
    -------
    list of Cycle
        Sorted by spectral radius (most stable first).
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    rng = np.random.default_rng(seed)
    if scale is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            base = np.nan_to_num(np.abs(f.h / np.where(np.abs(1 - f.a) > 1e-3, 1 - f.a, 1e-3)))
        scale = float(np.linalg.norm(base) + 1.0)
    found = _Collector(f, tol)
    since_new, total, batch = 0, 0, max(1, min(n_restarts, 256))
    while since_new < n_restarts and total < 10 * n_restarts:  # stop after n_restarts without a new cycle
        # restarts are independent: a batch of them is searched at once, then taken in order as one by one
        n = min(batch, 10 * n_restarts - total)
        starts = [_initial_regions(f, k, scale, rng, independent=(total + i + 1) % 2 == 0) for i in range(n)]
        results = _search_batch(f, np.array(starts), max_iter, tol)
        for res in results:
            total += 1
            since_new += 1
            n_before = len(found.items)
            if res is not None:
                found.add(*res)
            if len(found.items) > n_before:
                since_new = 0
            if (max_found is not None and len(found.items) >= max_found) or since_new >= n_restarts:
                return sorted(found.items, key=lambda c: c.spectral_radius)
    return sorted(found.items, key=lambda c: c.spectral_radius)


def _solve_batch(f: PWLMap, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_solve_sequence` of B region sequences (B, k, H): orbits (B, k, M) (NaN where there is none),
    product Jacobians (B, M, M) and whether each was solved (B,)."""
    B, k, _ = regions.shape
    M = f.dim
    Vd = f.V[None, None] * regions[:, :, None, :]  # (B, k, M, H)
    J = np.diag(f.a) + Vd @ f.P  # (B, k, M, M)
    c = f.h + Vd @ f.q  # (B, k, M)
    Jc, cc = np.broadcast_to(np.eye(M), (B, M, M)).copy(), np.zeros((B, M))
    for i in range(k):
        Jc, cc = J[:, i] @ Jc, (J[:, i] @ cc[..., None])[..., 0] + c[:, i]
    A = np.eye(M) - Jc  # (B, M, M)
    ok = np.ones(B, dtype=bool)
    try:
        z1 = np.linalg.solve(A, cc[..., None])[..., 0]  # (B, M)
    except np.linalg.LinAlgError:  # some singular: one at a time
        z1 = np.full((B, M), np.nan)
        for b in range(B):
            try:
                z1[b] = np.linalg.solve(A[b], cc[b])
            except np.linalg.LinAlgError:
                ok[b] = False
    ok &= np.isfinite(z1).all(1)
    orbit = np.empty((B, k, M))
    orbit[:, 0] = z1
    for i in range(k - 1):
        orbit[:, i + 1] = (J[:, i] @ orbit[:, i, :, None])[..., 0] + c[:, i]
    return orbit, Jc, ok


def _search_batch(f: PWLMap, regions: np.ndarray, max_iter: int, tol: float) -> list:
    """The inner loop of :func:`scyfi` for B restarts at once from their initial regions (B, k, H): per restart
    the (orbit, product Jacobian) it ends on, or None (no solution, a region loop, or max_iter updates)."""
    B = regions.shape[0]
    out: list = [None] * B
    live = np.arange(B)  # restarts still searching
    history = np.empty((max_iter,) + regions.shape, dtype=bool)  # (I, B, k, H) regions tried per restart
    for it in range(max_iter):
        history[it, live] = regions
        if it:  # the region sequence loops: restart
            seen = (history[:it, live] == regions[None]).all(axis=(2, 3)).any(0)  # (B',)
            live, regions = live[~seen], regions[~seen]
        if not len(live):
            break
        orbit, Jc, ok = _solve_batch(f, regions)
        live, regions, orbit, Jc = live[ok], regions[ok], orbit[ok], Jc[ok]
        u = orbit @ f.P.T + f.q  # (B', k, H)
        done = np.where(regions, u > -tol, u < tol).all(axis=(1, 2))  # (B',) self-consistent
        for j in np.flatnonzero(done):
            out[live[j]] = (orbit[j], Jc[j])
        live, regions = live[~done], f.region(orbit[~done])
        if not len(live):
            break
    return out


def _initial_regions(f: PWLMap, k: int, scale: float, rng, independent: bool) -> list[np.ndarray]:
    """k regions: those of a random orbit, or (``independent``) of k independent random states."""
    def rand():
        direction = rng.standard_normal(f.dim)
        return direction / np.linalg.norm(direction) * scale * 10 ** rng.uniform(-2, 2)

    z, regions = rand(), []
    for _ in range(k):
        regions.append(f.region(z))
        z = rand() if independent else f(z)
        if not np.isfinite(z).all():
            z = rand()
    return regions


def brute_force(f: PWLMap, k: int = 1, tol: float = 1e-10) -> list[Cycle]:
    """Every k-cycle, by solving the composed map of every sequence of k regions (2^(H k) systems).

    Only for tiny maps (tests); raises ValueError when H k > 20.
    """
    H = f.q.shape[0]
    if H * k > 20:
        raise ValueError(f"{2 ** (H * k)} region sequences: too many for brute force")
    M = f.dim
    pats = ((np.arange(2 ** H)[:, None] >> np.arange(H)) & 1).astype(bool)  # (R, H)
    Vd = f.V[None] * pats[:, None, :]  # (R, M, H)
    J = np.diag(f.a)[None] + Vd @ f.P  # (R, M, M)
    c = f.h[None] + Vd @ f.q  # (R, M)
    seqs = np.array(list(np.ndindex(*(2 ** H,) * k)), dtype=np.int64).reshape(-1, k)  # (Q, k)
    found = _Collector(f, tol)
    for chunk in np.array_split(seqs, max(1, len(seqs) // 20000)):
        Jc = np.broadcast_to(np.eye(M), (len(chunk), M, M)).copy()  # (Q, M, M)
        cc = np.zeros((len(chunk), M))  # (Q, M)
        for i in range(k):
            Ji = J[chunk[:, i]]
            Jc, cc = Ji @ Jc, np.einsum("qmn,qn->qm", Ji, cc) + c[chunk[:, i]]
        A = np.eye(M)[None] - Jc
        ok = np.abs(np.linalg.det(A)) > 1e-12
        z = np.full((len(chunk), M), np.nan)
        z[ok] = np.linalg.solve(A[ok], cc[ok][..., None])[..., 0]
        consistent = ok.copy()
        zi = z.copy()
        for i in range(k):
            u = zi @ f.P.T + f.q  # (Q, H)
            d = pats[chunk[:, i]]
            consistent &= np.all(np.where(d, u > -tol, u < tol), axis=1)
            zi = np.einsum("qmn,qn->qm", J[chunk[:, i]], zi) + c[chunk[:, i]]
        for q in np.flatnonzero(consistent):
            regions = [pats[j] for j in chunk[q]]
            orbit, Jq = _solve_sequence(f, regions)
            if orbit is not None and _consistent(f, orbit, regions, tol):
                found.add(orbit, Jq)
    return sorted(found.items, key=lambda c: c.spectral_radius)


def model_cycles(model, k: int = 1, subject: int = 0, **kw) -> list[Cycle]:
    """SCYFI on one subject of a :class:`dsr.models.convssm.ConvSSM` (keyword arguments go to :func:`scyfi`)."""
    f = pwl_from_params(model.spec.latent_model, model.latent_params, subject)
    return scyfi(f, k=k, **kw)


def summarise(cycles: list[Cycle], prefix: str = "fp") -> dict:
    """Counts and stability of a list of cycles as flat numeric features."""
    radii = [c.spectral_radius for c in cycles]
    return {f"{prefix}_count": float(len(cycles)),
            f"{prefix}_stable_count": float(sum(c.stable for c in cycles)),
            f"{prefix}_min_spectral_radius": float(min(radii)) if radii else float("nan")}

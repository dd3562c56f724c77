"""Linear-Gaussian reference models: VAR(1), a linear state-space model with the HRF decoder, a static Gaussian.

Macroscale resting-state fMRI is often described well by linear models, so every nonlinear fit is
judged beside these (Volkmann et al., NeurIPS 2024, compare against such references; the
linear-Gaussian state-space form with a haemodynamic decoder follows the convSSM's own decoder,
github humml-lab/GTF-ConvSSM). All three follow the convSSM's protocol: a small structure
(:class:`LinearSpec`) plus a flat dict of tensors with a leading subject axis S, a ``step``, a
stochastic ``generate`` in data units and ``save``/``load`` as safetensors + JSON sidecar.

* ``var1``: x_t = A x_{t-1} + c + e_t, e_t ~ N(0, Q); A, c by least squares on consecutive pairs,
  Q the residual covariance (maximum likelihood, divided by the number of pairs).
* ``lgssm``: z_t = A z_{t-1} + c + w_t, w_t ~ N(0, W);  x_t = B Σ_k h_k z_{t-k} + b + v_t,
  v_t ~ N(0, diag R). Fitted on the standardised series by least squares, not EM: z is read out by
  the identity (B = I, b = 0 in standardised units), the latent targets are the Wiener-deconvolved
  channels (as the convSSM's forcing targets), A and c by least squares on consecutive valid
  targets, W their residual covariance, R the per-channel variance of x minus the filtered targets.
  Because Wiener targets are shrunk towards zero, W is then scaled per channel so that the model's
  stationary variance of the noise-free filtered signal plus R equals the data's variance (1).
* ``gaussian``: x_t ~ N(μ, Σ) independently: the data's mean and covariance, no dynamics.

Parameters are float64 and stored in the units noted per key (``x_mean``/``x_std`` map standardised
units of the lgssm to data units).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from dsr.models.persistence import load_model, save_model
from dsr.signal.convolution import causal_conv
from dsr.signal.deconvolution import wiener_deconvolve

FORMAT_VERSION = 1
KINDS = ("var1", "lgssm", "gaussian")


@dataclass
class LinearSpec:
    """Structure of a linear reference model."""

    kind: str  # one of KINDS
    n_obs: int  # N
    tr: float = 1.0
    meta: dict = field(default_factory=dict)


class LinearModel:
    """S independent linear-Gaussian models sharing one structure.

    Keys of ``params`` (all with a leading axis S, float64):
    ``var1``: ``A`` (S, N, N), ``c`` (S, N), ``Q`` (S, N, N) — data units.
    ``lgssm``: ``A``, ``c``, ``W`` (latent, standardised units), ``R`` (S, N), ``filter`` (S, K),
    ``x_mean``, ``x_std`` (S, N).  ``gaussian``: ``mu`` (S, N), ``Sigma`` (S, N, N) — data units.
    """

    def __init__(self, spec: LinearSpec, params: dict[str, torch.Tensor]):
        if spec.kind not in KINDS:
            raise ValueError(f"linear model kind must be one of {KINDS}, got {spec.kind!r}")
        self.spec = spec
        self.params = params

    @property
    def n_subjects(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def subject(self, i: int) -> "LinearModel":
        """The i-th model alone (S = 1), sharing no storage."""
        return LinearModel(dataclasses.replace(self.spec), {k: v[i:i + 1].clone() for k, v in self.params.items()})

    # ---- dynamics -----------------------------------------------------------------------
    def step(self, z: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One step of the (latent) process: z (S, B, N) → A z + c (+ noise), (S, B, N).

        For ``gaussian`` the state carries no memory: the step returns μ (+ noise).
        """
        if self.spec.kind == "gaussian":
            out = self.params["mu"][:, None].expand_as(z).clone()  # (S, B, N)
        else:
            out = torch.einsum("sij,sbj->sbi", self.params["A"], z) + self.params["c"][:, None]  # (S, B, N)
        return out if noise is None else out + noise

    def noise_cov(self) -> torch.Tensor:
        """Covariance of the process noise (S, N, N) (Σ itself for ``gaussian``)."""
        return self.params[{"var1": "Q", "lgssm": "W", "gaussian": "Sigma"}[self.spec.kind]]

    def stationary(self) -> tuple[np.ndarray, np.ndarray]:
        """Stationary mean (S, N) and covariance (S, N, N) of the (latent) process; NaN where unstable."""
        if self.spec.kind == "gaussian":
            return self.params["mu"].numpy(), self.params["Sigma"].numpy()
        A, c, Q = self.params["A"].numpy(), self.params["c"].numpy(), self.noise_cov().numpy()
        S, N = c.shape
        mu, P = np.full((S, N), np.nan), np.full((S, N, N), np.nan)
        for s in range(S):
            if np.max(np.abs(np.linalg.eigvals(A[s]))) < 1:
                mu[s] = np.linalg.solve(np.eye(N) - A[s], c[s])
                P[s] = scipy.linalg.solve_discrete_lyapunov(A[s], Q[s])
        return mu, P

    @torch.no_grad()
    def generate(self, n: int, seed: int = 0, n_samples: int = 1, burn_in: int = 500) -> np.ndarray:
        """Stochastic samples in data units, (S, n_samples, n, N).

        The process starts from its stationary distribution (after ``burn_in`` steps from the mean
        when it is not stable); the lgssm adds observation noise after the filter.
        """
        gen = torch.Generator().manual_seed(int(seed))
        S, N, B = self.n_subjects, self.spec.n_obs, int(n_samples)
        chol = _chol(self.noise_cov())  # (S, N, N)

        def draw(steps):  # (S, B, steps, N) correlated Gaussian noise
            e = torch.randn(S, B, steps, N, generator=gen, dtype=torch.float64)
            return torch.einsum("sij,sbtj->sbti", chol, e)

        if self.spec.kind == "gaussian":
            return (self.params["mu"][:, None, None] + draw(n)).numpy()
        K = self.params["filter"].shape[1] if self.spec.kind == "lgssm" else 1
        mu, P = self.stationary()
        stable = np.isfinite(P).all(axis=(1, 2))
        z = torch.as_tensor(np.where(stable[:, None], mu, 0.0))[:, None].expand(S, B, N).clone()  # (S, B, N)
        if stable.all():
            z = z + torch.einsum("sij,sbj->sbi", _chol(torch.as_tensor(P)),
                                 torch.randn(S, B, N, generator=gen, dtype=torch.float64))
        else:
            for e in draw(burn_in).unbind(2):
                z = self.step(z, e)
        eps = draw(n + K - 1)
        out = torch.empty(S, B, n + K - 1, N, dtype=torch.float64)
        for t in range(n + K - 1):
            z = self.step(z, eps[:, :, t])
            out[:, :, t] = z
        if self.spec.kind == "var1":
            return out.numpy()
        x = causal_conv(out, self.params["filter"], mode="valid")  # (S, B, n, N)
        x = x + torch.randn(x.shape, generator=gen, dtype=torch.float64) * self.params["R"].sqrt()[:, None, None]
        return (x * self.params["x_std"][:, None, None] + self.params["x_mean"][:, None, None]).numpy()

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.safetensors) and its JSON sidecar (``.json``) atomically."""
        return save_model(path, self.params, "dsr.linear", FORMAT_VERSION, spec=dataclasses.asdict(self.spec))

    @classmethod
    def load(cls, path: str | Path) -> "LinearModel":
        """Read a model written by :meth:`save`."""
        tensors, side = load_model(path, "dsr.linear")
        return cls(LinearSpec(**side["spec"]), tensors)


# ---- fitting --------------------------------------------------------------------------------
def _chol(C: torch.Tensor) -> torch.Tensor:
    """Cholesky factors of (S, N, N) covariances, with a tiny jitter for singular ones."""
    jitter = 1e-10 * torch.diagonal(C, dim1=-2, dim2=-1).mean(-1).clamp(min=1e-12)[:, None, None]
    return torch.linalg.cholesky(C + jitter * torch.eye(C.shape[-1], dtype=C.dtype))


def _series(xs) -> list[np.ndarray]:
    out = [np.asarray(x, dtype=np.float64) for x in xs]
    for i, x in enumerate(out):
        if x.ndim != 2 or x.shape[0] < x.shape[1] + 3:
            raise ValueError(f"series {i}: need a (T, N) array with T > N + 2, got shape {x.shape}")
    if len({x.shape[1] for x in out}) != 1:
        raise ValueError("all series must have the same number of channels")
    return out


def least_squares_ar1(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A, c, residual covariance of x_t = A x_{t-1} + c + e on the pairs where both rows are finite.

    x (T, N) with NaN rows allowed → A (N, N), c (N,), Q (N, N).
    """
    prev, nxt = x[:-1], x[1:]
    ok = np.isfinite(prev).all(1) & np.isfinite(nxt).all(1)
    if ok.sum() < x.shape[1] + 2:
        raise ValueError(f"only {int(ok.sum())} usable pairs for a {x.shape[1]}-channel AR(1) fit")
    X = np.hstack([prev[ok], np.ones((ok.sum(), 1))])  # (P, N+1)
    coef, *_ = np.linalg.lstsq(X, nxt[ok], rcond=None)  # (N+1, N)
    res = nxt[ok] - X @ coef  # (P, N)
    return coef[:-1].T, coef[-1], res.T @ res / len(res)


def fit_var1(xs, tr: float = 1.0) -> LinearModel:
    """VAR(1) with Gaussian innovations per series, least squares in data units; S = len(xs)."""
    xs = _series(xs)
    fits = [least_squares_ar1(x) for x in xs]
    params = {k: torch.as_tensor(np.stack([f[i] for f in fits])) for i, k in enumerate(("A", "c", "Q"))}
    return LinearModel(LinearSpec("var1", xs[0].shape[1], float(tr)), params)


def fit_gaussian(xs, tr: float = 1.0) -> LinearModel:
    """Static Gaussian with each series' mean and covariance (maximum likelihood); S = len(xs)."""
    xs = _series(xs)
    params = {"mu": torch.as_tensor(np.stack([x.mean(0) for x in xs])),
              "Sigma": torch.as_tensor(np.stack([np.cov(x.T, bias=True) for x in xs]))}
    return LinearModel(LinearSpec("gaussian", xs[0].shape[1], float(tr)), params)


def fit_lgssm(xs, h, tr: float = 1.0, cut_l: float = 0.25, cut_r: float = 0.5,
              min_noise: float = 1e-5) -> LinearModel:
    """Linear-Gaussian state-space model with the decoder filter h (K,), per series; S = len(xs).

    See the module docstring for the estimator (least squares on Wiener-deconvolved targets, then
    a per-channel scaling of W that matches the data's variance).
    """
    xs = _series(xs)
    h = np.asarray(h, dtype=np.float64)
    K, N = len(h), xs[0].shape[1]
    out = {k: [] for k in ("A", "c", "W", "R", "x_mean", "x_std")}
    for x in xs:
        mean, std = x.mean(0), np.where(x.std(0) > 0, x.std(0), 1.0)
        xz = (x - mean) / std  # (T, N) standardised
        d = wiener_deconvolve(xz, h, cut_l, cut_r, min_noise) if K > 1 else xz.copy()  # (T, N), NaN edges
        A, c, W = least_squares_ar1(d)
        valid = np.isfinite(d).all(1)
        recon = np.full_like(xz, np.nan)
        lo = np.flatnonzero(valid)
        if K > 1 and len(lo) >= K:
            seg = d[lo[0]:lo[-1] + 1]  # (T_v, N)
            recon[lo[0] + K - 1:lo[-1] + 1] = causal_conv(torch.as_tensor(seg), torch.as_tensor(h)).numpy()
        else:
            recon = d
        res = (xz - recon)[np.isfinite(recon).all(1)]  # (T_r, N)
        R = np.clip(res.var(0), 1e-6, None) if len(res) > 1 else np.full(N, 1e-2)
        W = _match_variance(A, W, h, np.clip(1.0 - R, 1e-3, None))
        for k, v in zip(out, (A, c, W, R, mean, std)):
            out[k].append(v)
    params = {k: torch.as_tensor(np.stack(v)) for k, v in out.items()}
    params["filter"] = torch.as_tensor(np.tile(h, (len(xs), 1)))
    return LinearModel(LinearSpec("lgssm", N, float(tr)), params)


def filtered_covariance(A: np.ndarray, W: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Stationary covariance of y_t = Σ_k h_k z_{t-k} for z_t = A z_{t-1} + w_t, w ~ N(0, W); (N, N).

    Σ_{k,m} h_k h_m Cov(z_{t-k}, z_{t-m}) with Cov(z_{s+j}, z_s) = A^j P and P the stationary
    covariance (discrete Lyapunov equation P = A P Aᵀ + W). NaN if A is not stable.
    """
    if np.max(np.abs(np.linalg.eigvals(A))) >= 1:
        return np.full_like(W, np.nan)
    P = scipy.linalg.solve_discrete_lyapunov(A, W)
    K = len(h)
    lags = [P]
    for _ in range(1, K):
        lags.append(A @ lags[-1])  # C(j) = Cov(z_{t+j}, z_t) = A^j P
    out = np.zeros_like(P)
    for k in range(K):
        for m in range(K):
            j = m - k  # y uses z_{t-k} and z_{t-m}: Cov(z_{t-k}, z_{t-m}) = C(m - k)
            out += h[k] * h[m] * (lags[j] if j >= 0 else lags[-j].T)
    return out


def _match_variance(A: np.ndarray, W: np.ndarray, h: np.ndarray, target: np.ndarray, iters: int = 20) -> np.ndarray:
    """Scale W as D W D (D diagonal) so that diag of :func:`filtered_covariance` equals target (N,)."""
    if np.max(np.abs(np.linalg.eigvals(A))) >= 1:
        return W
    scale = np.ones(len(target))
    for _ in range(iters):
        var = np.diag(filtered_covariance(A, W * np.outer(scale, scale), h))
        ratio = target / np.clip(var, 1e-12, None)
        scale *= np.sqrt(ratio)
        if np.max(np.abs(ratio - 1)) < 1e-6:
            break
    return W * np.outer(scale, scale)

"""Fitted sequence baselines behind the model protocol of the convSSM and the linear references.

A :class:`FittedBaseline` is S independent fits of one baseline family (:mod:`dsr.models.baselines`)
as a structure (:class:`BaselineSpec`) plus one flat dict of tensors with a leading subject axis S,
with ``step``, a stochastic ``generate`` in data units and ``save``/``load`` (safetensors + JSON
sidecar). Fit them with :func:`dsr.training.baselines_fit.fit_baselines`.

Keys of ``params`` (all with a leading axis S):

* ``net.<key>`` — the family's own parameters (float32, see its module);
* ``x_mean``, ``x_std`` (S, N) — the training part's mean and SD: model units are standardised units;
* ``context`` (S, W, N) — the last W model inputs of the training part (the default warm-up);
* ``innovation_cov`` (S, N, N) — covariance of the one-step prediction residuals on the training part;
* ``space = "deconvolved"`` only (MINDy, Singh et al., NeuroImage 2020, is fitted to deconvolved BOLD):
  ``filter`` (S, K) the decoder taps and ``obs_var`` (S, N) the variance of the standardised series
  minus the filtered deconvolved series.

Generation warms the recurrent state up on a context (teacher-forced), then runs closed loop: each
prediction plus an innovation e_t ~ N(0, innovation_cov) is the next input, as a VAR(1) with Gaussian
innovations generates. With ``noise=False`` the innovations are left out (the deterministic
generator: the orbit of the noise-free map). In the deconvolved space the latent series is filtered
("valid" causal convolution: K − 1 extra latent steps are generated) and observation noise
N(0, obs_var) is added.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dsr.errors import ConfigError, InputError
from dsr.models.baselines import load_baseline, make_baseline, save_baseline
from dsr.models.baselines.base import SequenceModel
from dsr.signal.convolution import causal_conv
from dsr.signal.deconvolution import wiener_deconvolve

NET = "net."
SPACES = ("observed", "deconvolved")


@dataclass
class BaselineSpec:
    """Structure of S fits of one baseline family."""

    family: str  # a key of dsr.models.baselines.BASELINES
    config: dict  # the family's config overrides (make_baseline(family, **config))
    n_obs: int  # N
    tr: float = 1.0
    space: str = "observed"  # "deconvolved": fitted to Wiener-deconvolved series, decoded by params["filter"]
    wiener: dict = field(default_factory=dict)  # cut_l / cut_r / min_noise of the deconvolution
    meta: dict = field(default_factory=dict)


class FittedBaseline:
    """S fits of one sequence baseline: a :class:`BaselineSpec` and a parameter dict with a subject axis."""

    def __init__(self, spec: BaselineSpec, params: dict[str, torch.Tensor]):
        if spec.space not in SPACES:
            raise ValueError(f"baseline space must be one of {SPACES}, got {spec.space!r}")
        self.spec = spec
        self.params = params
        self.net: SequenceModel = make_baseline(spec.family, **spec.config)

    @property
    def n_subjects(self) -> int:
        return self.params["x_mean"].shape[0]

    def net_params(self, i: int) -> dict[str, torch.Tensor]:
        """The family's parameter dict of fit i (no subject axis), as ``net.step`` takes it."""
        return {k[len(NET):]: v[i] for k, v in self.params.items() if k.startswith(NET)}

    def subject(self, i: int) -> "FittedBaseline":
        """The i-th fit alone (S = 1), sharing no storage (``meta["seeds"]`` keeps its seed only)."""
        meta = dict(self.spec.meta)
        if isinstance(meta.get("seeds"), list) and len(meta["seeds"]) == self.n_subjects:
            meta["seeds"] = [meta["seeds"][i]]
        return FittedBaseline(dataclasses.replace(self.spec, meta=meta),
                              {k: v[i:i + 1].clone() for k, v in self.params.items()})

    # ---- dynamics -----------------------------------------------------------------------
    def init_state(self, batch: int) -> list[list[torch.Tensor]]:
        """Zero recurrent state of every fit for ``batch`` sequences each (one list per fit)."""
        return [self.net.init_state(self.net_params(i), batch) for i in range(self.n_subjects)]

    def step(self, state: list[list[torch.Tensor]], x_t: torch.Tensor) -> tuple[torch.Tensor, list]:
        """One step of every fit in model units: inputs x_t (S, B, N) → predictions (S, B, N), new state."""
        ys, new = [], []
        for i in range(self.n_subjects):
            y, st = self.net.step(self.net_params(i), state[i], x_t[i].to(self._dtype))  # (B, N)
            ys.append(y)
            new.append(st)
        return torch.stack(ys), new  # (S, B, N)

    @property
    def _dtype(self) -> torch.dtype:
        return next(v for k, v in self.params.items() if k.startswith(NET)).dtype

    def model_context(self, context) -> np.ndarray:
        """A context in data units, (W, N) or (S, W, N), as model inputs (S, W', N) (standardised;
        deconvolved and without its NaN edges in the deconvolved space)."""
        c = np.asarray(context, dtype=np.float64)
        if c.ndim == 2:
            c = np.broadcast_to(c, (self.n_subjects, *c.shape))
        if c.ndim != 3 or c.shape[0] != self.n_subjects or c.shape[2] != self.spec.n_obs or not np.isfinite(c).all():
            raise InputError(f"context must be a finite (W, {self.spec.n_obs}) or ({self.n_subjects}, W, "
                             f"{self.spec.n_obs}) array, got shape {c.shape}")
        c = (c - self.params["x_mean"].numpy()[:, None]) / self.params["x_std"].numpy()[:, None]  # (S, W, N)
        if self.spec.space == "observed":
            return c
        out = [wiener_deconvolve(ci, h, **self.spec.wiener) for ci, h in zip(c, self.params["filter"].numpy())]
        keep = np.all([np.isfinite(d).all(1) for d in out], axis=0)  # rows valid in every fit
        if not keep.any():
            raise InputError(f"context of {c.shape[1]} steps is too short to deconvolve with a "
                             f"{self.params['filter'].shape[1]}-tap filter")
        return np.stack([d[keep] for d in out])

    @torch.no_grad()
    def generate(self, n: int, seed: int = 0, n_samples: int = 1, context=None, noise: bool = True,
                 units: str = "data", return_latent: bool = False):
        """Closed-loop samples of every fit, (S, n_samples, n, N).

        Parameters
        ----------
        n : int
            Steps to generate; the first predicts the step after the context.
        seed : int
            Seeds the innovations and observation noise (one generator, fits in order).
        n_samples : int
            Samples per fit (they differ only by their noise).
        context : array (W, N) or (S, W, N), optional
            Warm-up in data units; default the end of each fit's training part (``params["context"]``).
        noise : bool
            Stochastic generator (innovations, and observation noise in the deconvolved space) or the
            deterministic one.
        units : "data" or "standardised"
        return_latent : bool
            Also return the model-space series at the observation times (S, n_samples, n, N), standardised
            (deconvolved space: the series before the filter; otherwise the outputs themselves).
        """
        if units not in ("data", "standardised"):
            raise ValueError(f"units must be 'data' or 'standardised', got {units!r}")
        ctx = self.params["context"].numpy() if context is None else self.model_context(context)  # (S, W, N)
        gen = torch.Generator().manual_seed(int(seed))
        S, N, B = self.n_subjects, self.spec.n_obs, int(n_samples)
        deconv = self.spec.space == "deconvolved"
        K = self.params["filter"].shape[1] if deconv else 1
        xs, zs = [], []
        for i in range(S):
            eps = None
            if noise:
                chol = _chol(self.params["innovation_cov"][i])  # (N, N)
                eps = torch.randn(B, n + K - 1, N, generator=gen, dtype=torch.float64) @ chol.T  # (B, n+K-1, N)
            z = self._rollout(i, ctx[i], n + K - 1, B, eps)  # (B, n+K-1, N) float64
            if deconv:
                x = causal_conv(z, self.params["filter"][i].double(), mode="valid")  # (B, n, N)
                if noise:
                    x = x + torch.randn(x.shape, generator=gen, dtype=torch.float64) * self.params["obs_var"][i].sqrt()
                z = z[:, K - 1:]
            else:
                x = z
            xs.append(x)
            zs.append(z)
        x, z = torch.stack(xs).numpy(), torch.stack(zs).numpy()  # (S, B, n, N)
        if units == "data":
            x = x * self.params["x_std"].numpy()[:, None, None] + self.params["x_mean"].numpy()[:, None, None]
        return (x, z) if return_latent else x

    def _rollout(self, i: int, prefix: np.ndarray, n: int, batch: int, eps: torch.Tensor | None) -> torch.Tensor:
        """Fit i: teacher-forced warm-up on prefix (W, N), then n closed-loop steps: (batch, n, N) float64."""
        p, dt = self.net_params(i), self._dtype
        xp = torch.as_tensor(prefix, dtype=dt)[None].expand(batch, -1, -1)  # (B, W, N)
        state, y = self.net.init_state(p, batch), None
        for t in range(xp.shape[1]):
            y, state = self.net.step(p, state, xp[:, t])  # (B, N)
        out = []
        for t in range(n):
            if eps is not None:
                y = y + eps[:, t].to(dt)
            out.append(y)
            y, state = self.net.step(p, state, y)
        return torch.stack(out, 1).double()  # (B, n, N)

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.safetensors) and its JSON sidecar (``.json``) atomically."""
        return save_baseline(path, self.net, self.params, spec=dataclasses.asdict(self.spec))

    @classmethod
    def load(cls, path: str | Path) -> "FittedBaseline":
        """Read a model written by :meth:`save`."""
        _, tensors, side = load_baseline(path, with_sidecar=True)
        if not isinstance(side.get("spec"), dict):
            raise InputError("a single baseline parameter set, not a fitted baseline (no 'spec'); "
                             "read it with dsr.models.baselines.load_baseline", Path(path).with_suffix(".json"))
        need = {"x_mean", "x_std", "context", "innovation_cov"}
        if side["spec"].get("space") == "deconvolved":
            need |= {"filter", "obs_var"}
        missing = sorted(need - set(tensors)) + ([] if any(k.startswith(NET) for k in tensors) else ["net.*"])
        if missing:
            raise InputError(f"fitted baseline lacks tensors {missing}; delete it to refit", path)
        try:
            return cls(BaselineSpec(**side["spec"]), tensors)
        except (TypeError, ValueError, KeyError, ConfigError) as exc:
            raise InputError(f"bad fitted-baseline sidecar ({type(exc).__name__}: {exc}); delete the model to refit",
                             Path(path).with_suffix(".json")) from None


def _chol(C: torch.Tensor) -> torch.Tensor:
    """Cholesky factor of an (N, N) covariance, with a tiny jitter for a singular one."""
    jitter = 1e-10 * torch.diagonal(C).mean().clamp(min=1e-12)
    return torch.linalg.cholesky(C + jitter * torch.eye(C.shape[-1], dtype=C.dtype))

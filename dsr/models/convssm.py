"""The convSSM: latent PLRNN → filter (HRF / Ca²⁺ kernel) → observation model.

Parameters are data: a flat dict of tensors, keys ``latent.*`` and ``obs.*``,
each with a leading subject axis S, plus the (fixed) filter taps ``filter``
of shape (S, K). The structure lives in a small dataclass; saving writes the
tensors as safetensors and the structure as a JSON sidecar.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dsr.errors import InputError
from dsr.models import latent, observation
from dsr.models.persistence import load_model, save_model
from dsr.signal.convolution import causal_conv

FORMAT_VERSION = 1
OBS_NOISE = "noise.obs"  # (S, N) SD of the observation noise per region, standardised units
LATENT_NOISE = "noise.latent"  # (S, M) SD of the latent process noise per latent dim
# optional full covariances (eval.*_noise_covariance = "full"): lower Cholesky factors L, noise = L ε; the SD keys
# above then hold the square roots of their diagonals (what the metrics record)
OBS_NOISE_CHOL = "noise.obs_chol"  # (S, N, N)
LATENT_NOISE_CHOL = "noise.latent_chol"  # (S, M, M)
# optional moment calibration of stochastic generations (eval.output_calibration = "moments"): x <- T x + b
CALIB_MAP = "calib.map"  # (S, N, N) T
CALIB_SHIFT = "calib.shift"  # (S, N) b


@dataclass
class ConvSSMSpec:
    """Structure of a convSSM (everything but the tensors)."""

    latent_model: str
    latent_dim: int  # M
    hidden_dim: int  # L
    observation: str
    n_obs: int  # N
    n_regressors: int = 0  # P
    n_inputs: int = 0  # external input channels
    tr: float = 1.0
    meta: dict = field(default_factory=dict)  # data mean/std, config, ...


class ConvSSM:
    """S independent convSSMs sharing one structure.

    Parameters
    ----------
    spec : ConvSSMSpec
        Model structure.
    params : dict of str to Tensor
        ``latent.*`` and ``obs.*`` tensors with a leading axis S.
    filt : Tensor (S, K)
        Filter taps per subject (a single tap [1.0] means no convolution).
    """

    def __init__(self, spec: ConvSSMSpec, params: dict[str, torch.Tensor], filt: torch.Tensor):
        self.spec = spec
        self.params = params
        self.filter = filt  # (S, K)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def initialise(cls, spec: ConvSSMSpec, filt: torch.Tensor, seeds: list[int], dtype=torch.float32) -> "ConvSSM":
        """Fresh parameters for len(seeds) subjects, subject i drawn from seeds[i] alone."""
        parts = []
        for seed in seeds:
            gen = torch.Generator().manual_seed(int(seed))
            lat = latent.init_params(spec.latent_model, 1, spec.latent_dim, spec.hidden_dim, gen,
                                     n_inputs=spec.n_inputs, dtype=dtype)
            obs = observation.init_params(spec.observation, 1, spec.n_obs, spec.latent_dim,
                                          spec.n_regressors, gen, dtype=dtype)
            parts.append({**{f"latent.{k}": v for k, v in lat.items()}, **{f"obs.{k}": v for k, v in obs.items()}})
        params = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        filt = filt.to(dtype)
        if filt.ndim == 1:
            filt = filt.expand(len(seeds), -1).clone()
        return cls(spec, params, filt)

    @property
    def n_subjects(self) -> int:
        return self.filter.shape[0]

    @property
    def kernel_size(self) -> int:
        return self.filter.shape[1]

    def to(self, device=None, dtype=None) -> "ConvSSM":
        """Move (and cast) all tensors in place; returns self."""
        self.params = {k: v.to(device=device, dtype=dtype) for k, v in self.params.items()}
        self.filter = self.filter.to(device=device, dtype=dtype)
        return self

    def subject(self, i: int) -> "ConvSSM":
        """The i-th model alone (S = 1), sharing no storage."""
        return ConvSSM(dataclasses.replace(self.spec), {k: v[i:i + 1].clone() for k, v in self.params.items()},
                       self.filter[i:i + 1].clone())

    # ---- parameter views ----------------------------------------------------------
    def _group(self, prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.params.items() if k.startswith(prefix + ".")}

    @property
    def latent_params(self):
        return self._group("latent")

    @property
    def obs_params(self):
        return self._group("obs")

    @property
    def n_forced(self) -> int:
        return observation.n_forced(self.spec.observation, self.spec.n_obs, self.spec.latent_dim)

    # ---- dynamics -----------------------------------------------------------------
    def step(self, z: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        """Latent step z (S, B, M) → (S, B, M)."""
        return latent.step(self.spec.latent_model, self.latent_params, z, s)

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """Analytic Jacobian (S, B, M) → (S, B, M, M)."""
        return latent.jacobian(self.spec.latent_model, self.latent_params, z)

    def targets(self, x_deconv: torch.Tensor, r_deconv: torch.Tensor | None = None) -> torch.Tensor:
        """Forcing targets in latent space (S, B, T, N) → (S, B, T, n_forced)."""
        return observation.targets(self.spec.observation, self.obs_params, x_deconv, r_deconv)

    def init_state(self, d0: torch.Tensor) -> torch.Tensor:
        """Full latent state from a target (S, B, n_forced) → (S, B, M)."""
        return observation.init_state(self.spec.observation, self.obs_params, d0, self.spec.latent_dim)

    def observe(self, z: torch.Tensor, r: torch.Tensor | None = None, conv=causal_conv) -> torch.Tensor:
        """Filter and decode a latent sequence z (S, B, T, M) → (S, B, T−K+1, N).

        ``r`` (S, B, T−K+1, P) are nuisance regressors aligned with the output. ``conv`` is the
        causal convolution (the training loop passes :func:`dsr.ops.conv.causal_conv`, which takes
        the Triton kernel on a GPU).
        """
        used = self.spec.n_obs if self.spec.observation == "identity" else self.spec.latent_dim
        zc = conv(z[..., :used], self.filter, mode="valid")  # (S, B, T-K+1, used)
        return observation.decode(self.spec.observation, self.obs_params, zc, self.spec.n_obs, r)

    @torch.no_grad()
    def generate(self, z0: torch.Tensor, n_steps: int, inputs: torch.Tensor | None = None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
        """Free-running latent trajectory from z0 (S, B, M) → (S, B, n_steps, M), z0 first.

        ``inputs`` (S, B, n_steps, P) external inputs, ``inputs[:, :, t]`` drives step t → t+1.
        ``noise`` (S, B, ≥ n_steps−1, M) standard-normal draws: with it, process noise
        σ_z ⊙ noise[:, :, t−1] (σ_z = ``params["noise.latent"]``), or L_z noise[:, :, t−1] when the model
        has the full covariance's Cholesky factor ``params["noise.latent_chol"]``, is added to step t → t+1.
        """
        out = torch.empty(*z0.shape[:2], n_steps, z0.shape[-1], dtype=z0.dtype, device=z0.device)
        sd = None if noise is None else self.noise_sd(LATENT_NOISE)
        if noise is not None and sd is None:
            raise ValueError("generate(noise=...) needs the model's 'noise.latent' parameter")
        chol = None if noise is None else self.params.get(LATENT_NOISE_CHOL)  # (S, M, M)
        z = z0
        out[:, :, 0] = z
        for t in range(1, n_steps):
            z = self.step(z, None if inputs is None else inputs[:, :, t - 1])
            if chol is not None:
                z = z + torch.einsum("smk,sbk->sbm", chol, noise[:, :, t - 1])  # (S, B, M)
            elif sd is not None:
                z = z + sd[:, None] * noise[:, :, t - 1]  # (S, B, M)
            out[:, :, t] = z
        return out

    def noise_sd(self, key: str = OBS_NOISE) -> torch.Tensor | None:
        """The noise SDs ``params[key]`` ((S, N) observation or (S, M) latent), or None if the model has none."""
        return self.params.get(key)

    def add_observation_noise(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Generated observations plus observation noise: x + σ_obs ⊙ noise (or x + L_obs noise with the full
        covariance's factor ``noise.obs_chol``), x and noise (S, B, T, N)."""
        sd = self.noise_sd(OBS_NOISE)
        if sd is None:
            raise ValueError("the model has no observation noise ('noise.obs'); estimate it first")
        chol = self.params.get(OBS_NOISE_CHOL)  # (S, N, N)
        if chol is not None:
            return x + torch.einsum("snk,sbtk->sbtn", chol.to(x.dtype), noise.to(x.dtype))  # (S, B, T, N)
        return x + sd[:, None, None] * noise  # (S, B, T, N)

    def calibrate_output(self, x: torch.Tensor) -> torch.Tensor:
        """Stochastic observations x (S, B, T, N) through the moment calibration T x + b (``calib.map``,
        ``calib.shift``; :mod:`dsr.analysis.calibration`), or x itself when the model has none."""
        T, b = self.params.get(CALIB_MAP), self.params.get(CALIB_SHIFT)
        if T is None:
            return x
        return torch.einsum("snk,sbtk->sbtn", T.to(x.dtype), x) + b.to(x.dtype)[:, None, None]  # (S, B, T, N)

    def regularisation(self) -> torch.Tensor:
        """L2 terms (S,) for the latent and observation weights, unweighted."""
        return (latent.regularisation(self.spec.latent_model, self.latent_params),
                observation.regularisation(self.spec.observation, self.obs_params))

    # ---- persistence --------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat tensor dict (parameters and filter), contiguous CPU copies."""
        out = {k: v.detach().cpu().contiguous() for k, v in self.params.items()}
        out["filter"] = self.filter.detach().cpu().contiguous()
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.safetensors) and its JSON sidecar (``.json``) atomically."""
        return save_model(path, self.state_dict(), "dsr.convssm", FORMAT_VERSION, spec=dataclasses.asdict(self.spec))

    @classmethod
    def load(cls, path: str | Path) -> "ConvSSM":
        """Read a model written by :meth:`save`."""
        path = Path(path)
        side_path = path.with_suffix(".json")
        tensors, side = load_model(path, "dsr.convssm")
        if "filter" not in tensors:
            raise InputError("cannot read the model (no 'filter' tensor); delete it and its provenance to refit", path)
        filt = tensors.pop("filter")
        try:
            spec = ConvSSMSpec(**side["spec"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"cannot read the model sidecar ({type(exc).__name__}: {exc}); delete the model "
                             "and its provenance to refit", side_path) from None
        if isinstance(spec.tr, bool) or not isinstance(spec.tr, (int, float)) or not math.isfinite(spec.tr) \
                or spec.tr <= 0:
            raise InputError(f"the model's tr must be a positive number of seconds, got {spec.tr!r}", side_path)
        return cls(spec, tensors, filt)


def as_tensor(x, dtype=torch.float32, device=None) -> torch.Tensor:
    """numpy / list → tensor helper."""
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

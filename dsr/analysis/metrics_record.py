"""The typed metrics record of one fit: what ``metrics.json`` holds and what the pipelines read.

:class:`FitMetrics` has one field per metric, each with a unit and a one-line meaning
(:func:`describe` lists them for a JSON sidecar). Metrics of generated series are computed for the
configured generator (``eval.generation``); with the stochastic generator the deterministic ones are
also kept (:attr:`FitMetrics.deterministic`) and written with the suffix ``_det`` (``dstsp_test_det``).
A metric that does not apply (no latent truth, a test part too short) is None and left out of the JSON.
Keys the record does not know (status, timing, ... added by the pipelines) ride along in ``extra``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

DET_SUFFIX = "_det"


def _m(unit: str, meaning: str, default=None):
    return field(default=default, metadata={"unit": unit, "meaning": meaning})


_NATS = "nats"
_HEL = "Hellinger distance in [0, 1]"


@dataclass
class RolloutMetrics:
    """Metrics of generated series (rollouts from perturbed initial states), mean and median over rollouts."""

    dstsp: float | None = _m(_NATS, "D_stsp of rollouts vs the whole observed series (mean over rollouts)")
    dstsp_median: float | None = _m(_NATS, "median over rollouts of D_stsp vs the whole series")
    dh: float | None = _m(_HEL, "D_H of rollouts vs the whole observed series (mean over rollouts)")
    dh_median: float | None = _m(_HEL, "median over rollouts of D_H vs the whole series")
    dstsp_train: float | None = _m(_NATS, "D_stsp vs the training part")
    dstsp_train_median: float | None = _m(_NATS, "median D_stsp vs the training part")
    dh_train: float | None = _m(_HEL, "D_H vs the training part")
    dh_train_median: float | None = _m(_HEL, "median D_H vs the training part")
    dstsp_test: float | None = _m(_NATS, "D_stsp vs the held-out test part")
    dstsp_test_median: float | None = _m(_NATS, "median D_stsp vs the test part")
    dh_test: float | None = _m(_HEL, "D_H vs the held-out test part (first steps of each rollout)")
    dh_test_median: float | None = _m(_HEL, "median D_H vs the test part")
    diverged_rollouts: float | None = _m("fraction", "rollouts with a non-finite value")
    dstsp_latent: float | None = _m(_NATS, "D_stsp of z-scored generated latents vs the z-scored latent truth")
    dstsp_latent_median: float | None = _m(_NATS, "median over rollouts of dstsp_latent")
    dh_latent: float | None = _m(_HEL, "D_H of generated latents vs the latent truth")
    dh_latent_median: float | None = _m(_HEL, "median over rollouts of dh_latent")
    dstsp_latent_units: float | None = _m(_NATS, "D_stsp of generated latents in data units vs the truth, "
                                                 "both standardised by the truth (identity read-out only)")
    dstsp_latent_units_median: float | None = _m(_NATS, "median over rollouts of dstsp_latent_units")


@dataclass
class FitMetrics(RolloutMetrics):
    """All metrics of one fit (see the module docstring)."""

    generation: str = _m("", "generator of the rollout metrics: stochastic (with noise) or deterministic",
                         "deterministic")
    pe_train: float | None = _m("squared standardised units", "PE_n, n-step prediction MSE on the training part")
    pe_test: float | None = _m("squared standardised units", "PE_n on the test part")
    pe_steps: int | None = _m("steps", "n of PE_n")
    lyapunov_max: float | None = _m("1/step", "maximal Lyapunov exponent (median over orbits)")
    lyapunov_max_per_second: float | None = _m("1/s", "maximal Lyapunov exponent divided by the TR")
    lyapunov_spectrum: list | None = _m("1/step", "Lyapunov spectrum, descending (median over orbits)")
    obs_noise_sd: list | None = _m("standardised units", "SD of the observation noise per region "
                                   "(RMS residual of decoded teacher states, training part)")
    latent_noise_sd: list | None = _m("latent units", "SD of the latent process noise per latent dim")
    deterministic: RolloutMetrics | None = None  # written with the suffix _det
    extra: dict = field(default_factory=dict)  # keys of metrics.json the record does not own

    def to_json(self) -> dict:
        """Flat dict for ``metrics.json`` (old key names; None left out; deterministic copies as ``*_det``)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("deterministic", "extra") or v is None:
                continue
            out[f.name] = v
        if self.deterministic is not None:
            for f in dataclasses.fields(RolloutMetrics):
                v = getattr(self.deterministic, f.name)
                if v is not None:
                    out[f.name + DET_SUFFIX] = v
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "FitMetrics":
        """The record back from a ``metrics.json`` dict (unknown keys kept in ``extra``)."""
        own = {f.name for f in dataclasses.fields(cls)} - {"deterministic", "extra"}
        roll = [f.name for f in dataclasses.fields(RolloutMetrics)]
        kw = {k: v for k, v in data.items() if k in own}
        det = {k: data[k + DET_SUFFIX] for k in roll if k + DET_SUFFIX in data}
        used = set(kw) | {k + DET_SUFFIX for k in det}
        return cls(**kw, deterministic=RolloutMetrics(**det) if det else None,
                   extra={k: v for k, v in data.items() if k not in used})

    def score(self, name: str) -> float:
        """A metric as a float (NaN if absent), e.g. ``score("dstsp_test")`` or ``score("dstsp_test_det")``."""
        v = self.to_json().get(name)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def describe() -> dict[str, dict[str, str]]:
    """{JSON key: {"unit", "meaning"}} of every metric the record can write (for a JSON sidecar)."""
    out = {}
    for f in dataclasses.fields(FitMetrics):
        if "meaning" in f.metadata:
            out[f.name] = {"unit": f.metadata["unit"], "meaning": f.metadata["meaning"]}
    for f in dataclasses.fields(RolloutMetrics):
        out[f.name + DET_SUFFIX] = {"unit": f.metadata["unit"],
                                    "meaning": f.metadata["meaning"] + ", deterministic generator"}
    return out

"""Comparison baselines (issue 5): next-step sequence models run closed loop.

Families, one module each, all behind :class:`~dsr.models.baselines.base.SequenceModel`
(``init_params(n_channels, seed)``, ``forward(params, x_in)``, ``init_state`` / ``step``,
``generate(params, x_prefix, n_steps)``; parameters a flat dict of real tensors, safetensors-ready):

* ``s4d`` — S4D, complex or real diagonal A, S4D-Lin / S4D-Inv init (:mod:`.s4d`);
* ``selective`` — Mamba-style selective SSM with input-dependent Δ, B, C (:mod:`.selective`);
* ``lru`` — Linear Recurrent Unit with ring init r_min / r_max (:mod:`.lru`);
* ``ssm2d`` — 2-D time × variate SSM in the spirit of Chimera (:mod:`.ssm2d`);
* ``mindy`` — MINDy rate model, to be fitted to deconvolved data (:mod:`.mindy`).

Train one with :func:`dsr.training.sequence.train_sequence_model` and generate with
:func:`dsr.training.sequence.closed_loop`; or fit S recordings at once with
:func:`dsr.training.baselines_fit.fit_baselines`, which returns a :class:`.fitted.FittedBaseline`
(the model protocol of the convSSM and the linear references: parameters with a subject axis,
``step``, stochastic ``generate`` in data units, ``save``/``load``).

Whole-recording regressors built from these layers (a selective SSM with optional START perturbation,
S4D complex / real, recursion-in-recursion) are in :mod:`.encoders`, trained by
:mod:`dsr.training.encoders`. S4D, the selective SSM and LRU take ``width_scaling="spectral"``
(:mod:`.width_scaling`) for learning rates that transfer across widths.

Two more baselines need no code here: the *SSM without convolution* is the convSSM
(:mod:`dsr.models.convssm`) with the single-tap filter ``[1.0]``, and the *convSSM with α = 0*
(no GTF) is the convSSM trained with forcing ``"none"``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from dsr.errors import ConfigError, InputError
from dsr.models.baselines.base import SequenceModel
from dsr.models.baselines.lru import LRU, LRUConfig
from dsr.models.baselines.mindy import MINDy, MINDyConfig
from dsr.models.baselines.s4d import S4D, S4DConfig
from dsr.models.baselines.selective import SelectiveConfig, SelectiveSSM
from dsr.models.baselines.ssm2d import SSM2D, SSM2DConfig
from dsr.models.persistence import load_model, save_model

BASELINES: dict[str, tuple[type, type]] = {
    "s4d": (S4D, S4DConfig),
    "selective": (SelectiveSSM, SelectiveConfig),
    "lru": (LRU, LRUConfig),
    "ssm2d": (SSM2D, SSM2DConfig),
    "mindy": (MINDy, MINDyConfig),
}


def make_baseline(name: str, **overrides) -> SequenceModel:
    """Build baseline ``name`` with its default config updated by ``overrides``.

    Examples
    --------
    >>> make_baseline("s4d", complex=False, init="inv").cfg.complex
    False
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    model_cls, cfg_cls = BASELINES[name]
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"unknown {name} option(s) {sorted(unknown)}; known: {sorted(known)}")
    return model_cls(cfg_cls(**overrides))


def save_baseline(path: str | Path, model: SequenceModel, params: dict[str, torch.Tensor], **fields) -> Path:
    """Write ``params`` to ``path`` (.safetensors) and the family, config and ``fields`` to its ``.json`` sidecar."""
    return save_model(path, params, "dsr.baseline", family=model.name, config=dataclasses.asdict(model.cfg),
                      **fields)


def load_baseline(path: str | Path, with_sidecar: bool = False):
    """Read a model written by :func:`save_baseline`: (model, params), or (model, params, sidecar)."""
    params, side = load_model(path, "dsr.baseline")
    try:
        model = make_baseline(side["family"], **side["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise InputError(f"bad baseline sidecar ({type(exc).__name__}: {exc}); delete the model to refit",
                         Path(path).with_suffix(".json")) from None
    return (model, params, side) if with_sidecar else (model, params)


__all__ = ["BASELINES", "make_baseline", "save_baseline", "load_baseline", "SequenceModel", "S4D", "S4DConfig", "SelectiveSSM",
           "SelectiveConfig", "LRU", "LRUConfig", "SSM2D", "SSM2DConfig", "MINDy", "MINDyConfig"]

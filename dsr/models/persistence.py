"""Saving and loading models: the tensors as safetensors, the structure as a JSON sidecar.

Every model in dsr is a flat dict of tensors plus a small structure. ``path`` (``.safetensors``) holds
the tensors and ``path.with_suffix(".json")`` holds ``{"format": ..., "version": ..., **fields}``;
both are written atomically, and nothing is unpickled on reading.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from dsr.errors import InputError
from dsr.io.atomic import atomic_write_bytes, write_json


def save_model(path: str | Path, tensors: dict[str, torch.Tensor], fmt: str, version: int = 1, **fields) -> Path:
    """Write ``tensors`` to ``path`` and ``{"format": fmt, "version": version, **fields}`` to its sidecar."""
    path = Path(path)
    atomic_write_bytes(path, st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
    write_json(path.with_suffix(".json"), {"format": fmt, "version": version, **fields})
    return path


def load_model(path: str | Path, fmt: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read what :func:`save_model` wrote with format ``fmt``: (tensors, sidecar).

    Raises
    ------
    InputError
        The tensors or the sidecar cannot be read, or the sidecar is of another format; the line names
        the file and says to delete the model and refit.
    """
    path = Path(path)
    try:
        tensors = st_load(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(f"cannot read the model ({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); "
                         "delete it and its provenance to refit", path) from None
    side_path = path.with_suffix(".json")
    try:
        side = json.loads(side_path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"cannot read the model sidecar ({type(exc).__name__}: {exc}); delete the model "
                         "and its provenance to refit", side_path) from None
    found = side.get("format") if isinstance(side, dict) else None
    if found != fmt:
        raise InputError(f"not a {fmt} model sidecar (format {found!r})", side_path)
    return tensors, side

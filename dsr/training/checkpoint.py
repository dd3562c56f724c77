"""Checkpoints: one safetensors file holding tensors and a JSON state blob.

A single file written atomically means a checkpoint is either the old one or
the new one, never a mix, even if the run is killed while saving.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from dsr.io.atomic import atomic_write_bytes, set_aside

log = logging.getLogger("dsr")

CHECKPOINT_NAME = "checkpoint.safetensors"


def save_checkpoint(folder: str | Path, tensors: dict[str, torch.Tensor], state: dict) -> Path:
    """Write tensors and a JSON-serialisable ``state`` to ``folder/checkpoint.safetensors``."""
    path = Path(folder) / CHECKPOINT_NAME
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(flat, metadata={"state": json.dumps(state)}))
    return path


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Read a checkpoint, or None when there is none.

    A checkpoint that cannot be read (truncated, overwritten, not safetensors) is set aside as
    ``checkpoint.safetensors.corrupt`` with one line saying so, and None is returned: the fit starts
    again from its first epoch instead of failing on every rerun.
    """
    path = Path(folder) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        state = json.loads(meta.get("state", "{}"))
        if not isinstance(state, dict):
            raise ValueError("its state is not a JSON object")
        return st_load(path.read_bytes()), state
    except Exception as exc:  # safetensors raises its own error types (SafetensorError, ...)
        aside = set_aside(path)
        log.warning("%s: corrupt checkpoint (%s: %s); set aside as %s, training restarts from the first epoch",
                    path, type(exc).__name__, " ".join(str(exc).split())[:120], aside.name)
        return None

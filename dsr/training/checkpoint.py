"""Checkpoints: one safetensors file holding tensors and a JSON state blob.

A single file written atomically means a checkpoint is either the old one or
the new one, never a mix, even if the run is killed while saving.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from dsr.io.atomic import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.safetensors"


def save_checkpoint(folder: str | Path, tensors: dict[str, torch.Tensor], state: dict) -> Path:
    """Write tensors and a JSON-serialisable ``state`` to ``folder/checkpoint.safetensors``."""
    path = Path(folder) / CHECKPOINT_NAME
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(flat, metadata={"state": json.dumps(state)}))
    return path


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Read a checkpoint, or None when there is none."""
    path = Path(folder) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    return st_load(path.read_bytes()), json.loads(meta.get("state", "{}"))

"""Hot loops: plain-PyTorch twins and the fused Triton kernels their dispatch functions pick on CUDA."""
from __future__ import annotations

import importlib
import os


def kernel_module(name: str):
    """The Triton kernel module ``dsr.ops.<name>``, or None where Triton is absent or disabled
    (``DSR_DISABLE_TRITON=1``, read at every call so a run can switch)."""
    if os.environ.get("DSR_DISABLE_TRITON", "0") not in ("", "0"):
        return None
    try:
        return importlib.import_module(f"dsr.ops.{name}")
    except ImportError:
        return None


def fused_step() -> bool:
    """Whether the training step takes the fused decoder loss and the fused guarded optimiser update
    (default); ``DSR_FUSED_STEP=0`` keeps the separate operations of session 5's step (benchmarks compare
    the two in one process; read at every call)."""
    return os.environ.get("DSR_FUSED_STEP", "1") not in ("0", "")

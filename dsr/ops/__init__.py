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

"""Shared test settings: single-threaded torch (the CI machine has 2 cores) and small data helpers."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"

torch.set_num_threads(1)
# Without CUDA the Triton kernels run on CPU tensors in Triton's interpreter; it must be chosen before Triton is
# imported, so it is set here, once, for every test module
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture
def oscillator():
    """A noisy 2-D damped-driven oscillator sampled at 1 s, convolved with the SPM HRF: (T, 2) and taps."""
    from dsr.signal.convolution import convolve_np
    from dsr.signal.filters import spm_hrf

    rng = np.random.default_rng(0)
    t = np.arange(420)
    z = np.stack([np.sin(2 * np.pi * t / 17), np.cos(2 * np.pi * t / 17)], 1)  # (T, 2)
    h = spm_hrf(1.0)
    x = convolve_np(z, h)[len(h):] + 0.01 * rng.standard_normal((len(t) - len(h), 2))
    return x, h


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

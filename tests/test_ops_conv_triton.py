"""The Triton causal-convolution kernel against its plain-PyTorch twin (outputs and gradients, float32).

Without CUDA the kernel runs on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``, set by
conftest.py before Triton is imported); with CUDA the same tests run on the GPU.
"""
import pytest
import torch

triton = pytest.importorskip("triton")

from dsr.ops import conv as conv_mod  # noqa: E402
from dsr.ops import conv_triton  # noqa: E402
from dsr.signal.convolution import causal_conv as twin  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _close(got, want, name):
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * max(scale, 1e-6), msg=lambda m: f"{name}: {m}")


# (z shape, filter shape): per-subject filters, one shared filter, M not a power of two, T over one block,
# K = 1, K = T (a single valid output)
CASES = [((3, 4, 50, 16), (3, 17)), ((2, 5, 7), (4,)), ((2, 3, 40, 5), (2, 9)), ((1, 2, 70, 3), (1, 1)),
         ((2, 1, 12, 4), (2, 12)), ((33, 4), (5,))]


@pytest.mark.parametrize("mode", ["valid", "same"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"z{c[0]}-h{c[1]}")
def test_kernel_matches_twin(case, mode):
    zshape, hshape = case
    gen = torch.Generator().manual_seed(sum(zshape) + sum(hshape))
    z = torch.randn(*zshape, generator=gen).to(DEVICE).requires_grad_(True)
    h = torch.rand(*hshape, generator=gen).to(DEVICE)
    assert conv_triton.supported(z, h, mode)
    got = conv_triton.causal_conv_triton(z, h, mode)
    want = twin(z, h, mode=mode)
    assert got.shape == want.shape
    _close(got, want, "output")
    w = torch.randn(want.shape, generator=gen).to(DEVICE)
    (g_got,) = torch.autograd.grad((got * w).sum(), [z])
    (g_want,) = torch.autograd.grad((want * w).sum(), [z])
    _close(g_got, g_want, "dL/dz")


def test_hrf_on_realistic_sizes():
    """An SPM HRF at TR 1.4 s over a batch like training's (S, B, T̃, M)."""
    h = torch.as_tensor(spm_hrf(1.4), dtype=torch.float32).expand(2, -1).contiguous().to(DEVICE)  # (2, K)
    z = torch.randn(2, 3, 60, 16, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    _close(conv_triton.causal_conv_triton(z, h), twin(z, h), "output")


def test_unsupported_calls_use_the_twin():
    z = torch.randn(2, 3, 10, 4, dtype=torch.float64)
    h = torch.rand(2, 5, dtype=torch.float64)
    assert not conv_triton.supported(z, h, "valid")  # float64
    assert not conv_triton.supported(z.float(), h.float().requires_grad_(True), "valid")  # learned filter
    assert not conv_triton.supported(z.float(), torch.rand(2, 65), "valid")  # K > 64: FFT twin
    torch.testing.assert_close(conv_triton.causal_conv_triton(z, h), twin(z, h))
    with pytest.raises(Exception, match="shorter than the filter"):
        conv_triton.causal_conv_triton(z.float()[:, :, :3], h.float())


def test_dispatch(monkeypatch):
    calls = []
    monkeypatch.setattr(conv_triton, "causal_conv_triton", lambda *a, **k: calls.append(1) or twin(*a, **k))
    z, h = torch.randn(2, 3, 20, 4, device=DEVICE), torch.rand(2, 5, device=DEVICE)
    conv_mod.causal_conv(z, h)
    assert calls == ([1] if DEVICE == "cuda" else [])  # CPU tensors take the twin
    conv_mod.causal_conv(z, h.requires_grad_(True))  # a learned filter takes the twin
    monkeypatch.setenv("DSR_DISABLE_TRITON", "1")
    conv_mod.causal_conv(z, h.detach())
    assert calls == ([1] if DEVICE == "cuda" else [])

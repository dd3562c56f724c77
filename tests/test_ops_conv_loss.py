"""The fused decoder-loss kernels (causal convolution + per-fit MSE) against their plain-PyTorch twin:
losses and gradients with respect to the latents, float32.

Without CUDA the kernels run on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``, set by
conftest.py before Triton is imported). Tolerance: relative 1e-5 (the two sum the same terms in different orders).
"""
import pytest
import torch

triton = pytest.importorskip("triton")

from dsr.ops.conv_loss import conv_mse_ref  # noqa: E402
from dsr.ops import conv_loss_triton  # noqa: E402
from dsr.ops.conv_loss_triton import conv_mse_triton, supported  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# (S, B, T, M, N, K): one tap, N < M, more outputs than one block, K = T, K > 33
@pytest.mark.parametrize("block_t", [None, 16])
@pytest.mark.parametrize("S,B,T,M,N,K", [(1, 1, 3, 1, 1, 1), (2, 3, 12, 4, 4, 5), (3, 2, 45, 6, 3, 7),
                                         (2, 2, 8, 3, 2, 8), (1, 4, 70, 16, 16, 23), (1, 2, 150, 5, 4, 40)])
def test_kernel_equals_twin(S, B, T, M, N, K, block_t, monkeypatch):
    """The kernels against the twin, at the default launch and with 16 times per program (several programs
    along time)."""
    if block_t:
        monkeypatch.setattr(conv_loss_triton, "TUNING", {w: {"BLOCK_T": block_t} for w in ("fwd", "bwd")})
    gen = torch.Generator().manual_seed(S * 100 + T)
    z = torch.randn(S, B, T, M, generator=gen).to(DEVICE)  # (S, B, T, M)
    h = torch.rand(S, K, generator=gen).to(DEVICE)  # (S, K)
    x = torch.randn(S, B, T + 1, N, generator=gen).to(DEVICE)[:, :, K:]  # a time slice, as training passes it
    w = torch.rand(S, generator=gen).to(DEVICE)  # weights on the per-fit losses, as the step's NaN mask
    zr, zk = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    assert supported(zk, h, x)
    ref, got = conv_mse_ref(zr, h, x), conv_mse_triton(zk, h, x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    (ref * w).sum().backward()
    (got * w).sum().backward()
    torch.testing.assert_close(zk.grad, zr.grad, rtol=1e-5, atol=1e-6)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    conv_mse_ref(z1, h, x).sum().backward()  # dL/dloss = expanded ones (stride 0), read in place by the kernel
    conv_mse_triton(z2, h, x).sum().backward()
    torch.testing.assert_close(z2.grad, z1.grad, rtol=1e-5, atol=1e-6)
    if N < M:
        assert torch.count_nonzero(zk.grad[..., N:]) == 0


def test_unsupported_calls_take_the_twin():
    z, h, x = torch.randn(1, 2, 6, 2, dtype=torch.float64), torch.rand(1, 3, dtype=torch.float64), \
        torch.randn(1, 2, 4, 2, dtype=torch.float64)
    assert not supported(z, h, x)
    torch.testing.assert_close(conv_mse_triton(z, h, x), conv_mse_ref(z, h, x))

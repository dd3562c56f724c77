"""causal_conv: direct vs FFT vs np.convolve, both modes, per-subject kernels, gradients."""

import numpy as np
import pytest
import torch

from dsr.errors import InputError
from dsr.signal import causal_conv, convolve_np, spm_hrf


def _ref_same(z, h):
    """Numpy reference, z (T, M): y[t] = Σ_{k<=t} h[k] z[t-k]."""
    T = z.shape[0]
    return np.stack([np.convolve(z[:, m], h)[:T] for m in range(z.shape[1])], axis=1)


def _ref(z, h, mode):
    """Reference for z (..., T, M) and h (K,)."""
    K = h.shape[0]
    flat = z.reshape(-1, *z.shape[-2:])
    out = np.stack([_ref_same(s, h) for s in flat])
    if mode == "valid":
        out = out[:, K - 1:]
    return out.reshape(*z.shape[:-2], *out.shape[-2:])


@pytest.mark.parametrize("K", [1, 5, 65, 161])
@pytest.mark.parametrize("mode", ["valid", "same"])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_shared_kernel_matches_numpy(K, mode, dtype, tol):
    rng = np.random.default_rng(K)
    z = rng.standard_normal((2, 3, 200, 4))
    h = rng.standard_normal(K)
    ref = _ref(z, h, mode)
    zt, ht = torch.tensor(z, dtype=dtype), torch.tensor(h, dtype=dtype)
    outs = {m: causal_conv(zt, ht, mode=mode, method=m) for m in ("auto", "direct", "fft")}
    for name, out in outs.items():
        assert out.dtype == dtype and out.shape == ref.shape, name
        np.testing.assert_allclose(out.numpy(), ref, rtol=tol, atol=tol * 10, err_msg=name)
    torch.testing.assert_close(outs["direct"], outs["fft"], rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("K", [1, 5, 65, 161])
@pytest.mark.parametrize("mode", ["valid", "same"])
def test_per_subject_kernels(K, mode):
    rng = np.random.default_rng(100 + K)
    S = 3
    z = rng.standard_normal((S, 2, 180, 5))
    h = rng.standard_normal((S, K))
    zt, ht = torch.tensor(z), torch.tensor(h)
    ref = np.stack([_ref(z[s], h[s], mode) for s in range(S)])
    for method in ("direct", "fft"):
        out = causal_conv(zt, ht, mode=mode, method=method)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-10, err_msg=method)
    # (S, T, M) with no middle dims
    out3 = causal_conv(zt[:, 0], ht, mode=mode)
    np.testing.assert_allclose(out3.numpy(), ref[:, 0], rtol=1e-10, atol=1e-10)


def test_valid_alignment_and_convolve_np():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((300, 3))
    h = spm_hrf(0.5)
    K = h.size
    same = convolve_np(z, h)
    np.testing.assert_allclose(same, _ref_same(z, h), atol=1e-12)
    valid = causal_conv(torch.tensor(z), torch.tensor(h), mode="valid").numpy()
    np.testing.assert_allclose(valid, same[K - 1:], atol=1e-12)  # out[j] is the response at j+K-1
    np.testing.assert_allclose(convolve_np(z[:, 0], h), same[:, 0], atol=1e-12)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("mode", ["valid", "same"])
def test_gradcheck(method, mode):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 9, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    h = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    hs = torch.randn(2, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: causal_conv(a, b, mode, method), (z, h))
    assert torch.autograd.gradcheck(lambda a, b: causal_conv(a, b, mode, method), (z, hs))


def test_errors():
    z = torch.zeros(10, 2)
    with pytest.raises(InputError, match="shorter than the filter"):
        causal_conv(z, torch.ones(11))
    assert causal_conv(z, torch.ones(11), mode="same").shape == (10, 2)
    with pytest.raises(ValueError):
        causal_conv(z, torch.ones(3), mode="full")
    with pytest.raises(ValueError):
        causal_conv(torch.zeros(3, 10, 2), torch.ones(2, 3))  # S mismatch


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    z = torch.randn(4, 300, 8)
    h = torch.tensor(spm_hrf(0.2), dtype=torch.float32)
    for method in ("direct", "fft"):
        out = causal_conv(z.cuda(), h.cuda(), method=method)
        torch.testing.assert_close(out.cpu(), causal_conv(z, h, method=method), rtol=1e-4, atol=1e-5)

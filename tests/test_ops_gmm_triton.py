"""The Triton Gaussian-mixture kernel (GMM D_stsp) against its plain-PyTorch twin, float64.

Without CUDA the kernel runs on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``, set by
conftest.py before Triton is imported); with CUDA the same tests run on the GPU.
"""
import pytest
import torch

triton = pytest.importorskip("triton")

from dsr.ops import gmm  # noqa: E402
from dsr.ops import gmm_triton  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# (F, G, Sm, T, N): blocks not filled (Sm, T not multiples of 64), several mixtures and fits, N = 16 as in
# rest_fmri, a single centre, far samples (every exponent very negative: the running maximum carries it)
@pytest.mark.parametrize("case", [(2, 3, 70, 90, 16), (1, 1, 5, 1, 7), (3, 2, 130, 200, 6), (1, 4, 64, 64, 1)])
@pytest.mark.parametrize("scaling", [1.0, 0.3])
def test_kernel_matches_twin(case, scaling):
    F, G, Sm, T, N = case
    gen = torch.Generator().manual_seed(sum(case))
    samples = torch.randn(F, Sm, N, generator=gen, dtype=torch.float64)
    centres = 2.0 * torch.randn(F, G, T, N, generator=gen, dtype=torch.float64)
    samples[:, :3] += 40.0  # far from every centre
    samples, centres = samples.to(DEVICE), centres.to(DEVICE)
    assert gmm_triton.supported(samples, centres)
    got = gmm_triton.log_mixture_triton(samples, centres, scaling)
    want = gmm.log_mixture_ref(samples, centres, scaling, budget=2**14)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-10)


def test_dispatch_takes_the_twin_on_the_cpu_and_for_float32():
    samples = torch.randn(1, 4, 3, dtype=torch.float64)
    centres = torch.randn(1, 2, 5, 3, dtype=torch.float64)
    assert not gmm_triton.supported(samples.float(), centres.float())
    torch.testing.assert_close(gmm.log_mixture(samples, centres, 1.0, 2**14),
                               gmm.log_mixture_ref(samples, centres, 1.0, 2**14))

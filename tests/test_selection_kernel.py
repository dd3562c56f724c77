"""The checkpoint score's fused free run (GTF kernel, α = 0) equals the model's own generation (float32).

Without CUDA the kernel runs on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``, set by
conftest.py before Triton is imported, as in tests/test_ops_gtf_triton.py).
"""
import pytest
import torch

pytest.importorskip("triton")

from dsr.analysis.checkpoint_score import free_run  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("kind", ["cshPLRNN", "shPLRNN"])
def test_fused_free_run_equals_generate(kind):
    spec = ConvSSMSpec(kind, 3, 20, "identity", n_obs=3, tr=0.2)
    model = ConvSSM.initialise(spec, torch.ones(1) / 1.0, [0, 1, 2]).to(DEVICE)
    with torch.no_grad():
        model.params["latent.W1"].mul_(3.0)  # a livelier map than the initialisation's
    z0 = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(0)).to(DEVICE)  # (S, B, M)
    from dsr.ops import gtf_triton

    zeros = torch.zeros(3, 2, 60, 1, device=DEVICE)
    assert gtf_triton.supported_weak(model.latent_params, z0, zeros, torch.zeros(3, device=DEVICE))  # the kernel runs
    fused = free_run(model, z0, 60, fused=True)  # (S, B, 60, M)
    plain = model.generate(z0, 60)
    assert fused.shape == plain.shape == (3, 2, 60, 3)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)

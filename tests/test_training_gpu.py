"""Training on CUDA: the CUDA-graph step equals the eager step, the NaN guard works inside the graph,
and stacked fits still equal fits alone with batches drawn on the GPU. Skipped without a GPU."""
import pytest
import torch

from dsr.config import load_config
from dsr.models.convssm import ConvSSM, ConvSSMSpec
from dsr.training.data import prepare_subject
from dsr.training.loop import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SMALL = {"epochs": 4, "batches_per_epoch": 6, "batch_size": 16, "sequence_length": 40, "sampler": "device"}


def _setup(oscillator, seeds, device="cuda", **train_over):
    x, h = oscillator
    cfg = load_config("quick", train=dict(SMALL, **train_over), model={"latent_dim": 3, "hidden_dim": 16})
    sd = prepare_subject(x, h, cfg)
    spec = ConvSSMSpec("cshPLRNN", 3, 16, "identity", n_obs=2, tr=1.0)
    model = ConvSSM.initialise(spec, torch.as_tensor(h), seeds).to(device)  # float32: the kernel's path
    return model, sd, cfg


def test_cuda_graph_step_equals_eager_step(oscillator):
    eager, sd, cfg = _setup(oscillator, [0, 1], cuda_graph=False)
    out_e = train(eager, [sd, sd], cfg.train, [0, 1])
    graphed, _, cfg_g = _setup(oscillator, [0, 1], cuda_graph=True)
    out_g = train(graphed, [sd, sd], cfg_g.train, [0, 1])
    assert out_e.status == out_g.status == ["ok", "ok"]
    for k, v in eager.params.items():
        torch.testing.assert_close(graphed.params[k], v, atol=1e-5, rtol=1e-4)
    assert [r["loss"] for r in out_g.curve] == pytest.approx([r["loss"] for r in out_e.curve], rel=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_graph_step_on_the_first_gpu_after_a_capture_on_the_second(oscillator):
    """torch.cuda.graph keeps one default capture stream per process, made on the device current at the
    first capture; a capture for cuda:0 on that cuda:1 stream recorded an empty graph (session 5's failure
    of the test above on a two-GPU machine, after the multi-GPU tests had trained on cuda:1)."""
    with torch.cuda.device(1):
        g, x = torch.cuda.CUDAGraph(), torch.zeros(4, device="cuda:1")
        with torch.cuda.graph(g):
            x.add_(1.0)
    eager, sd, cfg = _setup(oscillator, [0, 1], device="cuda:0", cuda_graph=False)
    train(eager, [sd, sd], cfg.train, [0, 1])
    graphed, _, cfg_g = _setup(oscillator, [0, 1], device="cuda:0", cuda_graph=True)
    train(graphed, [sd, sd], cfg_g.train, [0, 1])
    for k, v in eager.params.items():
        torch.testing.assert_close(graphed.params[k], v, atol=1e-5, rtol=1e-4)


def test_fused_step_equals_the_separate_operations(oscillator, monkeypatch):
    """The fused step (forcing weights in the GTF kernel, conv + MSE kernels, one guarded-RAdam kernel)
    trains like session 5's separate operations (DSR_FUSED_STEP=0), with one NaN fit in the stack."""
    runs = {}
    for fused in ("0", "1"):
        monkeypatch.setenv("DSR_FUSED_STEP", fused)
        model, sd, cfg = _setup(oscillator, [0, 1, 2])
        with torch.no_grad():
            model.params["latent.W2"][2, 0, 0] = float("nan")
        runs[fused] = (model, train(model, [sd] * 3, cfg.train, [0, 1, 2]))
    (old, out_old), (new, out_new) = runs["0"], runs["1"]
    assert out_old.status == out_new.status == ["ok", "ok", "diverged"]
    for k, v in old.params.items():
        torch.testing.assert_close(new.params[k][:2], v[:2], atol=1e-5, rtol=1e-4)
    assert [r["loss"] for r in out_new.curve if r["fit"] < 2] == \
        pytest.approx([r["loss"] for r in out_old.curve if r["fit"] < 2], rel=1e-4)


def test_nan_guard_inside_the_cuda_graph(oscillator):
    model, sd, cfg = _setup(oscillator, [0, 1], cuda_graph=True)
    with torch.no_grad():
        model.params["latent.W1"][1] = float("nan")
    out = train(model, [sd, sd], cfg.train, [0, 1])
    assert out.status == ["ok", "diverged"]
    assert torch.isfinite(model.params["latent.W2"][0]).all()


def test_stacked_equals_alone_with_gpu_batches(oscillator):
    stacked, sd, cfg = _setup(oscillator, [3, 7])
    train(stacked, [sd, sd], cfg.train, [3, 7])
    alone, _, _ = _setup(oscillator, [7])
    train(alone, [sd], cfg.train, [7])
    for k, v in alone.params.items():
        torch.testing.assert_close(stacked.params[k][1:], v, atol=1e-5, rtol=1e-4)

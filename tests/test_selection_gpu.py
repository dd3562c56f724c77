"""Checkpoint selection with the CUDA-graph step (skipped without a GPU): scoring between graph replays leaves
training bit-identical, and the restored parameters are the snapshot of the selected epoch."""
import numpy as np
import pytest
import torch

from dsr.analysis.checkpoint_score import dstsp_scorer, free_run, start_states
from dsr.config import load_config
from dsr.models.convssm import ConvSSM, ConvSSMSpec
from dsr.training.data import prepare_subject
from dsr.training.loop import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SMALL = {"epochs": 6, "batches_per_epoch": 6, "batch_size": 16, "sequence_length": 40, "sampler": "device",
         "lr_start": 1e-2, "lr_end": 1e-3}


def _setup(oscillator, seeds):
    x, h = oscillator
    cfg = load_config("quick", train=SMALL, model={"latent_dim": 3, "hidden_dim": 16})
    sd = prepare_subject(x, h, cfg)
    spec = ConvSSMSpec("cshPLRNN", 3, 16, "identity", n_obs=2, tr=1.0)
    return ConvSSM.initialise(spec, torch.as_tensor(h), seeds).to("cuda"), sd, cfg


def test_selection_with_the_graphed_step(oscillator):
    plain, sd, cfg = _setup(oscillator, [0, 1])
    train(plain, [sd, sd], cfg.train, [0, 1])
    model, _, _ = _setup(oscillator, [0, 1])
    inner = dstsp_scorer([sd, sd], [0, 1], cfg.eval)
    snaps, scores = [], []

    def scorer(m):
        snaps.append({k: v.detach().clone() for k, v in m.params.items()})
        scores.append(inner(m))
        return scores[-1]

    out = train(model, [sd, sd], cfg.replace(train={"select_every": 1}).train, [0, 1], scorer=scorer)
    for k, v in plain.params.items():
        assert torch.equal(out.last_params[k], v.cpu()), k
    for i in range(2):
        best = int(np.argmin([s[i] for s in scores]))
        assert out.selected_epoch[i] == best + 1
        for k, v in model.params.items():
            assert torch.equal(v[i], snaps[best][k][i])


def test_fused_free_run_on_the_gpu_equals_generate(oscillator):
    model, sd, _ = _setup(oscillator, [0, 1])
    z0 = start_states(model, [sd, sd])
    torch.testing.assert_close(free_run(model, z0, 100), model.generate(z0, 100), rtol=1e-4, atol=1e-4)

"""Two GPUs: kernels launch on the tensors' GPU, fits run on ``cuda:1``, and ``participant`` (local executor
and ``--stack``) uses both GPUs. Skipped without two CUDA devices."""
import json

import pandas as pd
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")]


def test_kernels_run_on_the_second_gpu():
    from dsr.models import latent
    from dsr.ops.conv import causal_conv
    from dsr.ops.gtf import forcing_weights, gtf_rollout
    from dsr.ops.gtf_shallow import gtf_rollout_shallow
    from dsr.ops.sample import gather_noisy, gather_noisy_ref

    torch.cuda.set_device(0)  # the current device is not the tensors' one
    gen = torch.Generator().manual_seed(0)
    S, B, T1, M, L = 2, 4, 12, 4, 16
    p = latent.init_params("cshPLRNN", S, M, L, gen, dtype=torch.float32)
    d = torch.randn(S, B, T1, M, generator=gen)  # (S, B, T̃+1, M)
    a, ad = forcing_weights(d, torch.full((S,), 0.2), M, "weak")
    z0 = torch.randn(S, B, M, generator=gen)  # (S, B, M)
    want = gtf_rollout_shallow(p, z0, a, ad, None, clipped=True)
    dev = torch.device("cuda:1")
    got = gtf_rollout(None, z0.to(dev), a.to(dev), ad.to(dev), None, model_kind="cshPLRNN",
                      params={k: v.to(dev) for k, v in p.items()})
    assert got.device == dev
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-5)
    z, h = torch.randn(3, 40, M, generator=gen), torch.rand(9, generator=gen)  # (R, T, M), (K,)
    torch.testing.assert_close(causal_conv(z.to(dev), h.to(dev)).cpu(), causal_conv(z, h), rtol=1e-4, atol=1e-5)
    src, starts = torch.randn(S, 50, M, generator=gen), torch.randint(0, 30, (S, B))  # (S, T, N), (S, B)
    k1, k2 = torch.tensor([1, 2]), torch.tensor([3, 4])
    torch.testing.assert_close(gather_noisy(src.to(dev), starts.to(dev), 8, k1.to(dev), k2.to(dev), 0.1).cpu(),
                               gather_noisy_ref(src, starts, 8, k1, k2, 0.1), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from dsr.config import load_config
    from dsr.simulate.bids_dataset import make_dataset

    bids_dir = tmp_path_factory.mktemp("gpus") / "ds"
    make_dataset(bids_dir, n_subjects=4, seed=4, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    cfg = load_config("quick").replace(train={"epochs": 2, "batches_per_epoch": 4},
                                       eval={"n_rollouts": 2, "lyap_steps": 60, "lyap_transient": 10,
                                             "lyap_orbits": 1})
    return bids_dir, cfg


def test_a_stacked_fit_on_the_second_gpu(cohort):
    from dsr.pipelines.fit_array import fit_many

    torch.cuda.set_device(0)
    x = torch.randn(2, 120, 3, generator=torch.Generator().manual_seed(1)).numpy()  # (S, T, N)
    _, cfg = cohort
    res = fit_many(list(x), 1.0, [cfg.replace(seed=0), cfg.replace(seed=1)], device="cuda:1")
    assert [r.status for r in res] == ["ok", "ok"] and all(r.metrics["device"] == "cuda:1" for r in res)


@pytest.mark.parametrize("how", [["--fits-per-gpu", "2"], ["--stack"]])
def test_participant_uses_both_gpus(tmp_path, cohort, how):
    from dsr.cli import main

    bids_dir, cfg = cohort
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text('[train]\nepochs = 2\nbatches_per_epoch = 4\n[eval]\nn_rollouts = 2\nlyap_steps = 60\n'
                        'lyap_transient = 10\nlyap_orbits = 1\n')
    out = tmp_path / "out"
    assert main([str(bids_dir), str(out), "participant", "--config", str(cfg_file), "--device", "cuda",
                 "--seeds", "0", "1", *how]) == 0
    status = pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False)
    assert len(status) == 8 and (status.status == "ok").all()
    devices = {json.loads(p.read_text())["device"] for p in out.rglob("*_desc-convssm_metrics.json")}
    assert devices == {"cuda:0", "cuda:1"}

"""Baselines (issue 5): shapes, serialisation, recurrent = parallel form, and each baseline learns a
noisy oscillator well enough to reproduce it in closed loop."""
import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from dsr.analysis.spectrum import dh, peak_frequencies
from dsr.errors import ConfigError
from dsr.models.baselines import BASELINES, load_baseline, make_baseline, save_baseline
from dsr.models.baselines.base import SequenceModel
from dsr.training.sequence import SequenceTrainConfig, closed_loop, train_sequence_model

PERIOD = 20

# Small models and short runs keep the file under 90 s on a loaded 2-core machine.
SMALL = {
    "s4d-complex-lin": ("s4d", dict(hidden=16, state=8, complex=True, init="lin")),
    "s4d-complex-inv": ("s4d", dict(hidden=16, state=8, complex=True, init="inv")),
    "s4d-real-lin": ("s4d", dict(hidden=16, state=8, complex=False, init="lin")),
    "s4d-real-inv": ("s4d", dict(hidden=16, state=8, complex=False, init="inv")),
    "selective": ("selective", dict(hidden=8, state=4, layers=1)),
    "lru": ("lru", dict(hidden=16, state=16)),
    "ssm2d": ("ssm2d", dict(hidden=16, state=8, layers=1)),
    "mindy": ("mindy", dict(rank=2)),
}
TRAIN = {
    "default": dict(steps=200, seq_len=48, batch_size=32, lr=1e-2, lr_end=1e-3),
    "selective": dict(steps=150, seq_len=32, batch_size=16, lr=1e-2, lr_end=1e-3),
    "ssm2d": dict(steps=300, seq_len=32, batch_size=16, lr=3e-2, lr_end=3e-3),
    "mindy": dict(steps=300, seq_len=32, batch_size=16, lr=3e-2, lr_end=3e-3),
}


def noisy_oscillator(T=400, seed=0, noise=0.05):
    """(sin, cos)(2π t / 20) + N(0, noise²): (T, 2)."""
    t = np.arange(T)
    clean = np.stack([np.sin(2 * np.pi * t / PERIOD), np.cos(2 * np.pi * t / PERIOD)], 1)
    return clean + noise * np.random.default_rng(seed).standard_normal(clean.shape)


def _model(case):
    name, opts = SMALL[case]
    return make_baseline(name, **opts)


@pytest.mark.parametrize("case", sorted(SMALL))
def test_shapes_serialisation_and_recurrent_form(case):
    model = _model(case)
    params = model.init_params(3, seed=1)
    assert all(v.dtype == torch.float32 and not v.is_complex() for v in params.values())
    # same seed, same parameters
    again = model.init_params(3, seed=1)
    assert all(torch.equal(params[k], again[k]) for k in params)
    loaded = st_load(st_save({k: v.contiguous() for k, v in params.items()}))
    assert set(loaded) == set(params) and all(torch.equal(loaded[k], params[k]) for k in params)

    x = torch.randn(2, 30, 3, generator=torch.Generator().manual_seed(0))
    y = model.forward(loaded, x)
    assert y.shape == (2, 30, 3) and torch.isfinite(y).all()
    # the training form (parallel / scan) agrees with the step-by-step recurrence
    y_rec = SequenceModel.forward(model, loaded, x)
    assert torch.allclose(y, y_rec, atol=1e-5), (y - y_rec).abs().max()
    g = model.generate(loaded, x[:, :10], 25)
    assert g.shape == (2, 25, 3) and torch.isfinite(g).all()
    # closed loop: the first generated step is the prediction after the prefix
    assert torch.allclose(g[:, 0], y[:, 9], atol=1e-5)


@pytest.mark.parametrize("case", sorted(SMALL))
def test_save_load_baseline(tmp_path, case):
    model = _model(case)
    params = model.init_params(2, seed=4)
    path = save_baseline(tmp_path / f"{case}.safetensors", model, params)
    model2, params2 = load_baseline(path)
    assert type(model2) is type(model) and model2.cfg == model.cfg
    x = torch.randn(1, 12, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(model.forward(params, x), model2.forward(params2, x))


@pytest.mark.parametrize("case", sorted(SMALL))
def test_learns_noisy_oscillator_closed_loop(case):
    """Train ~1-4 s on T = 400 steps, generate 200 steps closed loop from a 20-step prefix.

    Reached with seed 0 (D_H vs the clean continuation / dominant period / std per dim, true std 0.71):
    s4d-complex-lin 0.018 / 20 / 0.74 0.71, s4d-complex-inv 0.015 / 20 / 0.53 0.58,
    s4d-real-lin 0.010 / 20 / 0.70 0.69, s4d-real-inv 0.009 / 20 / 0.69 0.68,
    selective 0.002 / 20 / 0.57 0.57, lru 0.002 / 20 / 0.71 0.71, ssm2d 0.003 / 20 / 0.70 0.70,
    mindy 0.011 / 20 / 0.63 0.64.
    Thresholds: D_H < 0.3, period within 10 % of 20 (at 200 steps that is the exact frequency bin;
    neighbours are 18.2 and 22.2), std in [0.35, 1.05], finite. These runs are short: with other
    seeds a model occasionally lands one frequency bin off (see the report of issue 5's session).
    """
    model = _model(case)
    x = noisy_oscillator()
    cfg = SequenceTrainConfig(**TRAIN.get(case, TRAIN["default"]))
    log = []
    params = train_sequence_model(model, x, cfg, seed=0, log=log)
    assert log[-1][1] < 0.02  # noise floor 2 · 0.05² = 0.005
    gen = closed_loop(model, params, x[:20], 200)  # (200, 2)
    assert gen.shape == (200, 2) and np.isfinite(gen).all()
    t = np.arange(20, 220)
    ref = np.stack([np.sin(2 * np.pi * t / PERIOD), np.cos(2 * np.pi * t / PERIOD)], 1)
    d = dh(ref, gen)
    period = 1 / peak_frequencies(gen, dt=1.0)
    std = gen[100:].std(0)
    print(f"{case}: D_H={d:.3f} period={period} std={std}")
    assert d < 0.3
    assert np.all(np.abs(period - PERIOD) <= 0.1 * PERIOD)
    assert np.all((std > 0.35) & (std < 1.05))


def test_training_is_seeded():
    model = make_baseline("mindy")
    x = noisy_oscillator(T=100)
    cfg = SequenceTrainConfig(steps=5, seq_len=16, batch_size=4)
    a = train_sequence_model(model, x, cfg, seed=3)
    b = train_sequence_model(model, x, cfg, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_closed_loop_batched_and_errors():
    model = make_baseline("lru", hidden=8, state=4, layers=1)
    params = model.init_params(2, seed=0)
    prefix = noisy_oscillator(T=10)
    out = closed_loop(model, params, np.stack([prefix, prefix]), 7)
    assert out.shape == (2, 7, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out[0], closed_loop(model, params, prefix, 7), atol=1e-6)
    with pytest.raises(ConfigError):
        make_baseline("s4d", nonsense=1)
    with pytest.raises(ConfigError):
        make_baseline("transformer")
    with pytest.raises(ConfigError):
        make_baseline("s4d", init="legs")
    assert set(BASELINES) == {"s4d", "selective", "lru", "ssm2d", "mindy"}


def test_ssm2d_variate_mixing_paths_agree():
    from dsr.models.baselines.ssm2d import _variate_mixer, mix_variates

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 2, generator=g) * 2 - 1  # (H, Q)
    for n in (3, 12):
        M = _variate_mixer(a, n, forward=True)  # (N, N, H, Q)
        c = torch.randn(4, n, 3, 2, generator=g)  # (B, N, H, Q)
        ref = torch.zeros_like(c)  # the sequential scan along the variates
        for v in range(n):
            ref[:, v] = c[:, v] + (a * ref[:, v - 1] if v else 0)
        torch.testing.assert_close(mix_variates(M, c), ref, atol=1e-5, rtol=1e-5)
    model = make_baseline("ssm2d", hidden=4, state=2, layers=1)
    params = model.init_params(10, seed=0)  # 10 variates: the einsum path
    x = torch.randn(2, 6, 10, generator=g)
    torch.testing.assert_close(model.forward(params, x), SequenceModel.forward(model, params, x))


def test_mindy_transfer_is_sigmoid_like():
    from dsr.models.baselines.mindy import transfer

    x = torch.linspace(-5, 5, 101)
    psi = transfer(x, torch.tensor(5.0), torch.tensor(20 / 3))
    assert torch.all(psi[1:] > psi[:-1]) and psi.abs().max() < 1
    assert torch.allclose(psi, -psi.flip(0), atol=1e-6)


def _bench():
    """benchmarks/baselines.py as a module."""
    from bench_support import benchmark_module

    return benchmark_module("baselines")


def test_benchmark_shards_partition_the_jobs_and_merge(tmp_path):
    import pandas as pd

    B = _bench()
    args = B.parse_args(["--steps", "100", "--epochs", "2"])
    fake = [("seq", m, "aln", (None, f"sub-{r}"), s) for m in ("s4d", "ssm2d") for r in range(3) for s in (0, 1)]
    fake.append(("conv", "convssm", "aln", [None] * 3, None))
    parts = [B.shard(fake, f"{i}/4", args) for i in range(4)]
    assert sorted(map(id, sum(parts, []))) == sorted(map(id, fake))
    for i, part in enumerate(parts[:2]):
        rows = [{k: 1.0 for k in B.KEYS} | {"dataset": "aln", "recording": f"sub-{j}", "model": "s4d", "seed": i,
                                            "status": "ok", "device": "cpu"} for j in range(3)]
        rows[0]["dstsp"] = float("inf")
        B.write_tsv_atomic(pd.DataFrame(rows, columns=B.KEYS), tmp_path / f"rows-p{i}.tsv")
    df = B.merge([tmp_path], tmp_path)
    assert len(df) == 6 and (tmp_path / "dstsp.png").exists()
    table = (tmp_path / "table.md").read_text()
    assert "| aln | s4d | 6 | 0 | 1 [1, 1] (2 inf) |" in table

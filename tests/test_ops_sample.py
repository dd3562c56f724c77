"""Batch sampling on the device: the Triton gather+noise kernel against its twin, the counter-based
streams' statistics and independence, and DeviceBatches windows.

Without CUDA the kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``, set by conftest.py before Triton
is imported). The uniforms agree bit for bit (integer hash); the Gaussian noise to float32 rounding.
"""
import numpy as np
import pytest
import torch

from dsr.config import load_config
from dsr.ops.sample import gather_noisy, gather_noisy_ref, stream_keys, uniform
from dsr.training.data import prepare_subject
from dsr.training.device_batches import DeviceBatches

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _problem(S=3, T=50, N=4, B=5, T1=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(S, T, N, generator=g)
    src[1, :3] = float("nan")  # NaN targets stay NaN
    starts = torch.randint(0, T - T1 + 1, (S, B), generator=g)
    starts[1, 0] = 1  # a window over the NaN rows
    keys = torch.stack([stream_keys(torch.tensor([5, 6, 7][:S]), 11, k) for k in (1, 2)])  # (2, S)
    return src, starts, keys


@pytest.mark.parametrize("sigma", [0.0, 0.05, 1.0])
def test_kernel_matches_twin(sigma):
    pytest.importorskip("triton")
    from dsr.ops.sample_triton import gather_noisy_triton

    src, starts, keys = _problem()
    ref = gather_noisy_ref(src, starts, 7, keys[0], keys[1], sigma)
    out = gather_noisy_triton(src.to(DEVICE), starts.to(DEVICE), 7, keys[0].to(DEVICE), keys[1].to(DEVICE), sigma)
    out = out.cpu()
    assert torch.equal(torch.isnan(out), torch.isnan(ref)) and bool(torch.isnan(ref).any())
    torch.testing.assert_close(torch.nan_to_num(out), torch.nan_to_num(ref), atol=2e-6 * max(sigma, 1.0), rtol=0)
    if sigma == 0:
        assert torch.equal(torch.nan_to_num(out), torch.nan_to_num(ref))


def test_windows_are_the_source_rows():
    src, starts, keys = _problem()
    out = gather_noisy(src, starts, 7, keys[0], keys[1], 0.0)  # (S, B, 7, N)
    for s in range(src.shape[0]):
        for b in range(starts.shape[1]):
            st = int(starts[s, b])
            torch.testing.assert_close(out[s, b], src[s, st:st + 7], equal_nan=True)


def test_noise_is_standard_normal_and_fresh_each_step():
    src = torch.zeros(2, 300, 8)
    starts = torch.zeros(2, 64, dtype=torch.int64)
    seeds = torch.tensor([0, 1])
    draw = [gather_noisy_ref(src, starts, 300, stream_keys(seeds, c, 1), stream_keys(seeds, c, 2), 1.0)
            for c in (0, 1)]
    z = draw[0].flatten(1)  # (2, 153600)
    assert z.mean(1).abs().max() < 0.01 and (z.std(1) - 1).abs().max() < 0.01
    assert abs(float((z ** 4).mean() - 3)) < 0.1  # Gaussian kurtosis
    corr = float((draw[0] * draw[1]).mean())  # the next step draws new numbers
    assert abs(corr) < 0.01 and abs(float((z[0] * z[1]).mean())) < 0.01  # and fits draw their own


def test_uniform_in_unit_interval_and_uniform():
    u = uniform(stream_keys(torch.tensor([3, 4]), 2, 0), 200_000)  # (2, n)
    assert float(u.min()) > 0 and float(u.max()) <= 1
    hist = torch.histc(u[0], bins=10, min=0, max=1) / u.shape[1]
    assert (hist - 0.1).abs().max() < 0.005


def test_device_batches_depend_only_on_own_seed(oscillator):
    x, h = oscillator
    cfg = load_config("quick", train={"noise": 0.05})
    sd = prepare_subject(x, h, cfg)
    short = prepare_subject(x[:150], h, cfg)  # a fit with fewer valid starts shares the stack
    both = DeviceBatches([short, sd], [4, 9], 30, 6, 0.05, "cpu", torch.float32)
    alone = DeviceBatches([sd], [9], 30, 6, 0.05, "cpu", torch.float32)
    for counter in (0, 17):
        a, b = both.sample(counter), alone.sample(counter)
        torch.testing.assert_close(a.x[1:], b.x, atol=0, rtol=0)
        torch.testing.assert_close(a.d[1:], b.d, atol=0, rtol=0, equal_nan=True)
    st = np.concatenate([both.starts(c) for c in range(1000)])  # (1000 S, B) rows alternate fits
    valid = [set(short.valid_starts(30)), set(sd.valid_starts(30))]
    for row, s in zip(st, [0, 1] * 1000):
        assert set(row.tolist()) <= valid[s]
    assert set(st[1::2].ravel().tolist()) == valid[1]  # every valid start is reached

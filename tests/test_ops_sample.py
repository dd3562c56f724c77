"""Batch sampling on the device: the Triton gather+noise and stage-index kernels against their twins, the
counter-based streams' statistics and independence, and DeviceBatches windows (equal to the host computation
of session 8).

Without CUDA the kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``, set by conftest.py before Triton
is imported). The uniforms agree bit for bit (integer hash); the Gaussian noise to float32 rounding.
"""
import numpy as np
import pytest
import torch

from dsr.config import load_config
from dsr.ops.sample import gather_noisy, gather_noisy_ref, stage_index, stage_index_ref, stream_keys, uniform
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


@pytest.mark.parametrize("fast_cos", [False, True])
@pytest.mark.parametrize("sigma", [0.0, 0.05, 1.0])
def test_kernel_matches_twin(sigma, fast_cos, monkeypatch):
    """The gather against its twin; with FAST_COS (GPU only; the interpreter keeps tl.cos) the noise's
    cosine is the hardware approximation: |Δz| ≤ 5.8 · 2^-20 (√(−2 ln u) ≤ 5.8), within 1e-5 σ."""
    pytest.importorskip("triton")
    from dsr.ops import sample_triton
    from dsr.ops.sample_triton import gather_noisy_triton

    monkeypatch.setattr(sample_triton, "FAST_COS", fast_cos)
    src, starts, keys = _problem()
    ref = gather_noisy_ref(src, starts, 7, keys[0], keys[1], sigma)
    out = gather_noisy_triton(src.to(DEVICE), starts.to(DEVICE), 7, keys[0].to(DEVICE), keys[1].to(DEVICE), sigma)
    out = out.cpu()
    assert torch.equal(torch.isnan(out), torch.isnan(ref)) and bool(torch.isnan(ref).any())
    atol = (1e-5 if fast_cos and DEVICE == "cuda" else 2e-6) * max(sigma, 1.0)
    torch.testing.assert_close(torch.nan_to_num(out), torch.nan_to_num(ref), atol=atol, rtol=0)
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


def _host_index(seeds: list[int], table: np.ndarray, n_starts: np.ndarray, B: int, counter: int) -> np.ndarray:
    """Session 8's host computation of a step's window starts and noise keys (S, B + 4), Python-int counter."""
    sd = torch.tensor(seeds, dtype=torch.int64)
    u = uniform(stream_keys(sd, counter, 0), B).double().numpy()  # (S, B)
    j = np.ceil(u * n_starts[:, None]).astype(np.int64) - 1
    keys = torch.stack([stream_keys(sd, counter, k) for k in (1, 2, 3, 4)]).T  # (S, 4)
    return np.concatenate([np.take_along_axis(table, j, axis=1), keys.numpy()], 1)


def _table(S, W, seed):
    """A table (S, W) of distinct entries and n_starts (S,): 1, W, powers of two (u · n then often lands on an
    integer, where ceil matters) and random counts; entries past n_starts are never drawn, so they differ."""
    rng = np.random.default_rng(seed)
    n = rng.integers(1, W + 1, S)  # (S,)
    pow2 = 1 << (W.bit_length() - 1)
    n[::2] = pow2
    n[0], n[-1] = 1, W
    return rng.permutation(S * W).reshape(S, W), n


COUNTERS = [0, 1, 12345, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 7, 3 * 2 ** 40 + 5]


@pytest.mark.parametrize("S,B,W", [(1, 1, 1), (3, 5, 40), (37, 16, 301), (70, 61, 5000), (200, 64, 4096)])
def test_stage_index_kernel_equals_twin_and_host(S, B, W):
    pytest.importorskip("triton")
    from dsr.ops.sample_triton import stage_index_triton

    table, n = _table(S, W, S + B)
    seeds = [int(x) for x in np.random.default_rng(S).integers(0, 2 ** 40, S)]
    seeds[0] = 0
    args = [torch.tensor(seeds), None, torch.as_tensor(table), torch.as_tensor(n)]
    for c in COUNTERS:
        host = _host_index(seeds, table, n, B, c)  # (S, B + 4)
        args[1] = torch.tensor(c)
        ref = stage_index_ref(*args, B)
        out = stage_index_triton(*[a.to(DEVICE) for a in args], B).cpu()
        assert np.array_equal(ref.numpy(), host) and torch.equal(out, ref)
        assert torch.equal(stage_index_ref(args[0], torch.tensor([c]), *args[2:], B), ref)  # a (1,) counter
    assert torch.equal(stage_index(*args, B), ref)  # the dispatch


def test_tensor_counter_gives_the_keys_of_the_int_counter():
    seeds = torch.tensor([0, 3, 2 ** 35])
    for c in COUNTERS:
        for k in range(5):
            assert torch.equal(stream_keys(seeds, torch.tensor(c), k), stream_keys(seeds, c, k))


def test_device_batches_index_equals_the_host_computation(oscillator):
    x, h = oscillator
    cfg = load_config("quick", train={"noise": 0.05})
    subjects = [prepare_subject(x[:150], h, cfg), prepare_subject(x, h, cfg), prepare_subject(x[:200], h, cfg)]
    seeds = [4, 9, 2 ** 33 + 1]
    db = DeviceBatches(subjects, seeds, 30, 6, 0.05, DEVICE, torch.float32)
    starts = [sd.valid_starts(30) for sd in subjects]
    W = max(len(s) for s in starts)
    table = np.stack([np.pad(s, (0, W - len(s)), mode="edge") for s in starts])
    n = np.array([len(s) for s in starts])
    for c in [0, 5, 2 ** 32 + 3]:
        db.stage(c)
        host = _host_index(seeds, table, n, 6, c)
        assert np.array_equal(db.index().cpu().numpy(), host)
        assert np.array_equal(db.starts(c + 1), _host_index(seeds, table, n, 6, c + 1)[:, :6])
        assert np.array_equal(db.index().cpu().numpy(), host)  # starts() leaves the staged step alone
        batch = db.draw()
        st, k = torch.as_tensor(host[:, :6]), torch.as_tensor(host[:, 6:])
        ref = gather_noisy(db.x, st.to(DEVICE), 31, k[:, 0].to(DEVICE), k[:, 1].to(DEVICE), 0.05)
        assert torch.equal(batch.x, ref)

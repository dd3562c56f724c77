"""Time per GTF training step on one GPU: eager twin, autograd reference, fused Triton kernel, floors (issue 6).

    python benchmarks/gpu_step.py                       # the issue's grid on CUDA
    python benchmarks/gpu_step.py --sizes 16x50 --subjects 1 1024 --methods triton twin
    python benchmarks/gpu_step.py --cpu-smoke           # tiny sizes on CPU (Triton interpreter)

One step = forward + backward of the ``batch_loss`` work — forcing weights, forced rollout, causal
convolution with an HRF, MSE on steps with a full filter history — plus a RAdam step (``SubjectRAdam``)
for S models stacked on the leading axis, batch 16 sequences of T̃ = 200 steps each.

Methods:
    twin      ``gtf_rollout_shallow`` (plain PyTorch, hand-written backward loop; the eager path)
    autograd  ``gtf_rollout_ref`` with ``latent.step`` (PyTorch autograd through the time loop)
    triton    ``gtf_rollout_triton`` (the fused kernel, forward and backward in one launch each) and the
              Triton causal convolution (``dsr.ops.conv``); the other methods convolve with ``F.conv1d``
    floor     the same chain of T̃ dependent steps forward and T̃ backward with trivial arithmetic:
              one elementwise op per step in PyTorch (``floor_torch``) and one launch whose program runs
              the dependent loop with a load and store per step (``floor_triton``); the rest of the
              step (conv, MSE, RAdam) is the same as for the other methods.
Timing: median over ``--repeats`` steps after ``--warmup`` steps, CUDA events (perf_counter on CPU);
peak memory from ``torch.cuda.max_memory_allocated``. Prints a markdown table and writes JSON
(default ``benchmarks/results/gpu_step.json``; the CPU smoke writes ``gpu_step_cpu_smoke.json``).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "--cpu-smoke" in sys.argv:  # the Triton interpreter must be chosen before triton is imported
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from dsr.models import latent  # noqa: E402
from dsr.ops.conv import causal_conv as triton_conv  # noqa: E402
from dsr.ops.gtf import forcing_weights, gtf_rollout_ref  # noqa: E402
from dsr.ops.gtf_shallow import gtf_rollout_shallow  # noqa: E402
from dsr.signal.convolution import causal_conv  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.radam import SubjectRAdam  # noqa: E402

STEP_METHODS = ("twin", "autograd", "triton", "floor_torch", "floor_triton")
METHODS = STEP_METHODS + ("loop_triton", "loop_twin")  # loop_*: with --loop


class _FloorTorch(torch.autograd.Function):
    """T̃ dependent trivial steps forward (z ← 0.5 z + ad_t) and T̃ backward, one op each."""

    @staticmethod
    def forward(ctx, z0, ad):
        out, z = [], z0
        for t in range(1, ad.shape[2]):
            z = torch.add(ad[:, :, t], z, alpha=0.5)  # (S, B, M)
            out.append(z)
        return torch.stack(out, 2)

    @staticmethod
    def backward(ctx, gout):
        g = torch.zeros_like(gout[:, :, 0])
        gad = torch.zeros(gout.shape[0], gout.shape[1], gout.shape[2] + 1, gout.shape[3],
                          dtype=gout.dtype, device=gout.device)
        for t in range(gout.shape[2], 0, -1):
            g = torch.add(gout[:, :, t - 1], g, alpha=0.5)  # (S, B, M)
            gad[:, :, t] = g
        return g * 0.5, gad


@functools.lru_cache(maxsize=None)
def _floor_triton_fn():
    import triton
    import triton.language as tl

    @triton.jit
    def floor_kernel(x_ptr, y_ptr, B, T1, M, BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr):
        s = tl.program_id(0).to(tl.int64)
        rb = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        rm = tl.arange(0, BLOCK_M)
        mask = (rb[:, None] < B) & (rm[None, :] < M)
        base = (s * B + rb[:, None]) * T1 * M + rm[None, :]
        z = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)
        for t in range(1, T1):
            z = 0.5 * z + tl.load(x_ptr + base + t * M, mask=mask, other=0.0)
            tl.store(y_ptr + base + t * M, z, mask=mask)

    def launch(x):  # x (S, B, T̃+1, M) → y (S, B, T̃+1, M), y[:, :, 0] = 0
        S, B, T1, M = x.shape
        y = torch.zeros_like(x)
        BM = max(16, triton.next_power_of_2(M))
        floor_kernel[(S, triton.cdiv(B, 16))](x.contiguous(), y, B, T1, M, BLOCK_B=16, BLOCK_M=BM)
        return y

    class FloorTriton(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z0, ad):
            return launch(ad)[:, :, 1:]

        @staticmethod
        def backward(ctx, gout):
            g = launch(torch.nn.functional.pad(gout.flip(2), (0, 0, 1, 0)))[:, :, 1:].flip(2)  # reverse loop
            return torch.zeros_like(g[:, :, 0]), torch.nn.functional.pad(g, (0, 0, 1, 0))

    return FloorTriton.apply


def make_problem(S, B, T1, M, L, K, device, seed=0):
    """Parameters, optimiser and one fixed batch (targets, observations) for S cshPLRNNs."""
    gen = torch.Generator().manual_seed(seed)
    p = latent.init_params("cshPLRNN", S, M, L, gen)
    params = {k: v.to(device).requires_grad_(True) for k, v in p.items()}
    d = torch.randn(S, B, T1, M, generator=gen).to(device)  # (S, B, T̃+1, M) latent targets
    d[:, :, : K // 4] = float("nan")  # unreliable start, never forced
    x = torch.randn(S, B, T1 - 1, M, generator=gen).to(device)  # (S, B, T̃, N=M) observations
    taps = spm_hrf(32.0 / K)[:K]  # an SPM HRF with K taps (TR 2 s for K = 17, 1.4 s for K = 23)
    h = torch.zeros(K)
    h[: len(taps)] = torch.as_tensor(taps, dtype=torch.float32)
    h = (h / h.sum()).to(device)  # (K,)
    return params, SubjectRAdam(params), d, x, h


def make_step(method, params, opt, d, x, h, K):
    """A closure running one training step with the given rollout method."""
    S, M = d.shape[0], d.shape[3]
    alpha = torch.full((S,), 0.1, device=d.device)
    lr = torch.full((S,), 1e-3, dtype=torch.float64, device=d.device)
    active = torch.ones(S, dtype=torch.bool, device=d.device)
    if method == "triton":
        from dsr.ops.gtf_triton import gtf_rollout_triton

        roll = lambda z0, a, ad: gtf_rollout_triton(params, z0, a, ad)  # noqa: E731
    elif method == "twin":
        roll = lambda z0, a, ad: gtf_rollout_shallow(params, z0, a, ad)  # noqa: E731
    elif method == "autograd":
        step = lambda z, s: latent.step("cshPLRNN", params, z, s)  # noqa: E731
        roll = lambda z0, a, ad: gtf_rollout_ref(step, z0, a, ad)  # noqa: E731
    elif method == "floor_torch":
        roll = lambda z0, a, ad: _FloorTorch.apply(z0, ad)  # noqa: E731
    elif method == "floor_triton":
        floor = _floor_triton_fn()
        roll = lambda z0, a, ad: floor(z0, ad)  # noqa: E731
    else:
        raise ValueError(method)

    conv = triton_conv if method in ("triton", "floor_triton") else causal_conv  # kernel path: both kernels

    def one_step():
        a, ad = forcing_weights(d, alpha, M, "weak")  # (S, B, T̃+1, M)
        if method.startswith("floor"):
            ad = ad * params["A"][:, None, None, :]  # let gradients reach the parameters
        Z = roll(torch.nan_to_num(d[:, :, 0]), a, ad)  # (S, B, T̃, M)
        xhat = conv(Z, h, mode="valid")  # (S, B, T̃-K+1, M)
        loss = (xhat - x[:, :, K - 1:]).pow(2).mean(dim=(1, 2, 3)).sum()
        for p in params.values():
            p.grad = None
        loss.backward()
        opt.step(lr, active)

    return one_step


def time_method(one_step, device, warmup, repeats, max_seconds):
    """Median and all step times in ms, and peak memory in MiB (None on CPU)."""
    cuda = device.type == "cuda"
    for _ in range(warmup):
        one_step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, t_start = [], time.perf_counter()
    for _ in range(repeats):
        if cuda:
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            one_step()
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1))
        else:
            t0 = time.perf_counter()
            one_step()
            times.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - t_start > max_seconds:
            break
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return statistics.median(times), times, peak


def profile_step(one_step, device, title, steps=5):
    """Print the ten most expensive operators of ``steps`` training steps (self device time)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        one_step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            one_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"## profile {title} ({steps} steps)\n" + prof.key_averages().table(sort_by=key, row_limit=12,
                                                                            max_name_column_width=40))


def time_training_loop(S, M, L, seq_len, batch, K, device, kernel: bool, epochs=6, batches=20):
    """ms per step of dsr's own training loop (``train``: batches drawn on the device, GTF rollout,
    decoder, loss, backward, RAdam, NaN guard) for S stacked fits, with the kernel or the twin.

    Steady state: the time from the end of epoch 2 to the end of the last epoch (the loop synchronises
    once per epoch) over the steps in between, so data upload, compilation and CUDA-graph capture in
    the first epochs are left out; they are returned apart as ``setup_s`` (the first two epochs).
    """
    import numpy as np

    from dsr.config import load_config
    from dsr.models.convssm import ConvSSM, ConvSSMSpec
    from dsr.training.data import prepare_subject
    from dsr.training.loop import train

    rng = np.random.default_rng(0)
    h = spm_hrf(2.0)[:K]
    h = h / h.sum()
    x = rng.standard_normal((4 * seq_len + 4 * K, M)).cumsum(0) * 0.1  # (T, M) smooth random data
    cfg = load_config("paper", model={"latent_dim": M, "hidden_dim": L},
                      train={"epochs": epochs, "batches_per_epoch": batches, "batch_size": batch,
                             "sequence_length": seq_len, "train_fraction": 0.9})
    sd = prepare_subject(x, h, cfg)
    spec = ConvSSMSpec("cshPLRNN", M, L, "identity", n_obs=M, tr=2.0)
    old = os.environ.get("DSR_DISABLE_TRITON")
    os.environ["DSR_DISABLE_TRITON"] = "0" if kernel else "1"
    try:
        model = ConvSSM.initialise(spec, torch.as_tensor(h), list(range(S))).to(device)
        train(model, [sd] * S, cfg.train.__class__(**{**cfg.train.__dict__, "epochs": 1}), list(range(S)))  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        marks = {}
        train(model, [sd] * S, cfg.train, list(range(S)),
              progress=lambda e, n, info: marks.__setitem__(e, info["seconds"]))
        ms = (marks[epochs] - marks[2]) * 1e3 / ((epochs - 2) * batches)
        setup_s = marks[2] - 2 * batches * ms / 1e3
    finally:
        if old is None:
            os.environ.pop("DSR_DISABLE_TRITON", None)
        else:
            os.environ["DSR_DISABLE_TRITON"] = old
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return ms, peak, setup_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["3x50", "16x50", "100x1000"], help="MxL")
    ap.add_argument("--subjects", nargs="+", type=int, default=[1, 16, 256, 1024])
    ap.add_argument("--methods", nargs="+", default=list(STEP_METHODS), choices=STEP_METHODS)
    ap.add_argument("--seq-len", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--taps", type=int, default=17, help="HRF taps K (SPM HRF at TR 2 s has 17)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--max-seconds", type=float, default=20.0, help="stop repeating a cell after this long")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of each cell instead")
    ap.add_argument("--loop", action="store_true",
                    help="also time dsr's whole training loop (loop_triton / loop_twin rows)")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU (Triton interpreter)")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        args.sizes, args.subjects, args.seq_len, args.batch, args.taps = ["3x5", "4x20"], [1, 2], 12, 3, 4
        args.warmup, args.repeats = 1, 2
        device = torch.device("cpu")
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            sys.exit("gpu_step.py needs a CUDA device (or --cpu-smoke)")
        device = torch.device("cuda")
    out = args.out or ROOT / "benchmarks" / "results" / ("gpu_step_cpu_smoke.json" if args.cpu_smoke
                                                          else "gpu_step.json")
    rows = []
    for size in args.sizes:
        M, L = (int(v) for v in size.lower().split("x"))
        for S in args.subjects:
            for method in args.methods:
                row = {"M": M, "L": L, "S": S, "method": method, "batch": args.batch, "seq_len": args.seq_len}
                try:
                    params, opt, d, x, h = make_problem(S, args.batch, args.seq_len + 1, M, L, args.taps, device)
                    one_step = make_step(method, params, opt, d, x, h, args.taps)
                    if args.profile:
                        profile_step(one_step, device, f"{size} S={S} {method}")
                    med, times, peak = time_method(one_step, device, args.warmup, args.repeats, args.max_seconds)
                    row.update(ms=med, ms_per_model=med / S, n=len(times), peak_mib=peak)
                except torch.cuda.OutOfMemoryError:
                    row.update(ms=None, error="out of memory")
                except Exception as exc:  # noqa: BLE001 - record the failure, go on with the grid
                    row.update(ms=None, error=f"{type(exc).__name__}: {exc}"[:300])
                finally:
                    params = opt = d = x = h = one_step = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                rows.append(row)
                print(json.dumps(row), flush=True)
            if args.loop:
                for kernel in (True, False):
                    row = {"M": M, "L": L, "S": S, "method": "loop_triton" if kernel else "loop_twin",
                           "batch": args.batch, "seq_len": args.seq_len}
                    try:
                        ms, peak, setup = time_training_loop(S, M, L, args.seq_len, args.batch, args.taps, device,
                                                             kernel)
                        row.update(ms=ms, ms_per_model=ms / S, peak_mib=peak, setup_s=setup)
                    except torch.cuda.OutOfMemoryError:
                        row.update(ms=None, error="out of memory")
                    except Exception as exc:  # noqa: BLE001
                        row.update(ms=None, error=f"{type(exc).__name__}: {exc}"[:300])
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(table(rows))
    meta = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "triton": _triton_version(), "warmup": args.warmup,
            "repeats": args.repeats, "taps": args.taps, "cpu_smoke": args.cpu_smoke}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    tmp.replace(out)
    print(f"wrote {out}")


def _triton_version():
    try:
        import triton

        return triton.__version__
    except ImportError:
        return None


def table(rows):
    """Markdown table: one line per (M, L, S), ms per step for each method, peak MiB."""
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    head = "| M | L | S | " + " | ".join(f"{m} ms" for m in methods) + " | " + \
        " | ".join(f"{m} MiB" for m in methods) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(methods))]
    keys = sorted({(r["M"], r["L"], r["S"]) for r in rows}, key=lambda k: (k[0] * k[1], k[2]))
    for key in keys:
        cell = {r["method"]: r for r in rows if (r["M"], r["L"], r["S"]) == key}

        def fmt(m, field):
            r = cell.get(m)
            if r is None:
                return ""
            if r.get("ms") is None:
                return "OOM" if "memory" in r.get("error", "") else "err"
            v = r.get(field)
            return "–" if v is None else f"{v:.3g}"

        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(fmt(m, "ms") for m in methods) + " | "
                     + " | ".join(fmt(m, "peak_mib") for m in methods) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Training step time against the hardware's limits (issue 18, item 3), every path in one run.

    python benchmarks/step_limit.py --out benchmarks/results/step_limit.json
    python benchmarks/step_limit.py --cpu-smoke --out /tmp/step_limit_smoke.json   # tiny, Triton interpreter

Cases: one model at (M, L) = (16, 50), B = 16, T̃ = 200, K = 17 (SPM HRF at TR 2 s; the issue-6 grid),
and S = 1020 stacked fits with ``benchmarks/lemon_scale.py``'s settings (``rest_fmri``: M = N = 16,
L = 50, B = 16, T̃ = 60, K = 23 at TR 1.4 s). Paths, ms per step:

    plain            plain PyTorch, eager: autograd through the time loop, conv1d decoder, per-tensor RAdam
                     (``benchmarks/gpu_step.py``'s "autograd" step on a fixed batch)
    session5         dsr's ``train()`` as of session 5: fused GTF and conv kernels, separate loss ops,
                     per-tensor RAdam and NaN guard (``DSR_FUSED_STEP=0``), one CUDA graph per step
    fused            ``train()`` as of session 6: conv + MSE one kernel each way, RAdam + NaN guard + bookkeeping
                     one kernel for the whole stack, one CUDA graph per step; the GTF backward one fused loop
                     (``DSR_GTF_BACKWARD=fused``)
    split            the same with session 7's split GTF backward (the default now): the forward stores int8
                     slopes, the backward loop does only the two chain products and writes dL/dz_t, one
                     parallel kernel forms the weight gradients (``DSR_GTF_BACKWARD=split``)
    split_pre        the split backward reading the forward's float32 pre-activations (4× the bytes of
                     the slopes, fewer forward instructions)
    split_recompute  the split backward recomputing the pre-activations in its loop (nothing stored)
    split_w3 / split_w1
                     ``split`` with only the weight-gradient kernel's products on the tensor cores
                     (``DSR_GTF_WEIGHTS_PRECISION`` tf32x3, about float32; tf32, ~1e-3 in dW1, dW2, dh2)
    split_chain2     ``split`` with its time loop at 2 warps per program (default: 1 when there are more
                     programs than multiprocessors, as the forward; 4 otherwise, e.g. at S = 1)
    split_tf32x3     ``split`` with every GTF product as three TF32 tensor-core products (about float32)
    fused_tf32x3 / fused_tf32
                     ``fused`` with the GTF kernels' matmuls on the tensor cores (``DSR_GTF_PRECISION``)
    no_split, precise_cos, conv32
                     the default without one of session 10's changes: tf32x3 operands split once in the
                     forward, chain and weight kernels; the gather's hardware cosine; the decoder loss's
                     64 times per program (and 2 warps backward)
    w_sm16, w_br32, w_r64, fwd2, chain2, gather512
                     launch variants of the default (weight kernel: 16 programs per multiprocessor, 32 rows
                     per block, at most 64 registers; forward or chain loop at 2 warps; gather blocks of 512)

``train()`` rows are steady state: epochs 3–E of a run after a one-epoch warm-up run (compilation, graph
capture and data upload left out). Each ``train()`` path starts from the same seeds, so the final
parameters are compared with the first path's (``max_rel_diff``: max |Δ| / max |p| over all parameters).
Limits per step: arithmetic = FLOPs of the recurrence (2 matmuls forward, 5 backward, M·L multiply-adds
each, per sequence step) and the decoder convolution, at 67 TFLOP/s (fp32) or 495 TFLOP/s (TF32 dense);
memory = the bytes the fused step must move at least (see :func:`step_bytes`) at 4.3 TB/s (the copy rate
measured on the H200), plus for the split backward its extra bytes (:func:`split_extra_bytes`).
``launches`` counts the CUDA kernels of one eager step (torch.profiler) per path, ``kernel_ms`` their GPU
time per step: each GTF kernel (``_gtf_fwd_kernel``, ``_gtf_bwd_kernel``, ``_gtf_bwd_chain_kernel``,
``_gtf_bwd_weights_kernel``) and everything else ("other"; eager, so without the graph's savings).
``host_ms`` is the host's wall time per step of batch staging for the case's S (:func:`time_stage`):
``stage``, ``DeviceBatches.stage`` now (one fill of the device step counter; the window starts and noise keys
are computed inside the step's graph), and ``stage_session8``, the host computation and pinned copy it
replaced; ``index_equal`` says both give the same window starts and noise keys on this device.

Session 7's GPU run (the split backward against session 6's, about 2 minutes):

    python benchmarks/step_limit.py --paths fused split split_pre split_recompute split_chain2 split_w3 \
        split_w1 split_tf32x3 fused_tf32x3 --out benchmarks/results/step_limit_s7.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "--cpu-smoke" in sys.argv:  # the Triton interpreter must be chosen before triton is imported
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.gpu_step import make_problem, make_step  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.ops.sample import stream_keys, uniform  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from dsr.training.device_batches import DeviceBatches  # noqa: E402
from dsr.training.loop import train  # noqa: E402

FP32_FLOPS, TF32_FLOPS, COPY_BYTES = 67e12, 495e12, 4.3e12
PATHS = {"default": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "", "DSR_GTF_BACKWARD": ""},
         "session5": {"DSR_FUSED_STEP": "0", "DSR_GTF_PRECISION": "ieee", "DSR_GTF_BACKWARD": "fused"},
         "fused": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "ieee", "DSR_GTF_BACKWARD": "fused"},
         "split": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "ieee", "DSR_GTF_BACKWARD": "split"},
         "split_pre": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "ieee", "DSR_GTF_BACKWARD": "split_pre"},
         "split_recompute": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "ieee",
                             "DSR_GTF_BACKWARD": "split_recompute"},
         "split_w3": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "ieee", "DSR_GTF_BACKWARD": "split",
                      "DSR_GTF_WEIGHTS_PRECISION": "tf32x3"},
         "split_w1": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "ieee", "DSR_GTF_BACKWARD": "split",
                      "DSR_GTF_WEIGHTS_PRECISION": "tf32"},
         "split_chain2": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "ieee", "DSR_GTF_BACKWARD": "split",
                          "TUNING": {"gtf": {"chain": {"num_warps": 2}}}},
         "split_tf32x3": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "tf32x3", "DSR_GTF_BACKWARD": "split"},
         "fused_tf32x3": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "tf32x3", "DSR_GTF_BACKWARD": "fused"},
         "fused_tf32": {"DSR_FUSED_STEP": "1", "DSR_GTF_PRECISION": "tf32", "DSR_GTF_BACKWARD": "fused"}}
# session 10: ablations and launch variants of the default path's kernels (GPU only; "TUNING" per module)
_DEFAULT = PATHS["default"]
PATHS.update({
    "no_split": {**_DEFAULT, "TUNING": {"gtf": {w: {"SPLIT": 0} for w in ("fwd", "chain", "weights")}}},
    "precise_cos": {**_DEFAULT, "TUNING": {"sample": {"gather": {"FAST_COS": 0}}}},
    "conv32": {**_DEFAULT, "TUNING": {"conv": {w: {"BLOCK_T": 32, "num_warps": 4} for w in ("fwd", "bwd")}}},
    "w_sm16": {**_DEFAULT, "TUNING": {"gtf": {"weights": {"PROGRAMS_PER_SM": 16}}}},
    "w_br32": {**_DEFAULT, "TUNING": {"gtf": {"weights": {"BLOCK_R": 32}}}},
    "w_r64": {**_DEFAULT, "TUNING": {"gtf": {"weights": {"maxnreg": 64}}}},
    "fwd2": {**_DEFAULT, "TUNING": {"gtf": {"fwd": {"num_warps": 2}}}},
    "chain2": {**_DEFAULT, "TUNING": {"gtf": {"chain": {"num_warps": 2}}}},
    "gather512": {**_DEFAULT, "TUNING": {"sample": {"gather": {"BLOCK": 512}}}},
})
for _env in PATHS.values():  # every path pins every setting (empty: the kernels' default)
    _env.setdefault("DSR_GTF_WEIGHTS_PRECISION", "")


def step_flops(S, B, T, M, L, K, N) -> float:
    """Multiply-adds × 2 of one step: recurrence (2 matmuls forward, 5 backward) and conv (forward, backward)."""
    return 2.0 * S * B * (7 * T * M * L + 2 * (T - K + 1) * K * N)


def step_bytes(S, B, T, M, L, K, N) -> float:
    """Bytes the fused step moves at least (float32): batch gather (windows of x and d written), forcing
    weights (d read, a and ad written), GTF forward (a, ad read; z_t and z̃_{t-1} written), conv + MSE
    (z, x read, residuals written; backward: residuals read, dL/dz written), GTF backward (dL/dz, z̃, a
    read), gradient gather and the optimiser (p, g, m, v read; p, m, v written; grads copied once)."""
    T1, To, P = T + 1, T - K + 1, M + 2 * M * L + M + L
    seq = S * B * T1
    gather = 2 * seq * N
    forcing = seq * N + 2 * seq * M
    gtf_fwd = 2 * seq * M + 2 * S * B * T * M
    loss = S * B * (T * M + 2 * To * N) + S * B * (To * N + T * M)
    gtf_bwd = 3 * S * B * T * M
    opt = (7 + 2) * S * P
    return 4.0 * (gather + forcing + gtf_fwd + loss + gtf_bwd + opt)


def split_extra_bytes(S, B, T, M, L, BL=None, slope_bytes: int = 1) -> float:
    """Bytes the split backward moves beyond the fused one: the slopes (``slope_bytes`` 1: int8 slopes of
    ``split``; 4: float32 p_t of ``split_pre``; 0: ``split_recompute``; rows padded to the kernel's BLOCK_L,
    the next power of two ≥ L) written by the forward and read by the backward loop, and dL/dz_t (float32)
    written by the loop and read by the weight-gradient kernel (which reads z̃_{t−1} as the fused loop did)."""
    BL = BL or max(16, 1 << (L - 1).bit_length())
    return 2.0 * S * B * T * BL * slope_bytes + 2 * 4.0 * S * B * T * M


def _data(M, T_seq, K, tr, seed=0):
    rng = np.random.default_rng(seed)
    h = spm_hrf(tr)[:K]
    x = rng.standard_normal((4 * T_seq + 4 * K, M)).cumsum(0) * 0.1  # (T, M) smooth random series
    return x, h


_TUNED = {"gtf": "dsr.ops.gtf_triton", "conv": "dsr.ops.conv_loss_triton", "sample": "dsr.ops.sample_triton"}


def _with_env(env: dict, fn):
    """Run fn with a path's settings: environment variables, and under "TUNING" launch overrides of the
    Triton kernels (GPU only), per module ("gtf", "conv", "sample": that module's ``TUNING``, e.g.
    ``{"gtf": {"weights": {"BLOCK_R": 32}}}``)."""
    import importlib

    env = dict(env)
    tuning = env.pop("TUNING", {})
    tuning = tuning if torch.cuda.is_available() else {}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    saved = {}
    for mod_name, over in tuning.items():
        mod = importlib.import_module(_TUNED[mod_name])
        saved[mod_name] = (mod, {k: dict(v) for k, v in mod.TUNING.items()})
        for k, v in over.items():
            mod.TUNING.setdefault(k, {}).update(v)
    try:
        return fn()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for mod, before in saved.values():
            mod.TUNING.clear()
            mod.TUNING.update(before)


def time_train(case: dict, device, epochs: int, batches: int) -> tuple[float, dict]:
    """ms per step of ``train()`` in steady state, and the final parameters (CPU)."""
    S, M, L, B, T, K, tr = (case[k] for k in ("S", "M", "L", "B", "T", "K", "tr"))
    x, h = _data(M, T, K, tr)
    cfg = load_config("rest_fmri", model={"latent_dim": M, "hidden_dim": L},
                      train={"epochs": epochs, "batches_per_epoch": batches, "batch_size": B,
                             "sequence_length": T, "train_fraction": 0.9})
    sd = prepare_subject(x, h, cfg)
    spec = ConvSSMSpec("cshPLRNN", M, L, "identity", n_obs=M, tr=tr)
    seeds = list(range(S))
    warm = ConvSSM.initialise(spec, torch.as_tensor(h), seeds).to(device)
    train(warm, [sd] * S, cfg.train.__class__(**{**cfg.train.__dict__, "epochs": 1}), seeds)
    model = ConvSSM.initialise(spec, torch.as_tensor(h), seeds).to(device)
    marks = {}
    train(model, [sd] * S, cfg.train, seeds, progress=lambda e, n, info: marks.__setitem__(e, info["seconds"]))
    first = 2 if epochs > 2 else 1
    ms = (marks[epochs] - marks[first]) * 1e3 / ((epochs - first) * batches)
    return ms, {k: v.detach().cpu() for k, v in model.params.items()}


def time_plain(case: dict, device, steps: int) -> float:
    """ms per step of the plain-PyTorch eager step (median of ``steps`` after 2 warm-up steps)."""
    S, M, L, B, T, K = (case[k] for k in ("S", "M", "L", "B", "T", "K"))
    params, opt, d, x, h = make_problem(S, B, T + 1, M, L, K, device)
    one = make_step("autograd", params, opt, d, x, h, K)
    for _ in range(2):
        one()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        one()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


class _HostStage:
    """Session 8's ``DeviceBatches.stage``: window starts (NumPy) and noise keys of step ``counter`` on the
    host, copied into a device index (S, B + 4) through two pinned buffers used in turn."""

    def __init__(self, db: DeviceBatches):
        self.db, self.B = db, db.B
        self.seeds, self.table, self.n = db.seeds.cpu(), db.table.cpu().numpy(), db.n_starts.cpu().numpy()
        self.index = torch.zeros((len(self.n), self.B + 4), dtype=torch.int64, device=db.device)
        pin = db.device.type == "cuda"
        self.host = [torch.zeros(self.index.shape, dtype=torch.int64, pin_memory=pin) for _ in range(2)]
        self.copied, self.turn = [None, None], 0

    def __call__(self, counter: int) -> None:
        u = uniform(stream_keys(self.seeds, counter, 0), self.B).double().numpy()  # (S, B)
        j = np.ceil(u * self.n[:, None]).astype(np.int64) - 1
        keys = torch.stack([stream_keys(self.seeds, counter, k) for k in (1, 2, 3, 4)])  # (4, S)
        buf, ev = self.host[self.turn], self.copied[self.turn]
        if ev is not None:
            ev.synchronize()
        buf[:, :self.B] = torch.as_tensor(np.take_along_axis(self.table, j, axis=1))
        buf[:, self.B:] = keys.T
        self.index.copy_(buf, non_blocking=self.db.device.type == "cuda")
        if self.db.device.type == "cuda":
            self.copied[self.turn] = torch.cuda.Event()
            self.copied[self.turn].record()
        self.turn ^= 1


def time_stage(case: dict, device, reps: int = 300) -> dict:
    """Host wall time (ms) per call of ``DeviceBatches.stage`` and of session 8's host staging for the
    case's S (best of 3 rounds of ``reps`` calls), and whether both give the same index (S, B + 4)."""
    S, M, B, T, K, tr = (case[k] for k in ("S", "M", "B", "T", "K", "tr"))
    x, h = _data(M, T, K, tr)
    cfg = load_config("rest_fmri", train={"batch_size": B, "sequence_length": T, "train_fraction": 0.9})
    db = DeviceBatches([prepare_subject(x, h, cfg)] * S, list(range(S)), T, B, 0.05, device, torch.float32)
    old = _HostStage(db)
    out = {}
    for name, fn in (("stage", db.stage), ("stage_session8", old)):
        best = float("inf")
        for r in range(4):  # round 0 warms up
            t0 = time.perf_counter()
            for c in range(reps):
                fn(c)
            best = min(best, (time.perf_counter() - t0) * 1e3 / reps) if r else best
            if device.type == "cuda":
                torch.cuda.synchronize()
        out[name] = best
    db.stage(2 ** 32 + 11)
    old(2 ** 32 + 11)
    out["index_equal"] = bool(torch.equal(db.index(), old.index))
    return out


def count_launches(case: dict, device, detail: bool = False) -> tuple[int | None, dict]:
    """CUDA kernels of one eager ``train()`` step (no graph), from torch.profiler, and the GPU time per step
    (ms) of each Triton kernel of the recurrence and of everything else ("other", or with ``detail`` every
    kernel under its own name, truncated to 60 characters); (None, {}) on the CPU."""
    if device.type != "cuda":
        return None, {}
    from torch.profiler import ProfilerActivity, profile

    S, M, L, B, T, K, tr = (case[k] for k in ("S", "M", "L", "B", "T", "K", "tr"))
    x, h = _data(M, T, K, tr)
    cfg = load_config("rest_fmri", model={"latent_dim": M, "hidden_dim": L},
                      train={"epochs": 1, "batches_per_epoch": 8, "batch_size": B, "sequence_length": T,
                             "train_fraction": 0.9, "cuda_graph": False})
    sd = prepare_subject(x, h, cfg)
    model = ConvSSM.initialise(ConvSSMSpec("cshPLRNN", M, L, "identity", n_obs=M, tr=tr), torch.as_tensor(h),
                               list(range(S))).to(device)
    train(model, [sd] * S, cfg.train, list(range(S)))  # compile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        train(model, [sd] * S, cfg.train, list(range(S)))
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
               and "memcpy" not in e.name.lower() and "memset" not in e.name.lower()]
    n = cfg.train.batches_per_epoch
    times: dict[str, float] = {}
    for e in kernels:
        name = e.name[:60] if detail or e.name.startswith("_gtf_") else "other"
        times[name] = times.get(name, 0.0) + e.time_range.elapsed_us() / 1e3 / n  # µs → ms per step
    return round(len(kernels) / n), times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--plain-steps", type=int, default=5)
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (Triton interpreter)")
    ap.add_argument("--detail", action="store_true", help="GPU time per step of every kernel by name")
    ap.add_argument("--cases", nargs="+", default=["one", "lemon"], choices=["one", "lemon"],
                    help="one model (16, 50) and/or the 1020 stacked fits")
    args = ap.parse_args(argv)
    cases = [dict(name="one model (16, 50)", S=1, M=16, L=50, B=16, T=200, K=17, tr=2.0),
             dict(name="lemon_scale 1020 fits", S=1020, M=16, L=50, B=16, T=60, K=23, tr=1.4)]
    cases = [c for c, key in zip(cases, ("one", "lemon")) if key in args.cases]
    if args.cpu_smoke:
        cases = [dict(name="smoke", S=2, M=4, L=8, B=3, T=14, K=4, tr=2.0)]
        args.epochs, args.batches, args.plain_steps = 3, 2, 1
        device = torch.device("cpu")
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        sys.exit("step_limit.py needs a CUDA device (or --cpu-smoke)")
    else:
        device = torch.device("cuda")
    t_start = time.perf_counter()
    rows = []
    for case in cases:
        dims = {k: case[k] for k in ("S", "B", "T", "M", "L", "K")}
        dims["N"] = case["M"]
        flops, nbytes = step_flops(**dims), step_bytes(**dims)
        extra = split_extra_bytes(*(case[k] for k in ("S", "B", "T", "M", "L")))
        row = {**case, "gflop": flops / 1e9, "mbytes": nbytes / 1e6, "split_extra_mbytes": extra / 1e6,
               "limit_ms": {"fp32": 1e3 * flops / FP32_FLOPS, "tf32": 1e3 * flops / TF32_FLOPS,
                            "memory": 1e3 * nbytes / COPY_BYTES, "memory_split": 1e3 * (nbytes + extra) / COPY_BYTES},
               "ms": {}, "launches": {}, "kernel_ms": {}, "max_rel_diff": {}, "host_ms": time_stage(case, device)}
        try:
            row["ms"]["plain"] = time_plain(case, device, args.plain_steps)
        except torch.cuda.OutOfMemoryError:
            row["ms"]["plain"] = None
        print(json.dumps({"case": case["name"], "plain_ms": row["ms"]["plain"], "host_ms": row["host_ms"]}), flush=True)
        ref = None
        for path in args.paths:
            env = PATHS[path]
            ms, params = _with_env(env, lambda: time_train(case, device, args.epochs, args.batches))
            row["ms"][path] = ms
            row["launches"][path], row["kernel_ms"][path] = _with_env(
                env, lambda: count_launches(case, device, args.detail))
            if ref is None:
                ref = params
            else:
                row["max_rel_diff"][path] = max(float((params[k] - v).abs().max() / v.abs().max().clamp_min(1e-12))
                                                for k, v in ref.items())
            print(json.dumps({"case": case["name"], "path": path, "ms": ms,
                              "launches": row["launches"].get(path), "max_rel_diff": row["max_rel_diff"].get(path),
                              "kernel_ms": row["kernel_ms"].get(path)}), flush=True)
        base = row["ms"].get("session5")
        row["speedup_vs_session5"] = {p: base / v for p, v in row["ms"].items() if base and v}
        fused = row["ms"].get("fused")
        row["speedup_vs_fused"] = {p: fused / v for p, v in row["ms"].items() if fused and v}
        rows.append(row)
    meta = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "epochs": args.epochs, "batches": args.batches, "seconds": time.perf_counter() - t_start,
            "cpu_smoke": args.cpu_smoke}
    for r in rows:
        print(f"| {r['name']} | " + " | ".join(f"{p} {v:.3g} ms" for p, v in r["ms"].items() if v is not None)
              + f" | limits: fp32 {r['limit_ms']['fp32']:.3g} ms, tf32 {r['limit_ms']['tf32']:.3g} ms, "
              f"memory {r['limit_ms']['memory']:.3g} ms | launches {r['launches']} | host staging "
              f"{r['host_ms']['stage']:.3g} ms (session 8: {r['host_ms']['stage_session8']:.3g} ms) |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {args.out} ({meta['seconds']:.0f} s)")


if __name__ == "__main__":
    main()

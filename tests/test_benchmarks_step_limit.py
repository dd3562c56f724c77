"""benchmarks/step_limit.py at tiny sizes on the CPU: every path runs, the JSON has the limits, and on the
CPU (where every path takes the plain-PyTorch twins) the fused step trains exactly like the separate ops; the host
staging timing compares the device-counter staging with session 8's host computation (same index)."""
import json

from benchmarks.step_limit import PATHS, main, split_extra_bytes, step_bytes, step_flops


def test_step_limit_cpu_smoke(tmp_path):
    out = tmp_path / "step_limit.json"
    main(["--cpu-smoke", "--out", str(out), "--paths", "session5", "fused", "split"])
    res = json.loads(out.read_text())
    (row,) = res["rows"]
    assert set(row["ms"]) == {"plain", "session5", "fused", "split"} and all(v > 0 for v in row["ms"].values())
    assert row["max_rel_diff"] == {"fused": 0.0, "split": 0.0}
    assert set(row["speedup_vs_fused"]) == {"plain", "session5", "fused", "split"}
    assert 0 < row["limit_ms"]["memory"] < row["limit_ms"]["memory_split"]
    assert row["limit_ms"]["fp32"] > row["limit_ms"]["tf32"] > 0 and row["limit_ms"]["memory"] > 0
    assert set(PATHS) >= {"session5", "fused", "split", "split_recompute", "fused_tf32x3"}
    host = row["host_ms"]
    assert host["index_equal"] is True and host["stage"] > 0 and host["stage_session8"] > 0


def test_limits_scale_with_the_stack():
    one, many = step_flops(1, 16, 60, 16, 50, 23, 16), step_flops(1020, 16, 60, 16, 50, 23, 16)
    assert many == 1020 * one and abs(many / 1e9 - 11.88) < 0.01  # 2 · S · B · (7 T M L + 2 To K N)
    assert step_bytes(1020, 16, 60, 16, 50, 23, 16) == 1020 * step_bytes(1, 16, 60, 16, 50, 23, 16)


def test_split_backward_extra_bytes():
    """int8 slopes padded to 64 columns and float32 dL/dz_t, each written once and read once."""
    assert split_extra_bytes(1020, 16, 60, 16, 50) == 1020 * 16 * 60 * (2 * 64 + 2 * 4 * 16)

"""``device_g1.sh OUT --select-smoke``: the session-7 checkpoint-selection stack, tiny, on the CPU (data made here)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from reference_results import lorenz63_simulate  # noqa: E402


def test_device_g1_select_smoke(tmp_path):
    data = tmp_path / "shared"
    data.mkdir()
    np.save(data / "lorenz63.npy", lorenz63_simulate(12000, 1, seed=3, transient=500)[0])
    out = tmp_path / "out"
    env = dict(os.environ, DSR_SHARED_DATA=str(data), TMPDIR=str(tmp_path))
    run = subprocess.run(["bash", "benchmarks/device_g1.sh", str(out), "--select-smoke"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "SELECT_DONE" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    early = json.loads((out / "lorenz_protocol_g1s7_select_train.json").read_text())
    assert len(early["fits"]) == 8 and all(f["selected_epoch"] in (1, 2) for f in early["fits"])
    assert all(len(f["select_trace"]) == 1 for f in early["fits"])  # smoke: 2 epochs, scored at the last only
    res = json.loads((out / "lorenz_protocol_g1s7_select.json").read_text())
    assert res["config"]["train"]["select_every"] == 25
    picks = {(g["noise"], g["alpha"], g["pick"]) for g in res["summary"].values()}
    assert picks == {(n, a, p) for n in (0.01, 0.1) for a in (0.1, 0.15) for p in ("selected", "last")}
    assert all(g["n_fits"] == 2 for g in res["summary"].values())
    assert "G1 σ0.1 α0.15 free selected" in run.stdout  # the table is printed

"""Session 8's device script at tiny settings on the CPU (``device_s8.sh smoke``): G0 with the reference code's
model scored beside the fits, G1/G2 with checkpoint selection, the ALN convSSM / no-decoder comparison."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reference_results import lorenz63_simulate  # noqa: E402
from test_benchmarks_issue13 import _shared_data  # noqa: E402
from test_julia_bson import plrnn_params, write_checkpoint  # noqa: E402


def test_device_s8_smoke(tmp_path):
    data = tmp_path / "shared"
    data.mkdir()
    _shared_data(data)
    np.save(data / "lorenz63.npy", lorenz63_simulate(12000, 1, seed=3, transient=500)[0])
    ref = tmp_path / "model_5000.bson"
    params = plrnn_params(M=3, L=50, seed=1)
    params["A"] = 0.5 * params["A"]
    params["W1"], params["W2"] = 0.05 * params["W1"], 0.05 * params["W2"]  # contracting: finite scores
    write_checkpoint(ref, params)
    work, out = tmp_path / "s8", tmp_path / "out"
    env = dict(os.environ, DSR_SHARED_DATA=str(data), S8_DIR=str(work), OUT=str(out), REF_SMOKE=str(ref))
    run = subprocess.run(["bash", "benchmarks/device_s8.sh", "smoke"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0 and "SMOKE_OK" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    g0 = json.loads((work / "g0" / "lorenz_protocol_smoke.json").read_text())
    assert g0["config"]["filter"]["kind"] == "none" and g0["config"]["train"]["select_every"] == 1
    picks = {g["pick"]: g for g in g0["summary"].values()}
    assert set(picks) == {"selected", "last", "reference_code"}
    assert picks["reference_code"]["n_fits"] == 1 and picks["selected"]["n_fits"] == 2
    ref_row = next(f for f in g0["fits"] if f.get("pick") == "reference_code")
    assert np.isfinite(ref_row["dstsp"]) and ref_row["status"] == "ok"
    assert g0["floors"]["G0"]["n"] == 2
    g1 = json.loads((work / "g1" / "lorenz_protocol_smoke.json").read_text())
    assert {g["part"] for g in g1["summary"].values()} == {"G1", "G2"}
    assert g1["config"]["eval"]["generation"] == "stochastic" and g1["config"]["train"]["select_rollouts"] == 5
    conv = json.loads((work / "aln" / "selection_aln_conv.json").read_text())
    noconv = json.loads((work / "aln" / "selection_aln_noconv.json").read_text())
    assert conv["setup"]["variant"] == "conv" and noconv["setup"]["variant"] == "noconv"
    assert "convSSM lower for" in run.stdout

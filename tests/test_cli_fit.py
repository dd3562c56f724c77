"""`dsr fit` as a user runs it: outputs, the Python API, resume after a kill, and every bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from dsr import fit, load_config
from dsr.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[model]
latent_model = "cshPLRNN"
latent_dim = 2
hidden_dim = 8
[train]
epochs = {epochs}
batches_per_epoch = 10
batch_size = 4
sequence_length = 40
checkpoint_every = 2
[eval]
n_rollouts = 3
lyap_steps = 200
lyap_transient = 50
lyap_orbits = 2
pe_steps = 3
"""


@pytest.fixture
def data_file(tmp_path, oscillator):
    x, _ = oscillator
    path = tmp_path / "bold.npy"
    np.save(path, x)
    return path


def _cfg(tmp_path, epochs=4):
    path = tmp_path / f"tiny{epochs}.toml"
    path.write_text(TINY.format(epochs=epochs))
    return path


def test_fit_writes_every_output(tmp_path, data_file, capsys):
    out = tmp_path / "out"
    code = main(["fit", str(data_file), "--tr", "1.0", "--out", str(out), "--config", str(_cfg(tmp_path)),
                 "--seed", "3"])
    assert code == 0
    for name in ["model.safetensors", "model.json", "metrics.json", "generated-obs.tsv", "generated-obs.json",
                 "generated-latent.tsv", "curve.tsv", "fit.png"]:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ["dstsp", "dh", "pe_train", "pe_test", "lyapunov_max", "lyapunov_spectrum", "status", "seed"]:
        assert key in metrics
    assert metrics["seed"] == 3 and metrics["status"] == "ok"
    assert not (out / "checkpoint").exists()
    gen = np.loadtxt(out / "generated-obs.tsv", skiprows=1)
    assert gen.shape == (np.load(data_file).shape[0], 2)
    curve = np.loadtxt(out / "curve.tsv", skiprows=1)
    assert curve.shape == (4, 4)
    assert (out / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_api(oscillator):
    x, _ = oscillator
    cfg = load_config("quick", model={"latent_dim": 2, "hidden_dim": 8},
                      train={"epochs": 2, "batches_per_epoch": 5, "batch_size": 4},
                      eval={"n_rollouts": 2, "lyap_steps": 100, "lyap_transient": 10})
    res = fit(x, tr=1.0, config=cfg, seed=1)
    assert res.status == "ok" and np.isfinite(res.metrics["dstsp"])
    g = res.generate(50)
    assert g.shape == (50, 2) and np.isfinite(g).all()
    same = fit(x, tr=1.0, config=cfg, seed=1)
    for k, v in res.model.params.items():
        assert np.array_equal(v.numpy(), same.model.params[k].numpy()), k


def _run(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "dsr.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_killed_run_resumes_to_the_same_parameters(tmp_path, data_file):
    cfg = _cfg(tmp_path, epochs=30)
    common = ["fit", str(data_file), "--tr", "1.0", "--config", str(cfg), "--seed", "5"]
    full = _run(common + ["--out", str(tmp_path / "full")])
    assert full.wait(timeout=300) == 0, full.stderr.read()

    out = tmp_path / "killed"
    proc = _run(common + ["--out", str(out)])
    ck = out / "checkpoint" / "checkpoint.safetensors"
    deadline = time.time() + 240
    while not ck.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ck.exists() and not (out / "metrics.json").exists()

    resumed = _run(common + ["--out", str(out), "--resume"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _bad(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.write_text(content)
    return path


GOOD = np.random.default_rng(0).standard_normal((200, 3))


@pytest.mark.parametrize("case,expect", [
    ("text", "not a numeric table"),
    ("one_d", "1-D"),
    ("three_d", "3-D"),
    ("nan", "NaN"),
    ("inf", "Inf"),
    ("constant", "constant"),
    ("short", "fewer than"),
    ("tr_zero", "TR must be"),
    ("tr_negative", "TR must be"),
    ("preset", "unknown preset"),
    ("missing", "not found"),
])
def test_bad_input_gives_one_clear_line(tmp_path, capsys, case, expect):
    path = tmp_path / "data.npy"
    np.save(path, GOOD)
    tr, preset = "1.0", "quick"
    if case == "text":
        path = _bad(tmp_path, "data.csv", "a,b\n1,x\n2,3\n")
    elif case == "one_d":
        path = _bad(tmp_path, "d.npy", GOOD[:, 0])
    elif case == "three_d":
        path = _bad(tmp_path, "d.npy", GOOD.reshape(20, 10, 3))
    elif case in ("nan", "inf"):
        bad = GOOD.copy()
        bad[5, 1] = np.nan if case == "nan" else np.inf
        path = _bad(tmp_path, "d.npy", bad)
    elif case == "constant":
        bad = GOOD.copy()
        bad[:, 2] = 4.0
        path = _bad(tmp_path, "d.npy", bad)
    elif case == "short":
        path = _bad(tmp_path, "d.npy", GOOD[:20])
        tr = "0.5"
    elif case == "tr_zero":
        tr = "0"
    elif case == "tr_negative":
        tr = "-1"
    elif case == "preset":
        preset = "no-such-preset"
    elif case == "missing":
        path = tmp_path / "nothing.npy"
    code = main(["fit", str(path), "--tr", tr, "--out", str(tmp_path / "o"), "--config", preset])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if "error" in ln]
    assert code != 0
    assert len(errors) == 1 and expect in errors[0], err
    assert "Traceback" not in "\n".join(err)
    if case not in ("tr_zero", "tr_negative", "preset"):
        assert path.name in errors[0]
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_console_script_error_has_no_traceback(tmp_path):
    proc = _run(["fit", str(tmp_path / "absent.npy"), "--tr", "1", "--out", str(tmp_path / "o")])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("dsr: error:") and "absent.npy" in err


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, data_file, capsys):
    out = tmp_path / "o"
    from dsr.training.checkpoint import save_checkpoint

    save_checkpoint(out / "checkpoint", {"x": __import__("torch").zeros(1)}, {"identity": {"other": 1}})
    code = main(["fit", str(data_file), "--tr", "1.0", "--out", str(out), "--config", str(_cfg(tmp_path)),
                 "--resume"])
    err = capsys.readouterr().err
    assert code != 0 and "another config" in err and "Traceback" not in err


def test_no_standardise_keeps_data_units(tmp_path, data_file):
    out = tmp_path / "raw"
    assert main(["fit", str(data_file), "--tr", "1.0", "--out", str(out), "--config", str(_cfg(tmp_path)),
                 "--no-standardise"]) == 0
    spec = json.loads((out / "model.json").read_text())["spec"]
    assert spec["meta"]["mean"] == [0.0, 0.0] and spec["meta"]["std"] == [1.0, 1.0]

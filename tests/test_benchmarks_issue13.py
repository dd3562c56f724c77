"""The issue-13 device script runs end to end: ``device_issue13.sh --smoke`` (G1, G2 and the ALN
comparison for both train.loss_states, tiny settings, CPU) on data generated here."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from reference_results import lorenz63_simulate  # noqa: E402

from dsr.signal.convolution import convolve_np  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402


def _shared_data(folder: Path) -> None:
    """A 12 000-step standardised Lorenz-63 series and two ALN-like subjects (500 × 16, TR 0.5 s)."""
    np.save(folder / "lorenz63.npy", lorenz63_simulate(12000, 1, seed=3, transient=500)[0])
    rng = np.random.default_rng(0)
    h = spm_hrf(0.5)
    for kind in ("bold", "latent"):
        (folder / "aln" / kind).mkdir(parents=True)
    for i in (1, 2):
        z = np.cumsum(rng.standard_normal((500 + len(h), 16)), 0) * 0.1  # (T+K, 16)
        z = np.sin(z) + 0.1 * rng.standard_normal(z.shape)
        np.save(folder / "aln" / "latent" / f"sub-00{i}.npy", z[len(h):])
        np.save(folder / "aln" / "bold" / f"sub-00{i}.npy", convolve_np(z, h)[len(h):])


def test_device_script_smoke(tmp_path):
    data = tmp_path / "shared"
    data.mkdir()
    _shared_data(data)
    env = dict(os.environ, DSR_SHARED_DATA=str(data), TMPDIR=str(tmp_path))
    run = subprocess.run(["bash", "benchmarks/device_issue13.sh", "--smoke"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = Path(run.stdout.strip().splitlines()[-1].split()[-1])
    res = json.loads((out / "lorenz_protocol_smoke.json").read_text())
    groups = res["summary"]
    assert len(groups) == 8  # G1 2 noise levels + G2 2 lengths, each free and forced
    assert {g["loss_states"] for g in groups.values()} == {"free", "forced"}
    assert all(g["n_fits"] == 2 for g in groups.values())
    assert all(g["floor_dstsp_latent_units"]["n"] == 2 for g in groups.values())
    assert all(g["floor_lyapunov"]["n"] == 2 for g in groups.values())  # one pseudo-fit per seed
    assert res["floors"]["lyapunov"]["orbits"] == res["config"]["eval"]["lyap_orbits"]
    assert all(np.isfinite(g["R"]["median"]) for g in groups.values() if g["part"] == "G2")
    assert "group" in run.stdout and "G1 σ0.01 forced" in run.stdout  # the table is printed
    cmp = json.loads((out / "aln" / "aln_compare.json").read_text())
    assert set(cmp["summary"]["by_loss_states"]) == {"free", "forced"}
    assert cmp["summary"]["n_subjects"] == 2


def _device_g1(tmp_path: Path, out: Path, mode: str) -> subprocess.CompletedProcess:
    """``device_g1.sh OUT MODE`` on a short simulated Lorenz-63 series (made here) as the shared data."""
    data = tmp_path / "shared"
    data.mkdir()
    np.save(data / "lorenz63.npy", lorenz63_simulate(12000, 1, seed=3, transient=500)[0])
    env = dict(os.environ, DSR_SHARED_DATA=str(data), TMPDIR=str(tmp_path))
    return subprocess.run(["bash", "benchmarks/device_g1.sh", str(out), mode], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_device_g1_script_smoke(tmp_path):
    """``device_g1.sh OUT --smoke``: the four stacks (1000 epochs with free / reference loss states; 5000
    epochs with two α in one stack; the eager-step check; lr_end 1e-4), tiny, on the CPU, each grouped by
    its settings."""
    out = tmp_path / "out"
    run = _device_g1(tmp_path, out, "--smoke")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    a = json.loads((out / "lorenz_protocol_g1s6_e1000.json").read_text())["summary"]
    assert len(a) == 8 and {g["loss_states"] for g in a.values()} == {"free", "reference"}
    b = json.loads((out / "lorenz_protocol_g1s6_e5000.json").read_text())
    assert {(g["alpha"], g["loss_states"]) for g in b["summary"].values()} == \
        {(0.1, "free"), (0.1, "reference"), (0.15, "free"), (0.15, "reference")}
    assert sorted({f["alpha"] for f in b["fits"]}) == [0.1, 0.15]
    c = json.loads((out / "lorenz_protocol_g1s6_e1000_eager.json").read_text())
    assert c["config"]["train"]["cuda_graph"] is False and len(c["fits"]) == 2
    d = json.loads((out / "lorenz_protocol_g1s6_e1000_lrend1e-4.json").read_text())
    assert d["config"]["train"]["lr_end"] == 1e-4 and len(d["summary"]) == 6  # 2 noise levels × 3 α


def test_device_g1_select_smoke(tmp_path):
    """``device_g1.sh OUT --select-smoke``: the session-7 checkpoint-selection stack, tiny, on the CPU."""
    out = tmp_path / "out"
    run = _device_g1(tmp_path, out, "--select-smoke")
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


def test_oracle_targets_are_the_clean_latent_under_the_recording():
    """``lorenz_protocol.py --targets oracle``: the training targets become L[K + t] where the Wiener targets are
    finite, and the Wiener deconvolution of the σ 0.01 recording is close to exactly that (same alignment)."""
    import lorenz_protocol as lp
    from reference_results import lorenz_recording

    from dsr.config import load_config
    from dsr.training.data import prepare_subject

    L = lorenz63_simulate(6000, 1, seed=5, transient=500)[0]  # (6000, 3)
    x, h = lorenz_recording(L, 5000, 0.01)
    K = len(h)
    sd = prepare_subject(x, h, load_config("lorenz63"), standardise=False)
    oracle = lp.oracle_targets(sd, L, K)
    ok = np.isfinite(sd.d[:, 0])
    assert ok.sum() > 3000 and np.array_equal(np.isfinite(oracle.d), np.isfinite(sd.d))
    np.testing.assert_array_equal(oracle.d[ok], L[K + np.flatnonzero(ok)])
    assert oracle.x is sd.x and oracle.n_train == sd.n_train  # only the targets differ
    err = np.sqrt(np.mean((sd.d[ok] - oracle.d[ok]) ** 2, 0))  # (3,)
    shifted = np.sqrt(np.mean((sd.d[ok][1:] - oracle.d[ok][:-1]) ** 2, 0))
    assert (err < 0.2).all() and (err < shifted).all()


def test_snapshots_and_selection_rules_smoke(tmp_path):
    """``lorenz_protocol.py --snapshots 1`` with ``train.select_rescore``: every scored checkpoint is kept per part,
    the kept ones are the run's own (the last equals the last epoch's parameters), the rescored candidates are
    recorded; ``selection_rules.py`` then estimates λ per checkpoint, scores candidates and prints the rules."""
    from safetensors.torch import load_file

    data = tmp_path / "shared"
    data.mkdir()
    _shared_data(data)
    env = dict(os.environ, DSR_SHARED_DATA=str(data))
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "benchmarks/lorenz_protocol.py", "--smoke", "--parts", "g1", "--noise",
                          "0.01", "--loss-states", "free", "--train", "select_every=1", "select_rescore=2",
                          "--snapshots", "1", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    snap = out / "lorenz_protocol_smoke_G1_snapshots.safetensors"
    t = load_file(str(snap))
    last = load_file(str(out / "lorenz_protocol_smoke_last_models.safetensors"))
    assert t["epoch"].tolist() == [1, 2] and t["score"].shape == (2, 2) and t["fit"].tolist() == [0, 1]
    assert (t["latent.W1"][-1] == last["latent.W1"].float()).all()
    rec = json.loads((out / "lorenz_protocol_smoke_train.json").read_text())
    for f in rec["fits"]:
        kept = np.array(f["select_rescored"])  # (2, 3): epoch, score, rescore
        assert sorted(kept[:, 0].tolist()) == [1, 2] and f["selected_epoch"] == kept[np.argmin(kept[:, 2]), 0]
    for cmd in (["lyapunov", str(snap), "--out", str(tmp_path / "lam.npz")],
                ["candidates", str(snap), "--models", str(out / "lorenz_protocol_smoke_models.safetensors"),
                 "--top", "2", "--rollouts", "2", "--device", "cpu", "--out", str(tmp_path / "cand.json")]):
        res = subprocess.run([sys.executable, "benchmarks/selection_rules.py", *cmd], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    cand = json.loads((tmp_path / "cand.json").read_text())["rows"]
    assert sorted((r["fit"], r["epoch"]) for r in cand) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all(np.isfinite(r["dstsp_train"]) for r in cand)
    lam = np.load(tmp_path / "lam.npz")["lam"]
    assert lam.shape == (2, 2) and np.isfinite(lam).all()
    res = subprocess.run([sys.executable, "benchmarks/selection_rules.py", "rules", str(tmp_path / "lam.npz"),
                          str(tmp_path / "cand.json")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "engine D_stsp mean" in res.stdout and "top-2 by score" in res.stdout, res.stderr


def test_selection_rules_pick():
    import selection_rules as sr

    epochs = np.array([25, 50, 75, 100])
    scores = np.array([[0.3, 1.0], [0.2, np.inf], [0.21, 0.5], [0.5, 0.9]])  # (C, F)
    assert sr.pick(epochs, scores, "min").tolist() == [1, 2]
    assert sr.pick(epochs, scores, "last").tolist() == [3, 3]
    assert sr.pick(epochs, scores, "from0.75").tolist() == [2, 2]  # epochs >= 75
    assert sr.pick(epochs, scores, "tol0.1").tolist() == [2, 2]  # 0.21 <= 1.1 * 0.2; fit 1: only its minimum


def test_lorenz_rk4_jacobian_is_the_steps_derivative():
    """The λ floor's hand-written RK4 Jacobian equals autograd's Jacobian of the RK4 step (float64)."""
    import torch
    from lorenz_protocol_summary import lorenz_rk4_jacobian, lorenz_rk4_step

    x = torch.tensor(lorenz63_simulate(50, 1, seed=1, transient=100)[0] * 8.0 + [0.0, 0.0, 24.0])  # (50, 3)
    auto = torch.func.vmap(torch.func.jacrev(lambda v: lorenz_rk4_step(v[None])[0]))(x)  # (50, 3, 3)
    torch.testing.assert_close(lorenz_rk4_jacobian(x), auto, rtol=1e-12, atol=1e-12)


def test_lyapunov_floor_recovers_the_lorenz_exponent():
    """The true system through the evaluation's QR estimator lands near λ_max = 0.906 per Lorenz time unit,
    and more steps per orbit bring it closer with less spread."""
    from lorenz_protocol_summary import LAMBDA_REF, lyapunov_floor

    short = lyapunov_floor(n_fits=4, orbits=5, steps=1500, transient=500)
    long = lyapunov_floor(n_fits=4, orbits=5, steps=6000, transient=500)
    assert long["n"] == 4 and long["orbits"] == 5
    assert abs(long["median"] - LAMBDA_REF) < 0.05 * LAMBDA_REF
    assert abs(long["median"] - LAMBDA_REF) < abs(short["median"] - LAMBDA_REF) + 0.01
    assert long["sd"] < short["sd"]


def test_reference_results_lorenz_smoke(tmp_path):
    """``reference_results.py lorenz`` at tiny settings: the lorenz63 preset's checkpoint selection runs (scored at
    epochs 25 and 30), each fit's row records its selected epoch, and ``--eval-only`` scores the saved models again
    to the same numbers."""
    data = tmp_path / "shared"
    data.mkdir()
    np.save(data / "lorenz63.npy", lorenz63_simulate(4000, 1, seed=3, transient=500)[0])
    env = dict(os.environ, DSR_SHARED_DATA=str(data))
    cmd = [sys.executable, "benchmarks/reference_results.py", "lorenz", "--seeds", "2", "--epochs", "30", "--length",
           "600", "--rollouts", "2", "--truth-start", "1000", "--truth-end", "3000", "--batches", "2", "--lyap-steps",
           "200", "--out", str(tmp_path), "--tag", "_smoke"]
    runs = []
    for extra in ([], ["--eval-only"]):
        run = subprocess.run(cmd + extra, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        runs.append(json.loads((tmp_path / "lorenz_smoke.json").read_text()))
    fits = runs[0]["fits"]
    assert [f["seed"] for f in fits] == [0, 1] and all(f["status"] == "ok" for f in fits)
    assert all(f["selected_epoch"] in (25, 30) for f in fits)
    assert np.isfinite(runs[0]["summary"]["dstsp_true_trajectory_same_length"])
    for a, b in zip(fits, runs[1]["fits"]):
        assert a["selected_epoch"] == b["selected_epoch"] and a["dstsp"] == b["dstsp"]


def test_lorenz_rk4_jacobian_of_another_family_member():
    """The Jacobian follows the Lorenz parameters it is given (ρ 32, σ 12), as the step does."""
    import torch
    from lorenz_protocol_summary import lorenz_rk4_jacobian, lorenz_rk4_step

    p = {"rho": 32.0, "sigma": 12.0}
    x = torch.tensor(lorenz63_simulate(30, 1, seed=2, transient=100)[0] * 8.0 + [0.0, 0.0, 24.0])  # (30, 3)
    auto = torch.func.vmap(torch.func.jacrev(lambda v: lorenz_rk4_step(v[None], **p)[0]))(x)  # (30, 3, 3)
    torch.testing.assert_close(lorenz_rk4_jacobian(x, **p), auto, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(lorenz_rk4_jacobian(x), auto)


def test_lambda_checks_helpers():
    """Band power of a series against itself is 1 in every band, a smoothed copy loses the stop band first, and
    lobe residence counts the stays of a square wave."""
    from lorenz_lambda_checks import band_power_ratios, hrf_bands, lobe_residence

    h = spm_hrf(0.2)
    truth = lorenz63_simulate(20000, 1, seed=4, transient=500)[0]  # (T, 3)
    bands = hrf_bands(h, 1024)
    assert bands["pass"][0] and bands["stop"][-1] and sum(m.sum() for m in bands.values()) == 513
    same = band_power_ratios(truth, truth, bands, 1024)
    assert all(abs(v - 1) < 1e-12 for v in same.values())
    smooth = band_power_ratios(convolve_np(truth, np.ones(25) / 25), truth, bands, 1024)
    assert smooth["stop"] < 0.5 * smooth["pass"]
    wave = np.repeat(np.tile([1.0, -1.0], 50), 40)[:, None]  # stays of 40 steps
    res = lobe_residence(wave)
    assert res["mean"] == 40 and res["cv"] == 0


def test_lambda_checks_smoke(tmp_path):
    """``lorenz_lambda_checks.py family`` (two members, tiny) ranks ρ 30 above ρ 28 in λ_max; ``spectra`` runs on
    the model file and result of a ``lorenz_protocol.py --smoke`` run."""
    data = tmp_path / "shared"
    data.mkdir()
    _shared_data(data)
    env = dict(os.environ, DSR_SHARED_DATA=str(data))
    out = tmp_path / "out"
    runs = [["benchmarks/lorenz_protocol.py", "--smoke", "--parts", "g1", "--noise", "0.01", "--loss-states", "free",
             "--out", str(out)],
            ["benchmarks/lorenz_lambda_checks.py", "family", "--length", "2000", "--sims", "2", "--lyap-fits", "2",
             "--members", "2", "--out", str(tmp_path / "family.json")],
            ["benchmarks/lorenz_lambda_checks.py", "spectra", str(out / "lorenz_protocol_smoke_models.safetensors"),
             str(out / "lorenz_protocol_smoke.json"), "--steps", "3000", "--nperseg", "512", "--out",
             str(tmp_path / "spectra.json")]]
    for cmd in runs:
        run = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    fam = json.loads((tmp_path / "family.json").read_text())["rows"]
    assert [r["params"] for r in fam] == [{}, {"rho": 30.0}]
    assert fam[1]["lyapunov_max"] > fam[0]["lyapunov_max"] and all(np.isfinite(r["dstsp_median"]) for r in fam)
    spec = json.loads((tmp_path / "spectra.json").read_text())
    assert spec["summary"]["n"] == 2 and len(spec["fits"]) == 2
    assert abs(sum(spec["summary"]["truth_power_share"].values()) - 1) < 1e-9

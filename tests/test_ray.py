"""A real Ray head on localhost (2 CPUs): participant level and a sweep give the local executor's outputs;
a worker killed mid-fit leaves no partial output and a rerun computes only the missing fit."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

ray = pytest.importorskip("ray")

from dsr.config import load_config  # noqa: E402
from dsr.pipelines.executors import ExecutorSettings  # noqa: E402
from dsr.pipelines.participant import run_participant  # noqa: E402
from dsr.pipelines.sweep import SweepSpec, run_sweep  # noqa: E402
from dsr.simulate.bids_dataset import make_dataset  # noqa: E402

SUBJECTS = ("01", "02", "03", "04")
BASE = "sub-{s}_task-rest_space-MNI152NLin2009cAsym_atlas-Sim"


@pytest.fixture(scope="module")
def ray_head():
    """A real single-node Ray cluster with 2 CPUs, shut down after the module. Its workers carry a fault
    injection for these tests: with ``DSR_TEST_KILL_SUBJECT=<label>`` in the driver's environment (the executor
    passes ``DSR_*`` variables to every task), the worker fitting that subject ends abruptly, like an
    out-of-memory kill, once the fit has started."""

    def kill_once_started():  # runs in every worker process (defined here: Ray ships it by value)
        import os

        from dsr.pipelines import fitrun

        start = fitrun.start_fit

        def start_fit(job):
            pending = start(job)
            if not isinstance(pending, dict) and os.environ.get("DSR_TEST_KILL_SUBJECT") == job.run.subject:
                os._exit(137)
            return pending

        fitrun.start_fit = start_fit

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
             logging_level="WARNING", runtime_env={"worker_process_setup_hook": kill_once_started})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def config():
    return load_config("quick").replace(train={"epochs": 2, "batches_per_epoch": 4, "checkpoint_every": 1},
                                        eval={"n_rollouts": 2, "lyap_steps": 60, "lyap_transient": 10,
                                              "lyap_orbits": 1})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    bids_dir = tmp_path_factory.mktemp("ray") / "ds"
    make_dataset(bids_dir, n_subjects=len(SUBJECTS), seed=3, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    return bids_dir


def _participant(bids_dir, out, config, **kw):
    return run_participant(bids_dir, out, participant_labels=None, task=None, session=None, space=None, atlas=None,
                           config=config, device="cpu", confounds=None, **kw)


def _fit_outputs(out: Path, s: str, seed_part: str = "") -> dict:
    """The deterministic part of one fit's outputs: metrics without timings/device, model tensors, generated series."""
    func = out / f"sub-{s}" / "func"
    stem = f"{BASE.format(s=s)}{seed_part}_desc-convssm"
    metrics = json.loads((func / f"{stem}_metrics.json").read_text())
    metrics = {k: v for k, v in metrics.items() if not k.endswith("seconds") and k != "device"}
    return {"metrics": metrics, "model": load_file(func / f"{stem}_model.safetensors"),
            "generated": np.loadtxt(func / f"{stem}_generated-obs.tsv", skiprows=1)}


def _assert_same_fit(a: dict, b: dict, what: str) -> None:
    """Equal to float32 tolerance: separate processes may round a few float32 sums differently."""
    assert a["metrics"].keys() == b["metrics"].keys(), what
    for k, v in a["metrics"].items():
        if isinstance(v, float):
            assert b["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-6), f"{what}: {k}"
        else:
            assert b["metrics"][k] == v, f"{what}: {k}"
    for k, v in a["model"].items():
        np.testing.assert_allclose(b["model"][k], v, rtol=1e-4, atol=1e-6, err_msg=what)
    np.testing.assert_allclose(b["generated"], a["generated"], rtol=1e-4, atol=1e-6, err_msg=what)


def _status(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False).set_index("participant_id")


def test_participant_level_on_ray_equals_local(tmp_path, dataset, config, ray_head):
    seeds = [0, 1]
    assert _participant(dataset, tmp_path / "local", config, nprocs=2, seeds=seeds) == 0
    assert _participant(dataset, tmp_path / "ray", config, executor="ray", ray_address=ray_head, seeds=seeds) == 0
    for s in SUBJECTS:
        for sd in seeds:
            a, b = _fit_outputs(tmp_path / "local", s, f"_seed-{sd}"), _fit_outputs(tmp_path / "ray", s, f"_seed-{sd}")
            _assert_same_fit(a, b, f"sub-{s} seed {sd}: Ray and local outputs differ")
    assert (_status(tmp_path / "ray")["status"] == "ok").all() and len(_status(tmp_path / "ray")) == 8


def test_sweep_on_ray_equals_local(tmp_path, dataset, config, ray_head):
    spec = SweepSpec(name="tiny", base="quick", seeds=[0], metric="dstsp_test", grid={"train.alpha": [0.05, 0.3]})
    results = {}
    for kind in ("local", "ray"):
        ex = ExecutorSettings(kind=kind, nprocs=2, ray_address=ray_head if kind == "ray" else None)
        assert run_sweep(dataset, tmp_path / kind, spec, executor=ex, base=config) == 0
        summary = tmp_path / kind / "sweep" / "tiny"
        results[kind] = pd.read_csv(summary / "results.tsv", sep="\t")
        best = {s: json.loads((summary / f"sub-{s}_best.json").read_text()) for s in SUBJECTS}
        results[kind + "_best"] = best
    pd.testing.assert_frame_equal(results["local"], results["ray"], rtol=1e-4)  # float32 tolerance
    for s in SUBJECTS:
        a, b = results["local_best"][s], results["ray_best"][s]
        exact = ("participant_id", "sweep", "metric", "trial_id", "values", "config")
        assert {k: a[k] for k in exact} == {k: b[k] for k in exact}
        assert [r["trial_id"] for r in a["ranking"]] == [r["trial_id"] for r in b["ranking"]]
        assert b["score"] == pytest.approx(a["score"], rel=1e-4)
    assert len(results["ray"]) == 2 * len(SUBJECTS) and (results["ray"]["status"] == "ok").all()
    for s, b in results["ray_best"].items():  # the chosen trial has the lowest held-out D_stsp
        rows = results["ray"][results["ray"]["participant_id"] == f"sub-{s}"]
        assert b["score"] == pytest.approx(rows["dstsp_test"].min())


def test_killed_worker_leaves_no_partial_output_and_rerun_fits_only_the_missing(tmp_path, dataset, config, ray_head,
                                                                                   monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("DSR_TEST_KILL_SUBJECT", "02")  # its worker process dies once its fit has started
    rc = _participant(dataset, out, config, executor="ray", ray_address=ray_head, max_retries=1)
    assert rc == 1
    status = _status(out)
    assert status.loc["sub-02", "status"] == "failed" and "worker process died" in status.loc["sub-02", "reason"]
    assert list(status.loc[["sub-01", "sub-03", "sub-04"], "status"]) == ["ok"] * 3
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    func = out / "sub-02" / "func"
    stem = f"{BASE.format(s='02')}_desc-convssm"
    for suffix in ("metrics.json", "model.safetensors", "generated-obs.tsv", "curve.tsv"):
        assert not (func / f"{stem}_{suffix}").exists(), suffix
    assert json.loads((func / f"{stem}_provenance.json").read_text())["Status"] == "running"
    done = {s: (out / f"sub-{s}/func/{BASE.format(s=s)}_desc-convssm_metrics.json").stat().st_mtime_ns
            for s in ("01", "03", "04")}
    orphan = func / f".{stem}_model.safetensors.x1y2z3.tmp"  # as a kill during an atomic write would leave
    orphan.write_bytes(b"half")
    monkeypatch.delenv("DSR_TEST_KILL_SUBJECT")
    assert _participant(dataset, out, config, executor="ray", ray_address=ray_head) == 0
    status = _status(out)
    assert (status["status"] == "ok").all()
    for s, mtime in done.items():  # finished fits were skipped, not recomputed
        assert status.loc[f"sub-{s}", "reason"].startswith("skipped")
        assert (out / f"sub-{s}/func/{BASE.format(s=s)}_desc-convssm_metrics.json").stat().st_mtime_ns == mtime
    assert status.loc["sub-02", "reason"] == "" and (func / f"{stem}_metrics.json").is_file()
    assert json.loads((func / f"{stem}_provenance.json").read_text())["Status"] == "ok"
    assert not list(out.rglob("*.tmp"))

"""The product path's speed machinery: stage timers, fits written by parallel writer processes (the same
files byte for byte as written serially), runs extracted ahead in processes (the same tables), and the
product-path benchmark script on a tiny cohort."""
import json
import time

import numpy as np
import pytest

from dsr import timing
from dsr.config import load_config
from dsr.pipelines.fit_array import fit_many
from dsr.pipelines.writer import FitWriter, WriteJob


def test_stages_are_exclusive_and_add_up(tmp_path):
    timing.reset()
    with timing.stage("outer"):
        time.sleep(0.02)
        with timing.stage("inner"):
            time.sleep(0.05)
        time.sleep(0.02)
    with pytest.raises(ValueError):
        with timing.stage("inner"):
            raise ValueError("still counted")
    s = timing.seconds()
    assert set(s) == {"outer", "inner"}
    assert 0.04 <= s["outer"] < 0.05 + 0.04  # the inner stage paused it
    assert s["inner"] >= 0.05
    cpu = timing.cpu_seconds()
    assert set(cpu) == {"outer", "inner"} and cpu["inner"] < 0.04  # sleeping uses no CPU
    taken = timing.take()
    assert taken == {"wall": s, "cpu": cpu} and timing.seconds() == {} and timing.cpu_seconds() == {}
    timing.add(taken)
    timing.add({"wall": {"outer": 1.0}, "cpu": {"outer": 0.5}})
    assert timing.seconds()["outer"] == pytest.approx(s["outer"] + 1.0)
    assert timing.cpu_seconds()["outer"] == pytest.approx(cpu["outer"] + 0.5)
    path = timing.write(tmp_path / "t.json", {"note": 1})
    assert json.loads(path.read_text())["stage_cpu_seconds"]["inner"] == pytest.approx(timing.cpu_seconds()["inner"])
    timing.reset()


def _recordings(n: int, T: int = 120, N: int = 3):
    rng = np.random.default_rng(0)
    t = np.arange(T)[:, None]
    return [np.sin(0.3 * t + rng.uniform(0, 6, N)) + 0.1 * rng.standard_normal((T, N)) for _ in range(n)]


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_parallel_writer_writes_the_same_files_as_serial(tmp_path):
    cfg = load_config("quick").replace(train={"epochs": 2, "batches_per_epoch": 3},
                                       eval={"n_rollouts": 2, "lyap_steps": 40, "lyap_transient": 10,
                                             "lyap_orbits": 1})
    xs = _recordings(2)
    xs = [xs[0], xs[0], xs[1]]  # two seeds of one run share its preparation
    configs = [cfg.replace(seed=s) for s in (0, 1, 0)]
    fits = fit_many(xs, 1.0, configs)
    assert fits[0].data is fits[1].data and fits[0].data is not fits[2].data
    trees = {}
    for kind, nprocs in (("serial", 1), ("parallel", 2)):
        folder = tmp_path / kind
        with FitWriter(nprocs) as writer:
            for i, res in enumerate(fits):
                job = WriteJob(folder, f"sub-0{i}_desc-convssm", {"ConfigHash": res.config.hash()},
                               f"bids:raw:sub-0{i}/func/x_bold.nii.gz", f"x{i}_bold.nii.gz")
                writer.submit(job, res)
            results = writer.results()
        assert [r["status"] for r in results] == ["ok"] * 3
        assert [r["config_hash"] for r in results] == [f.config.hash() for f in fits]
        trees[kind] = _tree(folder)
    assert len(trees["serial"]) >= 3 * 9  # model + sidecar, series + sidecars, curve, figure, metrics, provenance
    assert trees["serial"].keys() == trees["parallel"].keys()
    for name, data in trees["serial"].items():
        assert trees["parallel"][name] == data, name
    prov = json.loads(trees["serial"]["sub-00_desc-convssm_provenance.json"])
    assert prov["Status"] == "ok" and "dstsp" in prov["Metrics"]


def test_seeds_of_a_seed_list_get_every_output_but_the_figure(tmp_path):
    """A fit of ``--seeds`` (``_seed-N`` in its name) writes model, metrics, generated series and curve but
    no figure of its own, and is done without it; a run fitted once still gets (and needs) its figure."""
    from dsr.io.derivatives import draws_fit_figure, fit_files, outputs_written

    cfg = load_config("quick").replace(train={"epochs": 1, "batches_per_epoch": 2},
                                       eval={"n_rollouts": 2, "lyap_steps": 20, "lyap_transient": 5,
                                             "lyap_orbits": 1})
    fit = fit_many(_recordings(1), 1.0, [cfg])[0]
    prefixes = {"sub-01_task-rest_seed-3_desc-convssm": False, "sub-01_task-rest_desc-convssm": True}
    with FitWriter(1) as writer:
        for prefix in prefixes:
            writer.submit(WriteJob(tmp_path, prefix, {"ConfigHash": "h"}, "s", "a_bold.nii.gz"), fit)
        assert [r["status"] for r in writer.results()] == ["ok", "ok"]
    for prefix, figure in prefixes.items():
        names = fit_files(prefix)
        assert draws_fit_figure(prefix) is figure
        for key in ("model", "metrics", "generated_obs", "generated_latent", "curve"):
            assert (tmp_path / names[key]).is_file(), key
        assert (tmp_path / names["figure"]).is_file() is figure
        assert outputs_written(tmp_path, prefix)
        if figure:
            (tmp_path / names["figure"]).unlink()
            assert not outputs_written(tmp_path, prefix)


def test_writer_failure_fails_that_fit_alone(tmp_path):
    cfg = load_config("quick").replace(train={"epochs": 1, "batches_per_epoch": 2},
                                       eval={"n_rollouts": 2, "lyap_steps": 20, "lyap_transient": 5,
                                             "lyap_orbits": 1})
    fits = fit_many(_recordings(2), 1.0, [cfg, cfg])
    blocked = tmp_path / "file"
    blocked.write_text("a file where a folder should be")
    with FitWriter(1) as writer:
        writer.submit(WriteJob(blocked / "sub", "a_desc-convssm", {"ConfigHash": "h"}, "s", "a_bold.nii.gz"), fits[0])
        writer.add({"status": "failed", "reason": "stack failed"})
        writer.submit(WriteJob(tmp_path / "ok", "b_desc-convssm", {"ConfigHash": "h"}, "s", "b_bold.nii.gz"), fits[1])
        results = writer.results()
    assert [r["status"] for r in results] == ["failed", "failed", "ok"]
    assert "file" in results[0]["reason"]


def test_runs_extracted_ahead_equal_serial_extraction(tmp_path):
    pytest.importorskip("nilearn")
    from dsr.pipelines.executors import ExecutorSettings
    from dsr.pipelines.plan import plan_participant
    from dsr.pipelines.stack import extract_ahead
    from dsr.simulate.bids_dataset import make_dataset

    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=3, seed=2, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    cfg = load_config("quick")
    tables = {}
    for kind, nprocs in (("serial", 1), ("ahead", 2)):
        out = tmp_path / kind
        plan = plan_participant(bids_dir, out, participant_labels=None, task=None, session=None, space=None,
                                atlas=None, config=cfg, confounds=None)
        jobs = plan.jobs(cfg, out, [0, 1])
        if nprocs == 1:
            from dsr.pipelines.fitrun import extract_job

            for job in jobs[::2]:
                assert extract_job(job)["status"] == "ok"
        else:
            extract_ahead(jobs, ExecutorSettings(kind="stack", nprocs=nprocs))
        tables[kind] = {k: v for k, v in _tree(out).items() if "timeseries" in k}
    assert len(tables["serial"]) == 6 and tables["serial"] == tables["ahead"]


def test_product_path_benchmark_runs_small(tmp_path):
    pytest.importorskip("nilearn")
    from bench_support import benchmark_module

    mod = benchmark_module("product_path", "product_path")
    out = tmp_path / "result.json"
    rc = mod.main(["--subjects", "2", "--seeds", "2", "--epochs", "2", "--regions", "3", "--volumes", "80",
                   "--tr", "1.0", "--config", "quick", "--device", "cpu", "--nprocs", "1", "--no-reports",
                   "--work", str(tmp_path / "work"), "--out", str(out)])
    res = json.loads(out.read_text())
    assert rc == 0 and res["status"] == {"ok": 4} and res["fits"] == 4
    for name in ("discovery", "extraction", "deconvolution", "training", "evaluation", "writing", "group"):
        assert name in res["stage_seconds"] and name in res["stage_cpu_seconds"], name  # each stage timed
    assert res["stage_seconds"]["training"] > 0 and res["stage_seconds"]["evaluation"] > 0
    assert res["wall_seconds"]["end_to_end"] >= res["wall_seconds"]["participant"] > 0
    assert res["peak_rss_mib"]["self"] > 0


def test_group_analysis_reuses_stored_spectrum_and_stacks_orbits(tmp_path):
    from dsr.analysis.attractor import analyse_fit, fit_orbits, read_tsv, start_state
    from dsr.io.derivatives import fit_paths
    from dsr.models.convssm import ConvSSM
    from dsr.pipelines.writer import write_outputs

    cfg = load_config("quick").replace(train={"epochs": 2, "batches_per_epoch": 3},
                                       eval={"n_rollouts": 2, "lyap_steps": 40, "lyap_transient": 10,
                                             "lyap_orbits": 1})
    fits = fit_many(_recordings(2), 1.0, [cfg.replace(seed=s) for s in (0, 1)])
    paths = []
    for i, res in enumerate(fits):
        write_outputs(res, tmp_path, f"f{i}_desc-convssm")
        paths.append(tmp_path / f"f{i}_desc-convssm_model.safetensors")
    orbits = fit_orbits(paths, [(30, 5), (30, 5)])
    for path, orbit in zip(paths, orbits):  # stacked generation equals each model's own
        model = ConvSSM.load(path)
        m64 = ConvSSM(model.spec, {k: v.double() for k, v in model.params.items()}, model.filter.double())
        z0 = start_state(read_tsv(fit_paths(path)["generated_latent"]))
        import torch

        alone = m64.generate(torch.as_tensor(z0)[None, None], 35)[0, 0, 5:].numpy()
        np.testing.assert_allclose(orbit, alone, rtol=1e-9, atol=1e-12)
    res = analyse_fit(paths[0], n_steps=30, transient=5, orbit=orbits[0])
    spectrum = json.loads((tmp_path / "f0_desc-convssm_metrics.json").read_text())["lyapunov_spectrum"]
    assert res.features["lyapunov_sum"] == pytest.approx(sum(spectrum) / 1.0)
    np.testing.assert_allclose(res.lyapunov, np.array(spectrum) / 1.0)


def test_prepare_unique_in_a_pool_equals_serial():
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from dsr.pipelines.fit_array import prepare_unique

    cfg = load_config("quick")
    xs = _recordings(2)
    xs, configs = [xs[0], xs[1], xs[0]], [cfg.replace(seed=s) for s in (0, 0, 1)]
    serial = prepare_unique(xs, 1.0, configs, [None] * 3)
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        pooled = prepare_unique(xs, 1.0, configs, [None] * 3, pool)
    assert serial[0][0] is serial[2][0] and pooled[0][0] is pooled[2][0]  # one preparation per recording
    assert [c.seed for _, _, c in pooled] == [0, 0, 1]
    for (sa, ha, ca), (sb, hb, cb) in zip(serial, pooled):
        assert ca == cb and np.array_equal(ha, hb)
        for name in ("x", "d", "d_full", "mean", "std"):
            assert np.array_equal(getattr(sa, name), getattr(sb, name), equal_nan=True), name


def test_shard_with_writer_processes_equals_serial_shard(tmp_path):
    """The GPU path of a stack shard (distinct runs prepared and fits written by writer processes) gives the
    same files, byte for byte, as the serial path, and the results in the fits' order."""
    pytest.importorskip("nilearn")
    from dsr.pipelines.fitrun import start_fit
    from dsr.pipelines.plan import plan_participant
    from dsr.pipelines.stack import fit_shards
    from dsr.simulate.bids_dataset import make_dataset

    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=2, seed=3, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    cfg = load_config("quick").replace(train={"epochs": 2, "batches_per_epoch": 3},
                                       eval={"n_rollouts": 2, "lyap_steps": 40, "lyap_transient": 10,
                                             "lyap_orbits": 1})
    trees, results = {}, {}
    for kind, writers in (("serial", 1), ("pool", 2)):
        out = tmp_path / kind
        plan = plan_participant(bids_dir, out, participant_labels=None, task=None, session=None, space=None,
                                atlas=None, config=cfg, confounds=None)
        memo: dict = {}
        pending = [start_fit(job, memo) for job in plan.jobs(cfg, out, [0, 1, 2])]
        res = fit_shards(([pending], writers, 1), "cpu")
        results[kind] = [(r["status"], r["config_hash"], r["metrics"]) for r in res["results"]]
        assert res["stages"]["wall"]["training"] > 0 and "writing" in res["stages"]["wall"]
        trees[kind] = _tree(out)
    assert [s for s, _, _ in results["serial"]] == ["ok"] * 6 and results["serial"] == results["pool"]
    assert trees["serial"].keys() == trees["pool"].keys() and len(trees["serial"]) > 6 * 9
    for name, data in trees["serial"].items():
        if name.endswith("_metrics.json"):  # the training's wall seconds differ between two trainings
            untimed = [{k: v for k, v in json.loads(t[name]).items() if "seconds" not in k} for t in trees.values()]
            assert untimed[0] == untimed[1], name
        else:
            assert trees["pool"][name] == data, name


def test_running_marks_written_in_threads_fail_one_by_one(tmp_path):
    """The "running" provenance start_fit defers is written by write_marks: every file that can be written
    is, and each that cannot is returned with its error (that fit fails alone)."""
    from dsr.pipelines.fitrun import write_marks

    blocked = tmp_path / "file"
    blocked.write_text("a file where a folder should be")
    marks = [(tmp_path / f"a{i}_provenance.json", {"Status": "running", "i": i}) for i in range(5)]
    marks.insert(2, (blocked / "b_provenance.json", {"Status": "running"}))
    errors = write_marks(marks, threads=3)
    assert list(errors) == [2] and "file" in str(errors[2]) and marks == []
    for i in range(5):
        assert json.loads((tmp_path / f"a{i}_provenance.json").read_text()) == {"Status": "running", "i": i}

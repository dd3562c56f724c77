"""The BIDS-App participant level on a generated dataset with one corrupt subject."""
import json

import pandas as pd
import pytest

from dsr.config import load_config
from dsr.errors import InputError
from dsr.pipelines.participant import run_participant
from dsr.simulate.bids_dataset import make_dataset

FUNC = "sub-{s}_task-rest_space-MNI152NLin2009cAsym_atlas-Sim"


@pytest.fixture(scope="module")
def config():
    cfg = load_config("quick")
    return cfg.replace(train={"epochs": 2, "batches_per_epoch": 5},
                       eval={"n_rollouts": 2, "lyap_steps": 100, "lyap_transient": 20, "lyap_orbits": 1})


def _run(bids_dir, out, config, **kw):
    args = dict(participant_labels=None, task=None, session=None, space=None, atlas=None, config=config,
                device="cpu", confounds=None)
    args.update(kw)
    return run_participant(bids_dir, out, **args)


def test_participant_with_a_corrupt_subject(tmp_path, config, capsys):
    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=3, seed=0, n_volumes=90, tr=1.0, n_regions=4, shape=(10, 10, 10))
    bad = bids_dir / "derivatives/fmriprep/sub-02/func/sub-02_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    bad.write_bytes(bad.read_bytes()[:5000])
    out = tmp_path / "out"
    assert _run(bids_dir, out, config) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "failed" in line and not line.startswith("dsr: progress:")]
    assert "dsr: progress: 3/3 fits finished (2 ok, 1 failed;" in err  # the failure is not counted as done
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in err
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "dsr"
    status = pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False).set_index("participant_id")
    assert status.loc["sub-02", "status"] == "failed" and str(bad) in status.loc["sub-02", "reason"]
    assert list(status.loc[["sub-01", "sub-03"], "status"]) == ["ok", "ok"]
    for s in ("01", "03"):
        func = out / f"sub-{s}" / "func"
        metrics = func / f"{FUNC.format(s=s)}_desc-convssm_metrics.json"
        assert metrics.is_file() and (func / f"{FUNC.format(s=s)}_desc-cleaned_timeseries.json").is_file()
        assert (func / f"{FUNC.format(s=s)}_desc-convssm_model.safetensors").is_file()
    before = metrics.stat().st_mtime_ns
    # rerun: finished fits are skipped, the bad subject fails again
    assert _run(bids_dir, out, config) == 1
    assert metrics.stat().st_mtime_ns == before
    status = pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False).set_index("participant_id")
    assert status.loc["sub-03", "reason"].startswith("skipped")
    # one subject by label, plus one that does not exist
    assert _run(bids_dir, out, config, participant_labels=["01", "09"]) == 1
    status = pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False).set_index("participant_id")
    assert status.loc["sub-09", "status"] == "failed" and len(status) == 4
    # raw runs (no fMRIPrep): TR inherited from the top-level sidecar, no confounds, no space entity
    assert _run(bids_dir, tmp_path / "out_raw", config, derivatives=None, participant_labels=["02"]) == 0
    assert (tmp_path / "out_raw/sub-02/func/sub-02_task-rest_atlas-Sim_desc-convssm_metrics.json").is_file()


def test_output_names_with_session():
    from pathlib import Path

    from dsr.io.bids import BoldRun, parse_name
    from dsr.io.derivatives import run_names

    name = "sub-01_ses-2_task-rest_run-3_space-T1w_desc-preproc_bold.nii.gz"
    run = BoldRun(Path(name), parse_name(name)[0], "fmriprep", Path("."))
    folder, base, label = run_names(run, "power2011")
    assert folder == Path("sub-01/ses-2/func") and base == "sub-01_ses-2_task-rest_run-3_space-T1w_atlas-power2011"
    assert label == "ses-2_task-rest_run-3_space-T1w_atlas-power2011"
    from dsr.io.derivatives import fit_files, fit_paths, fit_prefix, parse_fit_name

    prefix = fit_prefix(base, 4)
    assert prefix == f"{base}_seed-4_desc-convssm"
    model = Path("out") / folder / fit_files(prefix)["model"]
    assert parse_fit_name(model) == ("2", label, "4")
    paths = fit_paths(model)  # a seeded fit finds the run's cleaned series (named without the seed)
    assert paths["data"] == Path("out") / folder / f"{base}_desc-cleaned_timeseries.tsv"
    assert paths["metrics"].name == f"{prefix}_metrics.json" and paths["base"] == Path(base)


def test_version_is_defined_once_and_printed(capsys):
    import dsr
    from dsr.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dsr {dsr.__version__}"


def test_refuses_output_inside_bids_dir(tmp_path, config):
    (tmp_path / "ds").mkdir()
    with pytest.raises(InputError, match="must not lie inside"):
        _run(tmp_path / "ds", tmp_path / "ds" / "derivatives" / "dsr", config)
    with pytest.raises(InputError, match="no BOLD runs found"):
        _run(tmp_path / "ds", tmp_path / "out", config)


def test_concurrent_status_writers_keep_every_row(tmp_path):
    """Array tasks sharing OUT each add their row to status.tsv at once: none is lost."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_status_rows, args=(str(tmp_path), i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    from dsr.pipelines.status import read_status

    df = read_status(tmp_path)
    assert len(df) == 4 * 25 and set(df.participant_id) == {f"sub-{i}" for i in range(4)}


def _add_status_rows(folder: str, i: int) -> None:
    from pathlib import Path

    from dsr.pipelines.status import write_status

    rows = {}
    for k in range(25):  # one write per finished fit, as the executor does
        rows[(f"sub-{i}", f"run-{k}")] = [f"sub-{i}", f"run-{k}", "ok", "", "h"]
        write_status(Path(folder), rows)


def _snapshot(out):
    """Every file's bytes under ``out`` (the status table apart) and the status rows."""
    files = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
             and p.name not in ("status.tsv", ".status.lock")}
    return files, pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False)


def test_rerun_never_damages_finished_fits(tmp_path, config, capsys):
    """Over a finished output folder, a rerun with another config (or other extraction settings) and one
    with an impossible device leave every file and status row as they were, with one line each."""
    from dsr.cli import main

    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=2, seed=3, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    out = tmp_path / "out"
    assert _run(bids_dir, out, config, seeds=[0, 1]) == 0
    files, status = _snapshot(out)
    assert len(status) == 4 and (status.status == "ok").all()
    capsys.readouterr()
    assert _run(bids_dir, out, config.replace(train={"alpha": 0.3}), seeds=[0, 1]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "not fitted" in line]
    assert len(err) == 4 and all("a finished fit was made with config" in line for line in err)
    assert _run(bids_dir, out, config, seeds=[0, 1], high_pass=0.01) == 1  # other extraction settings
    assert _snapshot(out)[0] == files  # the cleaned series the fits were made from is kept too
    capsys.readouterr()
    for device in ("cuda:99", "tpu"):
        assert main([str(bids_dir), str(out), "participant", "--config", "quick", "--device", device]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dsr: error: ") and device in err[0], err
    new_files, new_status = _snapshot(out)
    assert new_files == files
    pd.testing.assert_frame_equal(new_status, status)


def test_one_config_identity_across_a_fits_files(tmp_path, config):
    """The config is resolved against the data (latent_dim raised to the 4 regions) before it is hashed:
    model, metrics, provenance and status.tsv name the same hash, that of the resolved config."""
    from dsr.config import DsrConfig

    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=1, seed=4, n_volumes=80, tr=1.0, n_regions=4, shape=(8, 8, 8))
    out = tmp_path / "out"
    small = config.replace(model={"latent_dim": 2, "observation": "identity"})
    assert _run(bids_dir, out, small) == 0
    stem = out / "sub-01" / "func" / f"{FUNC.format(s='01')}_desc-convssm"
    side = json.loads(stem.with_name(stem.name + "_model.json").read_text())
    model_cfg = DsrConfig.from_dict(side["spec"]["meta"]["config"])
    assert model_cfg.model.latent_dim == 4 and model_cfg == small.replace(model={"latent_dim": 4})
    h = model_cfg.hash()
    prov = json.loads(stem.with_name(stem.name + "_provenance.json").read_text())
    metrics = json.loads(stem.with_name(stem.name + "_metrics.json").read_text())
    status = pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False)
    assert h != small.hash()
    assert {side["spec"]["meta"]["config_hash"], prov["ConfigHash"], metrics["config_hash"],
            *status.config_hash} == {h}
    assert DsrConfig.from_dict(prov["Config"]).hash() == h
    assert _run(bids_dir, out, small) == 0  # the same request again: recognised as done
    assert pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False).reason[0].startswith("skipped")


def test_fit_without_its_figure_is_refitted_yet_never_replaced_by_another_config(tmp_path, config):
    """A finished fit whose figure is missing (a full disk) is not done: the same config fits it again and
    writes the figure; another config is still refused and leaves its files as they are."""
    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=1, seed=5, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    out = tmp_path / "out"
    assert _run(bids_dir, out, config) == 0
    func = out / "sub-01" / "func"
    figure = func / f"{FUNC.format(s='01')}_desc-convssm_fit.png"
    figure.unlink()
    files, status = _snapshot(out)
    assert _run(bids_dir, out, config.replace(train={"alpha": 0.3})) == 1
    assert _snapshot(out)[0] == files and not figure.exists()
    assert _run(bids_dir, out, config) == 0
    status = pd.read_csv(out / "status.tsv", sep="\t", keep_default_na=False)
    assert figure.is_file() and status.status[0] == "ok" and not status.reason[0].startswith("skipped")

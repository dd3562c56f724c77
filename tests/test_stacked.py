"""Participant level with --stack: every run x seed trained as one stacked model, each fit written as if
fitted alone (same files, metrics equal to a one-at-a-time run), a bad subject failing alone, reruns skipping."""
import json

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from dsr.cli import main
from dsr.config import load_config
from dsr.pipelines.participant import run_participant
from dsr.simulate.bids_dataset import make_dataset

STEM = "sub-{s}_task-rest_space-MNI152NLin2009cAsym_atlas-Sim_seed-{k}_desc-convssm"


@pytest.fixture(scope="module")
def config():
    return load_config("quick").replace(train={"epochs": 2, "batches_per_epoch": 4},
                                        eval={"n_rollouts": 2, "lyap_steps": 60, "lyap_transient": 10,
                                              "lyap_orbits": 1})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    bids_dir = tmp_path_factory.mktemp("stack") / "ds"
    make_dataset(bids_dir, n_subjects=4, seed=5, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    bad = bids_dir / "derivatives/fmriprep/sub-03/func/sub-03_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    bad.write_bytes(bad.read_bytes()[:4000])
    return bids_dir


def _run(bids_dir, out, config, **kw):
    args = dict(participant_labels=None, task=None, session=None, space=None, atlas=None, config=config,
                device="cpu", confounds=None, seeds=[0, 1])
    return run_participant(bids_dir, out, **dict(args, **kw))


def test_stacked_fits_equal_fits_alone(tmp_path, dataset, config, capsys):
    assert _run(dataset, tmp_path / "alone", config) == 1  # sub-03 is corrupt
    assert _run(dataset, tmp_path / "stacked", config, stack=True) == 1
    assert _run(dataset, tmp_path / "sharded", config, stack=True, nprocs=2) == 1  # two stacks, two processes
    err = capsys.readouterr().err
    assert "Traceback" not in err and "sub-03" in err
    status = pd.read_csv(tmp_path / "stacked" / "status.tsv", sep="\t", keep_default_na=False)
    assert (status.status == "failed").sum() == 2 and (status.status == "ok").sum() == 6  # 3 subjects x 2 seeds
    for s in ("01", "02", "04"):
        for k in (0, 1):
            files = {}
            for kind in ("alone", "stacked", "sharded"):
                func = tmp_path / kind / f"sub-{s}" / "func"
                files[kind] = (json.loads((func / f"{STEM.format(s=s, k=k)}_metrics.json").read_text()),
                               load_file(func / f"{STEM.format(s=s, k=k)}_model.safetensors"))
                assert (func / f"{STEM.format(s=s, k=k)}_provenance.json").is_file()
            (ma, pa) = files["alone"]
            assert files["stacked"][0]["stacked_with"] == 6 and files["sharded"][0]["stacked_with"] == 3
            for mb, pb in (files["stacked"], files["sharded"]):
                assert mb["seed"] == ma["seed"] == k
                for key, v in ma.items():
                    if isinstance(v, float) and not key.endswith("seconds"):
                        assert mb[key] == pytest.approx(v, rel=1e-5, abs=1e-7), key
                for name, v in pa.items():
                    np.testing.assert_allclose(pb[name], v, rtol=1e-5, atol=1e-6)


def test_stack_rerun_skips_and_cli_flag(tmp_path, dataset, config, capsys):
    out = tmp_path / "out"
    assert _run(dataset, out, config, stack=True, participant_labels=["01"]) == 0
    metrics = out / "sub-01" / "func" / f"{STEM.format(s='01', k=0)}_metrics.json"
    before = metrics.stat().st_mtime_ns
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text('[train]\nepochs = 2\nbatches_per_epoch = 4\n[eval]\nn_rollouts = 2\nlyap_steps = 60\n'
                        'lyap_transient = 10\nlyap_orbits = 1\n')
    rc = main([str(dataset), str(out), "participant", "--participant-label", "01", "--stack", "--seeds", "0", "1",
               "--config", str(cfg_file)])
    assert rc == 1 and "a finished fit was made with config" in capsys.readouterr().err  # another config: refused
    assert metrics.stat().st_mtime_ns == before
    assert main([str(dataset), str(out / "other"), "participant", "--participant-label", "01", "--stack",
                 "--seeds", "0", "1", "--config", str(cfg_file)]) == 0  # ... fitted in another folder
    other = out / "other" / "sub-01" / "func" / metrics.name
    before = other.stat().st_mtime_ns
    assert main([str(dataset), str(out / "other"), "participant", "--participant-label", "01", "--stack",
                 "--seeds", "0", "1", "--config", str(cfg_file)]) == 0
    assert other.stat().st_mtime_ns == before  # same config: skipped
    assert main([str(dataset), str(out), "participant", "--stack", "--executor", "ray"]) != 0
    assert "--stack" in capsys.readouterr().err

"""The ground-truth BIDS generator: layout, covariates, and recovery of the simulated region BOLD."""
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dsr.io import bids, extract, nifti
from dsr.simulate import bids_dataset, dynamics, hemodynamics


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "ds"
    info = bids_dataset.make_dataset(root, n_subjects=2, seed=3, n_volumes=200, tr=1.0, n_regions=6,
                                     shape=(12, 12, 12))
    return root, info


def _truth(root, sub):
    path = root / "derivatives" / "groundtruth" / f"sub-{sub}" / "func" / f"sub-{sub}_task-rest_desc-bold_timeseries.tsv"
    return pd.read_csv(path, sep="\t").to_numpy()


def test_layout_and_covariates(dataset):
    root, info = dataset
    parts = pd.read_csv(root / "participants.tsv", sep="\t")
    assert list(parts.columns) == ["participant_id", "age", "sex", "forcing"]
    assert np.allclose(parts["forcing"], info["params"], atol=1e-3)
    assert json.loads((root / "task-rest_bold.json").read_text())["RepetitionTime"] == 1.0
    runs = bids.find_runs(root)
    assert [r.subject for r in runs] == ["01", "02"] and all(r.source == "fmriprep" for r in runs)
    assert all(r.confounds is not None for r in runs)
    img = nib.load(str(runs[0].bold))
    assert img.shape == (12, 12, 12, 200) and nifti.header_tr(img) == 1.0
    conf = pd.read_csv(runs[0].confounds, sep="\t", na_values="n/a")
    assert {"trans_x", "rot_z", "white_matter", "csf", "global_signal", "framewise_displacement"} <= set(conf.columns)
    assert len(conf) == 200 and (root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz").is_file()
    atlas = nifti.load_atlas(root / "derivatives" / "atlas" / "tpl-MNI152NLin2009cAsym_atlas-Sim_dseg.nii.gz")
    assert atlas.names == [f"R{i:02d}" for i in range(1, 7)]


def test_cleaned_series_match_ground_truth(dataset):
    root, _ = dataset
    atlas = nifti.load_atlas(root / "derivatives" / "atlas" / "tpl-MNI152NLin2009cAsym_atlas-Sim_dseg.nii.gz")
    clean, raw = [], []
    for run in bids.find_runs(root):
        truth = _truth(root, run.subject)
        for strategy, store in (("motion6+wmcsf", clean), ("none", raw)):
            x = extract.extract_run(run, atlas, extract.ExtractionSettings(confounds=strategy)).series
            store += [np.corrcoef(x[:, i], truth[:, i])[0, 1] for i in range(truth.shape[1])]
    print(f"mean correlation with the simulated region BOLD: cleaned {np.mean(clean):.3f} "
          f"(min {np.min(clean):.3f}), uncleaned {np.mean(raw):.3f}")
    assert np.mean(clean) >= 0.95 and np.min(clean) >= 0.9
    assert np.mean(clean) > np.mean(raw) + 0.01  # motion and physiology do contaminate the voxels


def test_dynamics_and_balloon():
    rng = np.random.default_rng(0)
    x = dynamics.simulate("lorenz96", 5, 8.0, 60.0, 1.0, rng=rng)
    h = dynamics.simulate("hopf", 4, 0.3, 60.0, 1.0, rng=rng)
    assert x.shape == (60, 5) and h.shape == (60, 4) and np.isfinite(x).all() and np.isfinite(h).all()
    latent, bold = bids_dataset.simulate_region_bold("lorenz96", 7.0, 4, 80, 1.0, rng=rng, hemo="balloon")
    assert latent.shape == bold.shape == (80, 4) and np.isfinite(bold).all()
    step = np.zeros((300, 1))
    step[10:] = 1.0
    bw = hemodynamics.balloon_windkessel(step, 0.1)
    assert bw[:10].max() == 0 and 40 < np.argmax(bw[:, 0]) < 120  # peaks 3-11 s after the onset


def test_cli_refuses_non_empty(tmp_path, capsys):
    (tmp_path / "x").write_text("keep me")
    assert bids_dataset.main([str(tmp_path), "--subjects", "1"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_example_dataset_in_data():
    root = Path(__file__).resolve().parents[1] / "data"
    if not (root / "dataset_description.json").is_file():
        pytest.skip("data/ not generated")
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size <= 20 * 2**20
    runs = bids.find_runs(root)
    assert len(runs) == 6 and all(r.confounds is not None for r in runs)
    assert bids.repetition_time(runs[0], None)[0] == 1.0
    assert "forcing" in pd.read_csv(root / "participants.tsv", sep="\t").columns

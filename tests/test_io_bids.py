"""Discovery of BOLD runs, filters, fMRIPrep preference, TR inheritance and header/sidecar checks."""
import json

import numpy as np
import pytest

from dsr.errors import InputError
from dsr.io import bids
from dsr.io.nifti import header_tr, load_bold
from dsr.simulate.bids_dataset import write_nifti

TINY = np.ones((2, 2, 2, 4), np.int16)


def _touch_bold(path, tr=None):
    write_nifti(path, TINY, np.eye(4), tr)
    return path


def _json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def raw_ds(tmp_path):
    """sub-01 (2 sessions, rest runs 1-2, nback), sub-02 (rest), top-level TR 2 s, sub-02 overrides 1.5 s."""
    root = tmp_path / "ds"
    _json(root / "dataset_description.json", {"Name": "t", "BIDSVersion": "1.9.0"})
    _json(root / "task-rest_bold.json", {"RepetitionTime": 2.0, "TaskName": "rest"})
    _json(root / "task-nback_bold.json", {"RepetitionTime": 2.0})
    for ses in ("1", "2"):
        f = root / "sub-01" / f"ses-{ses}" / "func"
        for run in ("1", "2"):
            _touch_bold(f / f"sub-01_ses-{ses}_task-rest_run-{run}_bold.nii.gz")
        _touch_bold(f / f"sub-01_ses-{ses}_task-nback_bold.nii.gz")
    f2 = root / "sub-02" / "func"
    _touch_bold(f2 / "sub-02_task-rest_bold.nii.gz")
    _json(root / "sub-02" / "sub-02_task-rest_bold.json", {"RepetitionTime": 1.5})
    (root / "task-nback_events.tsv").write_text("onset\tduration\ttrial_type\n0\t4\tgo\n")
    return root


def test_parse_and_build_name_roundtrip():
    ents, suffix, ext = bids.parse_name("sub-01_ses-a_task-rest_run-2_space-MNI_desc-preproc_bold.nii.gz")
    assert ents == {"sub": "01", "ses": "a", "task": "rest", "run": "2", "space": "MNI", "desc": "preproc"}
    assert (suffix, ext) == ("bold", ".nii.gz")
    assert bids.build_name(ents, suffix, ext) == "sub-01_ses-a_task-rest_run-2_space-MNI_desc-preproc_bold.nii.gz"


def test_discovery_and_filters(raw_ds):
    runs = bids.find_runs(raw_ds)
    assert len(runs) == 7 and {r.source for r in runs} == {"raw"}
    assert [r.subject for r in bids.find_runs(raw_ds, participant_labels=["sub-02"])] == ["02"]
    assert len(bids.find_runs(raw_ds, participant_labels="01")) == 6
    assert len(bids.find_runs(raw_ds, task="nback")) == 2
    ses2 = bids.find_runs(raw_ds, session="2", task="rest")
    assert [(r.session, r.entities["run"]) for r in ses2] == [("2", "1"), ("2", "2")]
    assert bids.find_runs(raw_ds, participant_labels=["03"]) == []
    nback = bids.find_runs(raw_ds, task="nback")[0]
    assert nback.events == raw_ds / "task-nback_events.tsv"  # inherited from the top level
    assert bids.find_runs(raw_ds, task="rest")[0].events is None


def test_tr_inheritance(raw_ds):
    r1 = bids.find_runs(raw_ds, participant_labels=["01"], task="rest")[0]
    r2 = bids.find_runs(raw_ds, participant_labels=["02"])[0]
    assert bids.repetition_time(r1, None) == (2.0, str(raw_ds / "task-rest_bold.json"))
    tr, src = bids.repetition_time(r2, None)
    assert tr == 1.5 and src.endswith("sub-02_task-rest_bold.json")
    # a run-level sidecar beats both
    _json(r2.bold.parent / "sub-02_task-rest_bold.json", {"RepetitionTime": 0.8})
    assert bids.repetition_time(r2, None)[0] == 0.8


def test_tr_from_header_fallback_and_missing(tmp_path):
    root = tmp_path / "ds"
    _json(root / "dataset_description.json", {"Name": "t"})
    bold = _touch_bold(root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz", tr=2.5)
    run = bids.find_runs(root)[0]
    assert header_tr(load_bold(bold)) == pytest.approx(2.5)
    assert bids.repetition_time(run, header_tr(load_bold(bold))) == (2.5, str(bold))
    with pytest.raises(InputError) as err:
        bids.repetition_time(run, None)  # a header without a time unit gives None
    assert str(bold) in str(err.value) and "RepetitionTime" in str(err.value)
    assert "\n" not in str(err.value)


def test_tr_mismatch_names_file_and_values(raw_ds):
    run = bids.find_runs(raw_ds, participant_labels=["02"])[0]
    _touch_bold(run.bold, tr=3.0)
    with pytest.raises(InputError) as err:
        bids.repetition_time(run, header_tr(load_bold(run.bold)))
    msg = str(err.value)
    assert msg.startswith(str(run.bold)) and "3 s" in msg and "1.5 s" in msg


def test_fmriprep_preferred_space_choice_and_confounds(raw_ds):
    prep = raw_ds / "derivatives" / "fmriprep"
    _json(prep / "dataset_description.json", {"Name": "fMRIPrep", "DatasetType": "derivative"})
    f = prep / "sub-02" / "func"
    for space in ("T1w", "MNI152NLin2009cAsym"):
        _touch_bold(f / f"sub-02_task-rest_space-{space}_desc-preproc_bold.nii.gz")
    (f / "sub-02_task-rest_desc-confounds_timeseries.tsv").write_text("trans_x\n0\n0\n0\n0\n")
    found = bids.find_runs(raw_ds)
    runs = [r for r in found if r.problem is None]
    assert len(runs) == 1 and runs[0].source == "fmriprep" and runs[0].space == "MNI152NLin2009cAsym"
    # raw runs that fMRIPrep did not process are kept, with the reason, so that they get a status row
    unprocessed = [r for r in found if r.problem is not None]
    assert unprocessed and {r.subject for r in unprocessed} == {"01"}
    assert all("without fMRIPrep output" in r.problem and r.source == "raw" for r in unprocessed)
    assert runs[0].confounds.name == "sub-02_task-rest_desc-confounds_timeseries.tsv"
    assert [r for r in bids.find_runs(raw_ds, space="T1w") if r.problem is None][0].space == "T1w"
    assert bids.repetition_time(runs[0], None)[0] == 1.5  # inherited from the raw dataset
    assert {r.source for r in bids.find_runs(raw_ds, derivatives=None)} == {"raw"}
    # the fMRIPrep folder given directly as the input
    direct = bids.find_runs(prep, space="T1w")
    assert len(direct) == 1 and direct[0].raw_root is None
    assert bids.find_runs(raw_ds, participant_labels=["02"])[0].label() == "task-rest_space-MNI152NLin2009cAsym"


def test_missing_folder():
    with pytest.raises(InputError, match="BIDS folder not found"):
        bids.find_runs("/nonexistent/bids")

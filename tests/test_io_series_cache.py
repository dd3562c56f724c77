"""Extracted series are saved (TSV + JSON) and reused while inputs and settings are unchanged."""
import json
import os

import numpy as np

from dsr.io import bids, extract, nifti
from dsr.simulate.bids_dataset import write_nifti


def _dataset(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "ds"
    (root / "sub-01" / "func").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t"}')
    (root / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    labels = np.zeros((4, 4, 4), np.int16)
    labels[:2], labels[2:] = 1, 2
    bold = write_nifti(root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz",
                       (100 + rng.standard_normal((4, 4, 4, 40))).astype(np.float32), np.eye(4), 2.0)
    (root / "sub-01" / "func" / "sub-01_task-rest_events.tsv").write_text("onset\tduration\ttrial_type\n4\t6\tgo\n")
    atlas = write_nifti(tmp_path / "atlas.nii.gz", labels, np.eye(4))
    return bids.find_runs(root)[0], nifti.load_atlas(atlas), bold


def test_cache_reuse_and_invalidation(tmp_path):
    run, atlas, bold = _dataset(tmp_path)
    out, base = tmp_path / "out", "sub-01_task-rest_atlas-x"
    s = extract.ExtractionSettings(confounds="none")
    first = extract.extract_run_cached(run, atlas, s, out, base)
    assert not first.cached and first.inputs.shape == (40, 1)
    tsv = out / f"{base}_desc-cleaned_timeseries.tsv"
    side = json.loads((out / f"{base}_desc-cleaned_timeseries.json").read_text())
    assert side["RepetitionTime"] == 2.0 and side["SettingsHash"] and side["Columns"] == ["region-1", "region-2"]
    assert (out / f"{base}_desc-inputs_timeseries.json").is_file()
    again = extract.extract_run_cached(run, atlas, s, out, base)
    assert again.cached and np.allclose(again.series, first.series, atol=1e-6)
    assert np.allclose(again.inputs, first.inputs) and again.tr == 2.0
    # other settings -> recomputed
    hp = extract.extract_run_cached(run, atlas, extract.ExtractionSettings(confounds="none", high_pass=0.02), out, base)
    assert not hp.cached
    assert not extract.extract_run_cached(run, atlas, s, out, base).cached  # the entry now holds the old settings
    # a touched input -> recomputed; with content hashing a touch alone is not a change
    st = bold.stat()
    os.utime(bold, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not extract.extract_run_cached(run, atlas, s, out, base).cached
    sha = extract.ExtractionSettings(confounds="none", fingerprint="sha256")
    assert not extract.extract_run_cached(run, atlas, sha, out, base).cached
    os.utime(bold, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    assert extract.extract_run_cached(run, atlas, sha, out, base).cached
    assert tsv.is_file()

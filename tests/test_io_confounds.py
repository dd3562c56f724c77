"""Confound strategies read from fMRIPrep-style tables."""
import numpy as np
import pytest

from dsr.errors import InputError
from dsr.io import confounds


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    n = 60  # motion24 + mean + trend must leave half the degrees of freedom
    cols = {name: rng.normal(size=n) for name in confounds.MOTION6 + ("white_matter", "csf", "global_signal")}
    cols["trans_x_derivative1"] = np.concatenate([[np.nan], np.diff(cols["trans_x"])])
    fd = np.abs(rng.normal(0, 0.1, n))
    fd[[4, 11]] = 1.2
    fd[0] = np.nan
    cols["framewise_displacement"] = fd
    path = tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    lines = ["\t".join(cols)] + ["\t".join("n/a" if np.isnan(v[t]) else f"{v[t]:.6f}" for v in cols.values())
                                 for t in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path, cols, n


def test_strategy_columns():
    cols, scrub = confounds.strategy_columns("motion24+wmcsf+gsr+scrub=0.3")
    assert len(cols) == 24 + 2 + 1 and scrub == 0.3
    assert "rot_z_derivative1_power2" in cols and "trans_x_power2" in cols
    assert confounds.strategy_columns("none") == ([], None)
    assert confounds.strategy_columns("motion6+my_column")[0][-1] == "my_column"


def test_motion24_computed_and_first_row_zero(table):
    path, cols, n = table
    x, names = confounds.load_confounds(path, "motion24", n)
    assert x.shape == (n, 24) and np.isfinite(x).all()
    d = x[:, names.index("trans_y_derivative1")]
    assert d[0] == 0 and np.allclose(d[1:], np.diff(cols["trans_y"]), atol=1e-5)
    assert np.allclose(x[:, names.index("rot_x_power2")], cols["rot_x"] ** 2, atol=1e-5)


def test_scrubbing_spikes(table):
    path, _, n = table
    x, names = confounds.load_confounds(path, "motion6+wmcsf+scrub", n)
    spikes = x[:, [i for i, c in enumerate(names) if c.startswith("spike_")]]
    assert spikes.shape == (n, 2) and list(np.flatnonzero(spikes.sum(1))) == [4, 11]


def test_row_count_and_missing_column(table):
    path, _, n = table
    with pytest.raises(InputError, match="60 rows but the BOLD run has 65 volumes") as err:
        confounds.load_confounds(path, "motion6", n + 5)
    assert str(err.value).startswith(str(path))
    with pytest.raises(InputError, match="no column 'a_comp_cor_00'"):
        confounds.load_confounds(path, "a_comp_cor_00", n)
    assert confounds.load_confounds(path, "none", n)[0].shape == (n, 0)


def _fmriprep_run(tmp_path, extra=None, meta=None):
    """The example dataset's fMRIPrep table copied beside a BOLD file name, with extra columns and JSON."""
    import json
    from pathlib import Path

    import pandas as pd

    src = Path(__file__).resolve().parents[1] / "data" / "derivatives" / "fmriprep" / "sub-01" / "func"
    df = pd.read_csv(src / "sub-01_task-rest_desc-confounds_timeseries.tsv", sep="\t")
    for name, values in (extra or {}).items():
        df[name] = values
    func = tmp_path / "sub-01" / "func"
    func.mkdir(parents=True)
    path = func / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")
    path.with_suffix(".json").write_text(json.dumps(meta or {}))
    return path, func / "sub-01_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz", df


def test_fmriprep_table_selected_by_nilearn(tmp_path):
    """Beside its BOLD image, fMRIPrep's table is read by nilearn's load_confounds: the same columns and
    values as dsr's own reading (the derivatives' first row aside, which nilearn fills from the second)."""
    path, bold, df = _fmriprep_run(tmp_path)
    n = len(df)
    x, names = confounds.load_confounds(path, "motion24+wmcsf8+scrub=0.5", n, bold=bold)
    y, own = confounds.load_confounds(path, "motion24+wmcsf8+scrub=0.5", n)
    assert sorted(names) == sorted(own) and x.shape == y.shape == (n, len(own))
    cols = [own.index(c) for c in names]
    assert np.allclose(x[1:], y[1:, cols])
    spikes = [c for c in names if c.startswith("spike_")]  # dsr's own scrubbing: one regressor per volume
    fd = df["framewise_displacement"].fillna(0).to_numpy()
    assert len(spikes) == int((fd > 0.5).sum()) > 0


def test_compcor_cosine_and_non_steady_state_need_fmriprep(tmp_path):
    rng = np.random.default_rng(1)
    n = 300
    nss = np.zeros(n)
    nss[0] = 1
    extra = {"a_comp_cor_00": rng.normal(size=n), "a_comp_cor_01": rng.normal(size=n),
             "w_comp_cor_00": rng.normal(size=n), "cosine00": np.cos(np.linspace(0, np.pi, n)),
             "non_steady_state_outlier00": nss}
    meta = {"a_comp_cor_00": {"Method": "aCompCor", "Mask": "combined", "Retained": True},
            "a_comp_cor_01": {"Method": "aCompCor", "Mask": "combined", "Retained": True},
            "w_comp_cor_00": {"Method": "aCompCor", "Mask": "WM", "Retained": True}}
    path, bold, _ = _fmriprep_run(tmp_path, extra, meta)
    x, names = confounds.load_confounds(path, "motion6+compcor+nss", n, bold=bold)
    assert {"a_comp_cor_00", "a_comp_cor_01", "cosine00"} <= set(names) and "w_comp_cor_00" not in names
    spike = x[:, names.index("non_steady_state_000")]
    assert x.shape[0] == n and spike[0] == 1 and spike[1:].sum() == 0  # the run keeps its length
    x2, names2 = confounds.load_confounds(path, "compcor=anat_separated", n, bold=bold)
    assert "w_comp_cor_00" in names2
    with pytest.raises(InputError, match="needs fMRIPrep's confounds table"):
        confounds.load_confounds(path, "motion6+compcor", n)  # no BOLD image beside it: nilearn cannot tell
    with pytest.raises(InputError, match="bad option 'x'"):
        confounds.strategy_columns("aroma=x")

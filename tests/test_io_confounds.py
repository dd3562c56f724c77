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

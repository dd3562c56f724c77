"""The [extract] config section: parsing, validation and its use by region extraction."""
import numpy as np
import pytest

from dsr.config import DsrConfig, load_config
from dsr.errors import ConfigError
from dsr.io import bids, extract, nifti

from test_io_nifti import run_ds  # noqa: F401  (fixture: one raw run with a two-region atlas)


def test_extract_section_parses_and_validates(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[extract]\nhigh_pass = 0.01\nlow_pass = 0.1\nconfounds = "none"\ndetrend = false\n')
    cfg = load_config(p)
    assert (cfg.extract.high_pass, cfg.extract.low_pass, cfg.extract.confounds) == (0.01, 0.1, "none")
    assert cfg.extract.detrend is False and cfg.hash() != load_config("paper").hash()
    assert DsrConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ('high_pass = 0.1\nlow_pass = 0.01', 'low_pass = -1.0', 'confounds_mode = "drop"', 'band = 1'):
        p.write_text(f"[extract]\n{bad}\n")
        with pytest.raises(ConfigError, match="extract"):
            load_config(p)


def test_settings_from_config_and_overrides():
    cfg = load_config("paper").replace(extract={"high_pass": 0.01, "confounds": "motion6"})
    s = extract.ExtractionSettings.from_config(cfg.extract)
    assert (s.high_pass, s.confounds, s.confounds_mode, s.detrend) == (0.01, "motion6", "regress", True)
    s = extract.ExtractionSettings.from_config(cfg.extract, observation="regressor", high_pass=0.02, low_pass=None)
    assert (s.high_pass, s.low_pass, s.confounds_mode) == (0.02, None, "nuisance")


def test_band_pass_from_config_reaches_the_extracted_series(run_ds):  # noqa: F811
    run = bids.find_runs(run_ds["root"])[0]
    atlas = nifti.load_atlas(run_ds["atlas"])
    cfg = load_config("paper").replace(extract={"confounds": "none", "high_pass": 0.05, "low_pass": 0.2})
    from_cfg = extract.extract_run(run, atlas, extract.ExtractionSettings.from_config(cfg.extract))
    direct = extract.extract_run(run, atlas, extract.ExtractionSettings(confounds="none", high_pass=0.05, low_pass=0.2))
    plain = extract.extract_run(run, atlas, extract.ExtractionSettings(confounds="none"))
    np.testing.assert_allclose(from_cfg.series, direct.series)
    assert not np.allclose(from_cfg.series, plain.series)


def test_participant_plan_reads_the_extract_section(run_ds):  # noqa: F811
    from dsr.pipelines.plan import plan_participant

    cfg = load_config("paper").replace(extract={"high_pass": 0.01, "detrend": False, "confounds": "motion6"})
    kw = dict(participant_labels=None, task=None, session=None, space=None, atlas=str(run_ds["atlas"]), config=cfg)
    s = plan_participant(run_ds["root"], run_ds["tmp"] / "out", confounds=None, **kw).settings
    assert (s.high_pass, s.detrend, s.confounds, s.confounds_mode) == (0.01, False, "motion6", "regress")
    s = plan_participant(run_ds["root"], run_ds["tmp"] / "out", confounds="none", high_pass=0.02, **kw).settings
    assert (s.high_pass, s.detrend, s.confounds) == (0.02, False, "none")

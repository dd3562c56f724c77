"""Several seeds per run: the participant level fits each, the group level reports mean and spread."""
import numpy as np
import pandas as pd
import pytest

from dsr.analysis.seed_choice import selected_fits
from dsr.cli import main
from dsr.config import DsrConfig, apply_overrides, load_config
from dsr.errors import ConfigError
from dsr.pipelines.group import run_group
from dsr.simulate.bids_dataset import make_dataset

TINY = """
[model]
latent_dim = 3
hidden_dim = 8
[train]
epochs = 2
batches_per_epoch = 3
sequence_length = 30
[eval]
n_rollouts = 2
lyap_steps = 100
lyap_transient = 20
lyap_orbits = 1
pe_steps = 2
"""


def test_seeds_give_one_fit_each_and_a_spread(tmp_path, capsys):
    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=2, seed=2, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    assert main([str(bids_dir), str(out), "participant", "--config", str(cfg), "--seeds", "0", "1"]) == 0
    assert "2 seeds per run, each fitted on its own: --stack" in capsys.readouterr().err
    models = sorted(out.rglob("*_desc-convssm_model.safetensors"))
    assert len(models) == 4 and sum("_seed-1_" in m.name for m in models) == 2
    status = pd.read_csv(out / "status.tsv", sep="\t")
    assert len(status) == 4 and (status["status"] == "ok").all()
    assert run_group(bids_dir, out, config=load_config(cfg), n_perm=20, reports=False) == 0
    runs = pd.read_csv(out / "group" / "runs.tsv", sep="\t", dtype={"seed": str})
    assert sorted(runs["seed"]) == ["0", "0", "1", "1"] and runs["run"].nunique() == 1
    feats = pd.read_csv(out / "group" / "features.tsv", sep="\t")
    assert (feats["n_fits"] == 2).all() and "lyapunov_max_sd" in feats.columns
    assert not (out / "group" / "icc.tsv").exists()  # seeds are not test-retest repeats
    # a rerun skips the finished fits
    assert main([str(bids_dir), str(out), "participant", "--config", str(cfg), "--seeds", "0", "1"]) == 0
    assert "already done" in capsys.readouterr().err


def test_seeds_count_and_best_seed_per_run(tmp_path):
    """``[seeds] count`` fits every run that many times without ``--seeds``; ``combine = "best"`` takes each
    participant's features from the fit with the lowest held-out D_stsp, the spread still over all fits."""
    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=2, seed=3, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text("seed = 5\n" + TINY + '\n[seeds]\ncount = 3\ncombine = "best"\n')
    out = tmp_path / "out"
    assert main([str(bids_dir), str(out), "participant", "--config", str(cfg_path), "--stack"]) == 0
    models = sorted(out.rglob("*_desc-convssm_model.safetensors"))
    assert sorted({m.name.split("_seed-")[1].split("_")[0] for m in models}) == ["5", "6", "7"]
    assert len(models) == 6
    cfg = load_config(cfg_path)
    assert run_group(bids_dir, out, config=cfg, n_perm=20, reports=False) == 0
    runs = pd.read_csv(out / "group" / "runs.tsv", sep="\t", dtype={"seed": str})
    feats = pd.read_csv(out / "group" / "features.tsv", sep="\t").set_index("participant_id")
    for sub, fits in runs.groupby("participant_id"):
        best = fits.loc[fits["dstsp_test"].idxmin()]
        assert fits["selected"].sum() == 1 and fits.loc[fits["selected"] == 1, "seed"].item() == best["seed"]
        assert feats.loc[sub, "lyapunov_max"] == pytest.approx(best["lyapunov_max"], rel=1e-5)
        assert feats.loc[sub, "lyapunov_max_sd"] == pytest.approx(fits["lyapunov_max"].std(ddof=1), rel=1e-4)
        assert feats.loc[sub, "n_fits"] == 3 and feats.loc[sub, "n_selected"] == 1
    # "mean" over the same fits: the mean, not the best
    assert run_group(bids_dir, out, config=cfg.replace(seeds={"combine": "mean"}), n_perm=20, reports=False) == 0
    feats = pd.read_csv(out / "group" / "features.tsv", sep="\t").set_index("participant_id")
    for sub, fits in runs.groupby("participant_id"):
        assert feats.loc[sub, "lyapunov_max"] == pytest.approx(fits["lyapunov_max"].mean(), rel=1e-5)


def test_selected_fits_rule():
    runs = pd.DataFrame({"participant_id": ["a"] * 3 + ["b"] * 2, "session": [""] * 5, "run": ["1"] * 5,
                         "seed": ["0", "1", "2", "0", "1"], "dstsp_test": [0.5, 0.2, np.nan, np.nan, np.inf]})
    assert selected_fits(runs, "best", "dstsp_test").tolist() == [False, True, False, True, True]
    assert selected_fits(runs, "mean", "dstsp_test").all()
    assert selected_fits(runs, "best", "no_such_score").all()


@pytest.mark.parametrize("key,value", [("count", "0"), ("combine", "median"), ("select_by", "dstsp")])
def test_seeds_section_is_checked(key, value):
    with pytest.raises(ConfigError, match=f"seeds.{key}"):
        apply_overrides(DsrConfig(), [f"seeds.{key}={value}"])


def test_seeds_section_is_not_part_of_a_fits_identity():
    assert DsrConfig().replace(seeds={"count": 10, "combine": "best"}).hash() == DsrConfig().hash()


def test_subject_report_shows_the_kept_seed_with_best_else_the_median():
    from dsr.config import SeedsConfig
    from dsr.report.subject import shown_fit

    fits = [({}, None, {"dstsp_test": d}) for d in (0.9, 0.3, 0.5, float("nan"), 0.7)]
    assert shown_fit(fits) == 2  # median of 0.3, 0.5, 0.7, 0.9 (lower middle)
    assert shown_fit(fits, SeedsConfig(combine="mean")) == 2
    assert shown_fit(fits, SeedsConfig(combine="best")) == 1
    assert shown_fit([({}, None, {})] * 2, SeedsConfig(combine="best")) == 0


def test_keys_added_later_keep_old_fits_identity():
    """A config at the neutral value of every key added after fits were first hashed hashes as it did
    before (main a39596b: the defaults' hash was f36a9c1127f3); a changed value changes it."""
    assert DsrConfig().hash() == "f36a9c1127f3"
    assert DsrConfig().replace(train={"select_every": 25}).hash() != DsrConfig().hash()
    assert DsrConfig().replace(eval={"output_calibration": "moments"}).hash() != DsrConfig().hash()


def test_var1_reference_does_not_depend_on_the_shown_seed(tmp_path):
    """The subject report scores the VAR(1) reference and the data floor once per run, with the run's first seed:
    changing which seed the report shows (the median by held-out D_stsp) leaves both columns as they were."""
    import json

    from report_support import parse

    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=1, seed=4, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(TINY)
    out = tmp_path / "out"
    assert main([str(bids_dir), str(out), "participant", "--config", str(cfg_path), "--seeds", "3", "4", "5"]) == 0

    def report():
        assert run_group(bids_dir, out, config=load_config(cfg_path), n_perm=20) == 0
        page = parse(out / "sub-01.html")
        seeds = next(t for t in page.tables if t[0][:2] == ["seed", "shown"])
        quality = next(t for t in page.tables if t[0][:3] == ["metric (lower is better)", "convSSM", "VAR(1)"])
        return next(r[0] for r in seeds[1:] if r[1] == "yes"), [r[2:] for r in quality[1:]]

    shown, reference = report()
    metrics = sorted(out.rglob("*_metrics.json"))
    scores = {m: json.loads(m.read_text()) for m in metrics}
    order = sorted(metrics, key=lambda m: scores[m]["dstsp_test"])
    for m, d in zip(order, (5.0, 1.0, 3.0)):  # another seed becomes the median
        scores[m]["dstsp_test"] = d
        m.write_text(json.dumps(scores[m]))
    shown_after, reference_after = report()
    assert shown_after != shown
    assert reference_after == reference and any(v not in ("n/a", "") for row in reference for v in row)

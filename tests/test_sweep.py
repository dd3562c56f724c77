"""Sweep files, trials, selection on the held-out part, and ``dsr BIDS OUT sweep`` end to end (local)."""
import json

import numpy as np
import pandas as pd
import pytest

from dsr.errors import ConfigError
from dsr.pipelines.sweep import load_sweep, make_trials, select_best
from dsr.simulate.bids_dataset import make_dataset


def _write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_file_gives_every_combination_in_order(tmp_path):
    path = _write(tmp_path, 'base = "quick"\nseeds = [1, 2]\nmetric = "dh"\n[fixed]\n"train.epochs" = 3\n'
                            '[grid]\n"train.alpha" = [0.1, 0.2]\nmodel.latent_dim = [4, 8, 16]\n')
    spec = load_sweep(path)
    assert spec.name == "s" and spec.metric == "dh_test" and spec.seeds == [1, 2]
    trials = make_trials(spec)
    assert [t.values for t in trials][:4] == [{"train.alpha": 0.1, "model.latent_dim": 4},
                                              {"train.alpha": 0.1, "model.latent_dim": 8},
                                              {"train.alpha": 0.1, "model.latent_dim": 16},
                                              {"train.alpha": 0.2, "model.latent_dim": 4}]
    assert len({t.trial_id for t in trials}) == 6
    t = trials[4]
    assert (t.config.train.alpha, t.config.model.latent_dim, t.config.train.epochs) == (0.2, 8, 3)
    assert [x.trial_id for x in make_trials(load_sweep(path))] == [x.trial_id for x in trials]  # stable ids


def test_random_file_samples_reproducibly_within_ranges(tmp_path):
    path = _write(tmp_path, 'base = "quick"\n[random]\nn_samples = 5\nseed = 4\n'
                            '"train.lr_start" = {low = 1e-4, high = 1e-2, log = true}\n'
                            '"model.hidden_dim" = {choices = [8, 16]}\n"train.alpha" = {low = 0.0, high = 0.5}\n')
    a, b = make_trials(load_sweep(path)), make_trials(load_sweep(path))
    assert [t.values for t in a] == [t.values for t in b] and 1 <= len(a) <= 5
    for t in a:
        assert 1e-4 <= t.values["train.lr_start"] <= 1e-2 and t.values["model.hidden_dim"] in (8, 16)
        assert 0.0 <= t.values["train.alpha"] <= 0.5


@pytest.mark.parametrize("text, match", [
    ('[grid]\n"train.alpha" = [0.1]\n[random]\nn_samples = 1\n', "not both"),
    ('[grid]\n"train.nope" = [1]\n', "unknown key 'nope'"),
    ('[grid]\n"train.alpha" = [2.0]\n', "alpha must lie"),
    ('[grid]\n"train.alpha" = []\n', "non-empty list"),
    ('seeds = "0"\n', "seeds"),
    ('[random]\n"train.alpha" = {low = 0.1}\nn_samples = 2\n', "low = .., high"),
    ('colour = 1\n', "unknown sweep keys"),
])
def test_bad_sweep_files_are_config_errors(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_sweep(_write(tmp_path, 'base = "quick"\n' + text))


def test_shipped_sweeps_load_and_unknown_names_are_errors():
    assert len(make_trials(load_sweep("alpha_lr"))) == 6
    assert load_sweep("random_small").metric == "dh_test"
    with pytest.raises(ConfigError, match="unknown sweep 'nope'.*alpha_lr"):
        load_sweep("nope")


def test_select_best_takes_the_lowest_mean_over_seeds_and_skips_failures():
    table = pd.DataFrame({
        "trial_id": ["a", "a", "b", "b", "c", "a", "b"],
        "participant_id": ["sub-01"] * 5 + ["sub-02"] * 2,
        "status": ["ok", "ok", "ok", "ok", "failed", "ok", "ok"],
        "dstsp_test": [1.0, 3.0, 2.5, 1.0, 0.0, np.inf, 4.0],
    })
    best = select_best(table, "dstsp_test")
    assert best["sub-01"][:2] == ("b", 1.75) and [r["trial_id"] for r in best["sub-01"][2]] == ["b", "a"]
    assert best["sub-02"][:2] == ("b", 4.0)


def test_cli_sweep_level_writes_results_and_best_and_reruns_skip(tmp_path, capsys):
    from dsr.cli import main

    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=2, seed=1, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    sweep = _write(tmp_path, 'name = "a"\nbase = "quick"\nseeds = [0]\nmetric = "dstsp"\n'
                             '[fixed]\n"train.epochs" = 2\n"train.batches_per_epoch" = 4\n"eval.n_rollouts" = 2\n'
                             '"eval.lyap_steps" = 60\n"eval.lyap_transient" = 10\n"eval.lyap_orbits" = 1\n'
                             '[grid]\n"train.alpha" = [0.05, 0.3]\n', "a.toml")
    out = tmp_path / "out"
    args = [str(bids_dir), str(out), "sweep", "--sweep", str(sweep), "--n-jobs", "2"]
    assert main(args) == 0
    summary = out / "sweep" / "a"
    trials = pd.read_csv(summary / "trials.tsv", sep="\t")
    assert list(trials.columns) == ["trial_id", "train.alpha"] and len(trials) == 2
    res = pd.read_csv(summary / "results.tsv", sep="\t")
    assert len(res) == 4 and (res["status"] == "ok").all() and np.isfinite(res["dstsp_test"]).all()
    best = json.loads((summary / "sub-01_best.json").read_text())
    assert best["metric"] == "dstsp_test" and best["trial_id"] in set(trials["trial_id"])
    assert best["config"]["train"]["epochs"] == 2
    for tid in trials["trial_id"]:
        assert (out / "sweep" / tid / "status.tsv").is_file()
        assert (out / "sweep" / tid / "dataset_description.json").is_file()
    capsys.readouterr()
    assert main(args) == 0  # a rerun finds every fit done
    assert capsys.readouterr().err.count("already done, skipped") == 4
    pd.testing.assert_frame_equal(pd.read_csv(summary / "results.tsv", sep="\t"), res)
    assert main([str(bids_dir), str(out), "sweep"]) == 1
    assert "needs --sweep" in capsys.readouterr().err


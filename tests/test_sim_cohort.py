"""The simulated-cohort check (issue 14): generated subjects differing in one hidden parameter, raw NIfTI
through the participant and group levels, Spearman ρ of λ_max with the parameter (benchmarks/group_recovery.py).

At test scale (3 subjects, 2 epochs) ρ itself means nothing; this test checks the wiring that the recorded
ρ depends on: raw runs are what is fitted, every seed of every run is fitted in one stack, λ_max reaches
features.tsv for every subject, the parameter column is the one the generator drew, and the reported ρ
is the Spearman correlation of exactly those two columns. The benchmark run records ρ (RESULTS.md).
"""
import json

import numpy as np
import pandas as pd
import scipy.stats

from bench_support import benchmark_module as _module


def test_cohort_from_raw_nifti_reports_the_spearman_rho_of_lambda_max_with_the_hidden_forcing(tmp_path):
    gr = _module("group_recovery")
    rc = gr.main([str(tmp_path), "--subjects", "3", "--volumes", "90", "--regions", "4", "--epochs", "2",
                  "--raw", "--seeds", "2", "--stack", "--threshold", "0", "--no-reports"])
    res = json.loads((tmp_path / "group_recovery.json").read_text())
    assert res["inputs"] == "raw" and res["seeds"] == 2 and res["preregistered_feature"] == "lyapunov_max"
    truth = pd.read_csv(tmp_path / "ds" / "participants.tsv", sep="\t")
    table = pd.read_csv(tmp_path / "derivatives" / "group" / "features.tsv", sep="\t")
    assert list(table.participant_id) == list(truth.participant_id)
    np.testing.assert_allclose(res["parameters"], truth.forcing)
    assert len(set(np.round(res["parameters"], 3))) == 3  # the generator spreads the forcing over subjects
    lam = np.asarray(res["preregistered_values"], dtype=float)
    assert np.isfinite(lam).all() and (table.n_fits == 2).all()
    rho = scipy.stats.spearmanr(lam, truth.forcing).statistic
    reported = np.nan if res["preregistered_rho"] is None else float(res["preregistered_rho"])
    assert np.isclose(reported, rho, equal_nan=True)
    assert rc == (0 if np.isfinite(rho) else 1)
    metrics = sorted((tmp_path / "derivatives").glob("sub-*/func/*_seed-*_desc-convssm_metrics.json"))
    assert len(metrics) == 6
    for m in map(lambda f: json.loads(f.read_text()), metrics):
        assert m["source"].startswith("bids:raw:sub-") and m["source"].endswith("_bold.nii.gz")
        assert m["stacked_with"] == 6

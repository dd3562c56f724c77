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


def test_cohort_summary_true_exponents_and_seed_combinations(tmp_path):
    """benchmarks/sim_cohort_summary.py: the generator's true λ_max (Lorenz-96 at F = 8 on 40 sites: about 1.7 per
    time unit; F = 4.5 on 6 sites: a periodic orbit, 0) and ρ of each way of combining a subject's seeds."""
    cs = _module("sim_cohort_summary")
    assert 1.3 < cs.l96_lyapunov(8.0, 40, units=40) < 2.0
    assert abs(cs.l96_lyapunov(4.5, 6, units=40)) < 0.05
    folder = tmp_path / "cohort"
    folder.mkdir()
    forcing = [4.6, 5.0, 7.5]
    pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03"], "forcing": forcing}).to_csv(
        folder / "participants.tsv", sep="\t", index=False)
    lam = {"sub-01": [-0.05, -0.04, 0.9], "sub-02": [0.0, 0.01, -0.9], "sub-03": [0.05, 0.06, 0.04]}  # one outlier each
    rows = [{"participant_id": s, "seed": i, "lyapunov_max": v, "dstsp_test": 1.0 + i}
            for s, vs in lam.items() for i, v in enumerate(vs)]
    pd.DataFrame(rows).to_csv(folder / "runs.tsv", sep="\t", index=False)
    res = cs.main([str(folder), "--out", str(tmp_path / "s.json"), "--regions", "6", "--units", "20"])["cohorts"][0]
    assert res["rho"]["median"] == 1.0 and res["rho"]["best_dstsp_test"] == 1.0  # seed 0 has the lowest D_stsp
    assert res["rho"]["mean"] == scipy.stats.spearmanr([np.mean(v) for v in lam.values()], forcing)[0] == -0.5
    assert res["fits_per_subject"] == 3 and res["subjects"][2]["true_lambda_per_unit"] > 0.2  # F = 7.5 is chaotic

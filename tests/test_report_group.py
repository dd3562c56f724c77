"""The group report composed from small tables (no fits): the FDR sentence, the tests named, only
informative features drawn, quality kept apart."""
import numpy as np
import pandas as pd
from report_support import parse

from dsr.analysis import group_stats as gs
from dsr.report.group import GroupContext, dynamics_features, group_report


def _tables(signal: bool):
    rng = np.random.default_rng(0)
    n = 10
    age = np.arange(n) * 3.0 + 20
    table = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(n)],
                          "lyapunov_max": age * 0.01 if signal else rng.normal(size=n),
                          "kaplan_yorke_dim": rng.normal(size=n), "fp_count": np.ones(n),
                          "attractor_kind": rng.choice([2.0, 3.0], n), "dstsp": rng.uniform(size=n),
                          "age": age, "sex": list("FM" * (n // 2))})
    feats = ["lyapunov_max", "kaplan_yorke_dim", "fp_count", "attractor_kind", "dstsp"]
    tested = gs.informative_features(table, dynamics_features(feats))
    stats = gs.feature_covariate_tests(table, tested, ["age", "sex"], n_perm=300)
    D = np.abs(np.subtract.outer(age, age))
    return table, feats, stats, {"dstsp": D, "dh": D}, np.c_[age, age]


def _report(tmp_path, signal):
    table, feats, stats, dist, coords = _tables(signal)
    ctx = GroupContext(subject_reports=[(f"{s}.html", s) for s in table.participant_id], n_perm=300)
    rep = group_report(table, feats, stats, pd.DataFrame(), dist, coords, ["age", "sex"], tmp_path / "group.html",
                       ctx)
    return rep, parse(tmp_path / "group.html"), stats


def test_nothing_survives_fdr_is_said(tmp_path):
    rep, page, stats = _report(tmp_path, signal=False)
    assert (stats["q_fdr"] >= 0.05).all()
    said = [p for p in page.paragraphs if p.startswith("No test survives FDR correction at q < 0.05")]
    assert len(said) == 1 and f"smallest q = {stats.q_fdr.min():.2g}" in said[0]
    assert "fp_count" in next(p for p in page.paragraphs if p.startswith("Not drawn or tested"))
    assert set(stats.feature) == {"lyapunov_max", "kaplan_yorke_dim", "attractor_kind"}  # constant and quality out
    assert set(stats[stats.feature == "attractor_kind"].test) == {"kruskal_wallis", "chi_square"}
    tests_line = next(p for p in page.paragraphs if p.startswith("Tests: "))
    assert "Kruskal–Wallis" in tests_line and "false_discovery_control" in tests_line
    assert rep.failed == [] and len(page.imgs) == 5


def test_surviving_tests_are_counted(tmp_path):
    _, page, stats = _report(tmp_path, signal=True)
    n_sig = int((stats["q_fdr"] < 0.05).sum())
    assert n_sig >= 1
    assert not [p for p in page.paragraphs if p.startswith("No test survives")]
    assert f"{n_sig} of {len(stats)} tests survive FDR correction at q < 0.05." in page.paragraphs
    stats_table = next(t for t in page.tables if "q (BH-FDR)" in t[0])
    first = dict(zip(stats_table[0], stats_table[1]))
    assert first["feature"] == "lyapunov_max" and first["test"] == "spearman"

"""``group.html``: the group report.

Summary (participants, fits, failures, seeds, software, command, preset), links to every subject report,
errors, fit quality (held-out scores beside the VAR(1) reference: quality, not findings), the dynamics
features (only informative ones drawn), feature-covariate statistics with the test named, permutation p and
BH-FDR q (and a sentence when nothing survives), test-retest reliability, between-participant distances.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dsr.analysis.group_stats import NOMINAL_FEATURES, TEST_NAMES, informative_features
from dsr.config import DsrConfig
from dsr.report import captions, plots
from dsr.report.html import Report
from dsr.report.provenance import command_line, config_summary, reference_list, version_line

GROUP_FIGURES = ("feature distributions", "features vs covariates", "distance matrix D_stsp",
                 "distance matrix D_H", "embedding")
#: Features that measure how well a model fits its own data: fit quality, never tested as findings.
QUALITY_FEATURES = ("dstsp", "dh", "dstsp_test", "dh_test", "pe_test", "train_diverged")
FDR_LEVEL = 0.05


@dataclass
class GroupContext:
    """What the group report needs besides the tables."""

    status: pd.DataFrame = field(default_factory=pd.DataFrame)  # status.tsv, every row
    skipped: dict = field(default_factory=dict)  # participant → reason the group level skipped it
    subject_reports: list = field(default_factory=list)  # (href, participant_id)
    quality: list = field(default_factory=list)  # one dict per fit (from the subject reports)
    config: DsrConfig | None = None
    seeds: list = field(default_factory=list)
    n_perm: int = 0


def dynamics_features(feats: list[str]) -> list[str]:
    """The features that describe the reconstructed dynamics (fit-quality metrics left out)."""
    return [f for f in feats if f not in QUALITY_FEATURES and f.removesuffix("_sd") not in QUALITY_FEATURES]


def _summary(rep: Report, table: pd.DataFrame, ctx: GroupContext, covariates: list[str]) -> None:
    st = ctx.status
    failed = int((st["status"].fillna("") != "ok").sum()) if len(st) else 0
    rep.summary({"participants analysed": str(len(table)),
                 "participants skipped": str(len(ctx.skipped)),
                 "fits": str(len(ctx.quality)),
                 "runs in status.tsv": f"{len(st)} ({failed} not ok)" if len(st) else "no status.tsv",
                 "seeds": ", ".join(str(s) for s in ctx.seeds) if ctx.seeds else "one per run",
                 "features from": _combine_line(ctx),
                 "covariates": ", ".join(covariates) if covariates else "none (no participants.tsv columns)",
                 "permutations per test": str(ctx.n_perm), "software": version_line(),
                 "command (this report)": command_line(), **config_summary(ctx.config)})


def _combine_line(ctx: GroupContext) -> str:
    if len(ctx.seeds) < 2 or ctx.config is None:
        return "each fit" if len(ctx.seeds) < 2 else "the fits' mean"
    rule = ctx.config.seeds
    if rule.combine == "best":
        return f"each run's seed with the lowest {rule.select_by} (seeds.combine = best); *_sd over all seeds"
    return "the mean over each run's seeds (seeds.combine = mean); *_sd over the seeds"


def _errors(rep: Report, ctx: GroupContext) -> None:
    rep.heading("Errors", "errors")
    st = ctx.status
    bad = st[st["status"].fillna("") != "ok"] if len(st) else st
    if len(bad):
        rep.table(bad[["participant_id", "run", "status", "reason"]].fillna(""))
    if ctx.skipped:
        rep.table(pd.DataFrame({"participant_id": list(ctx.skipped), "skipped at the group level because":
                                list(ctx.skipped.values())}))
    if not len(bad) and not ctx.skipped:
        rep.text("No run failed and no participant was skipped.")


def _quality(rep: Report, ctx: GroupContext) -> None:
    rep.heading("Fit quality (how well each model reproduces held-out data; not a finding)", "quality")
    if not ctx.quality:
        rep.unavailable("fit quality", "no subject reports were made")
        return
    q = pd.DataFrame(ctx.quality)
    rep.table(q.rename(columns={"var1_dstsp_test": "VAR(1) dstsp_test", "var1_dh_test": "VAR(1) dh_test",
                                "floor_dstsp_test": "data floor dstsp_test", "floor_dh_test": "data floor dh_test"}))
    rep.text(" ".join(filter(None, [_wins(q, "dstsp_test", "D_stsp"), _wins(q, "dh_test", "D_H")]))
             + " " + captions.QUALITY + " " + captions.DATA_FLOOR)


def _wins(q: pd.DataFrame, metric: str, label: str) -> str:
    """'The convSSM's held-out <label> is below VAR(1)'s in k of n fits (the data floor: f of n).'"""
    cols = [metric, f"var1_{metric}"] + ([f"floor_{metric}"] if f"floor_{metric}" in q else [])
    if not all(c in q for c in cols[:2]):
        return ""
    both = q[cols].apply(pd.to_numeric, errors="coerce").dropna(subset=cols[:2])
    if not len(both):
        return ""
    wins = int((both[metric] < both[f"var1_{metric}"]).sum())
    text = f"The convSSM's held-out {label} is below the VAR(1) reference's in {wins} of {len(both)} fits"
    if len(cols) == 3 and both[cols[2]].notna().any():
        fl = both.dropna(subset=[cols[2]])
        text += (f"; the recording's own training part (the data floor) is below it in "
                 f"{int((fl[cols[2]] < fl[f'var1_{metric}']).sum())} of {len(fl)}")
    return text + "."


def _statistics(rep: Report, table: pd.DataFrame, stats: pd.DataFrame, tested: list[str]) -> None:
    rep.heading("Dynamics features against covariates", "statistics")
    if not len(stats):
        rep.text("No covariates to test (participants.tsv missing or without columns).")
        rep.figure("features vs covariates", lambda: plots.feature_vs_covariate(table, []))
        return
    used = list(dict.fromkeys(stats["test"]))
    rep.text("Tests: " + "; ".join(f"{t}: {TEST_NAMES.get(t, t)}" for t in used) + ". Nominal features ("
             + ", ".join(f for f in NOMINAL_FEATURES if f in tested) + ") are tested as categories. p: "
             "permutation p-value (scipy.stats.permutation_test); q: Benjamini–Hochberg FDR over all "
             f"{stats['p_permutation'].notna().sum()} tests (scipy.stats.false_discovery_control).")
    q = stats["q_fdr"].to_numpy(float)
    n_sig = int(np.sum(q < FDR_LEVEL))
    if n_sig == 0:
        smallest = f" (smallest q = {np.nanmin(q):.2g})" if np.isfinite(q).any() else ""
        rep.text(f"No test survives FDR correction at q < {FDR_LEVEL}{smallest}: none of the associations "
                 f"below is a finding (with {len(table)} participants only large effects could be detected).", "warn")
    else:
        rep.text(f"{n_sig} of {len(stats)} tests survive FDR correction at q < {FDR_LEVEL}.")
    shown = stats.sort_values("p_permutation", na_position="last")
    rep.table(shown.rename(columns={"p_permutation": "p (permutation)", "q_fdr": "q (BH-FDR)",
                                    "p_parametric": "p (parametric)"}))
    best = shown.dropna(subset=["statistic"]).head(6)
    rep.figure("features vs covariates", lambda: plots.feature_vs_covariate(table, best), captions.COVARIATES)


def group_report(table: pd.DataFrame, feats: list[str], stats: pd.DataFrame, icc: pd.DataFrame, dist: dict,
                 coords: np.ndarray, covariates: list[str], path: Path, ctx: GroupContext) -> Report:
    """Write group.html (see the module docstring)."""
    rep = Report("dsr group report")
    _summary(rep, table, ctx, covariates)
    rep.links(ctx.subject_reports, title="Subject reports")
    _errors(rep, ctx)
    _quality(rep, ctx)
    dyn = dynamics_features(feats)
    shown = informative_features(table, [f for f in dyn if not f.endswith("_sd")])
    dropped = [f for f in dyn if f not in shown and not f.endswith("_sd")]
    rep.heading("Dynamics features", "features")
    rep.table(table[["participant_id", *shown]])
    if dropped:
        rep.text("Not drawn or tested (fewer than three distinct values over participants): "
                 + ", ".join(dropped) + ".", "na")
    rep.figure("feature distributions", lambda: plots.feature_distributions(
        table, [f for f in shown if f not in NOMINAL_FEATURES]), captions.FEATURES)
    _statistics(rep, table, stats, shown)
    if len(icc):
        rep.heading("Test–retest reliability (ICC(1) over runs and sessions)", "icc")
        rep.table(icc)
    rep.heading("Between-participant dynamics distances", "distances")
    labels = list(table["participant_id"])
    rep.figure("distance matrix D_stsp", lambda: plots.distance_heatmap(dist["dstsp"], labels, "D_stsp"),
               captions.DISTANCES)
    rep.figure("distance matrix D_H", lambda: plots.distance_heatmap(dist["dh"], labels, "D_H"),
               captions.DISTANCES)
    colour = table[covariates[0]] if covariates else None
    rep.figure("embedding", lambda: plots.embedding(coords, labels, colour, covariates[0] if covariates else ""),
               captions.EMBEDDING)
    rep.heading("Methods", "methods")
    rep.text("Per-participant features are means over that participant's fits (the most frequent category for "
             "nominal features). Each informative dynamics feature was tested against each participants.tsv "
             "column with the tests named above; p-values by permutation, q-values by the Benjamini–Hochberg "
             "procedure over all tests. Fit-quality metrics (D_stsp, D_H, PE) are reported as quality, not "
             "tested. Methods of the reconstruction: [1–5].")
    rep.references(reference_list())
    rep.write(path)
    return rep

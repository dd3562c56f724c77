"""The BIDS-App ``group`` level: features of every fitted model, group statistics and HTML reports.

Reads the fits the participant level wrote (``OUTPUT_DIR/sub-*/[ses-*/]func/*_desc-convssm_model.safetensors``)
and writes, atomically, into ``OUTPUT_DIR/group/`` (each TSV with a JSON sidecar):

- ``runs.tsv``: one row per fit (participant_id, session, run, features);
- ``features.tsv``: one row per participant, the mean over fits (``*_sd``: spread over fits where a
  participant has several), joined with ``participants.tsv``;
- ``stats.tsv``: each feature against each participants.tsv column (Spearman or F test, permutation p,
  BH-FDR q); ``icc.tsv``: test–retest ICC(1) of each feature where participants have several fits;
- ``distance-dstsp.tsv``, ``distance-dh.tsv``, ``embedding.tsv``: symmetrised D_stsp / D_H between
  participants' generated series and their classical-MDS embedding;

and the reports ``OUTPUT_DIR/group.html`` and ``OUTPUT_DIR/sub-XX.html``. A participant folder that cannot
be analysed is reported in one line and skipped.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dsr import __version__
from dsr.analysis import group_stats as gs
from dsr.analysis.attractor import KINDS, FitAnalysis, analyse_fit, read_tsv
from dsr.config import DsrConfig
from dsr.errors import InputError
from dsr.io import participants
from dsr.io.atomic import atomic_write_text, write_json
from dsr.report import plots
from dsr.report.html import Report

log = logging.getLogger("dsr")
SUBJECT_FIGURES = ("training curve", "data vs generated", "attractor 2-D", "attractor 3-D", "power spectra",
                   "Lyapunov spectrum", "fixed points")
GROUP_FIGURES = ("feature distributions", "features vs covariates", "distance matrix D_stsp",
                 "distance matrix D_H", "embedding")
ID_COLUMNS = ("participant_id", "session", "run", "seed")


def find_fits(output_dir: Path) -> dict[str, list[Path]]:
    """Model files of every participant folder, ``{"sub-01": [paths]}`` (folders without fits map to [])."""
    out = {}
    for sub in sorted(p for p in output_dir.glob("sub-*") if p.is_dir()):
        out[sub.name] = sorted(sub.rglob("*_desc-convssm_model.safetensors"))
    return out


def write_table(path: Path, df: pd.DataFrame, description: str, columns: dict | None = None) -> Path:
    """A TSV (n/a for missing) and its JSON sidecar, both atomically."""
    atomic_write_text(path, df.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.6g"))
    side = {"Description": description, "GeneratedBy": [{"Name": "dsr", "Version": __version__}]}
    if columns:
        side.update({k: {"Description": v} for k, v in columns.items() if k in df.columns})
    write_json(path.with_suffix(".json"), side)
    return path


FEATURE_DOC = {
    "lyapunov_max": "maximal Lyapunov exponent (1/s)", "lyapunov_sum": "sum of the Lyapunov spectrum (1/s)",
    "kaplan_yorke_dim": "Kaplan-Yorke dimension", "attractor_kind": "0 fixed point, 1 cycle, 2 quasi-periodic, "
    "3 chaotic, 4 divergent", "cycle_period": "period of a cycle (steps), 1 for a fixed point",
    "fp_count": "fixed points found (SCYFI)", "fp_stable_count": "stable fixed points",
    "fp_min_spectral_radius": "smallest spectral radius over fixed points", "cycle2_count": "2-cycles found",
    "dstsp": "D_stsp of generated vs own data", "dh": "D_H of generated vs own data",
    "peak_freq_hz": "median peak frequency of the long orbit through the decoder (Hz)",
    "autocorr_time_s": "median autocorrelation time (1/e) of the long orbit through the decoder (s)",
    "gen_peak_freq_hz": "median peak frequency of the saved generated series (Hz)",
    "gen_autocorr_time_s": "median autocorrelation time of the saved generated series (s)",
    "data_peak_freq_hz": "median peak frequency of the data (Hz)",
    "data_autocorr_time_s": "median autocorrelation time of the data (s)",
    "latent_amplitude": "mean standard deviation of the latent orbit", "n_fits": "fits averaged"}


def _entities(path: Path, sub: str) -> tuple[str, str, str]:
    """Session, run label (without sub- and seed-) and seed of a fit's file name."""
    name = path.name.split("_desc-")[0]
    ents = dict(e.split("-", 1) for e in name.split("_") if "-" in e)
    run = "_".join(p for p in name.split("_") if not p.startswith(("sub-", "seed-")))
    return ents.get("ses", ""), run, ents.get("seed", "")


def analyse_subject(sub: str, fits: list[Path], config: DsrConfig) -> list[tuple[dict, FitAnalysis]]:
    """Features of every fit of one participant; raises when a fit cannot be read."""
    if not fits:
        raise InputError("no fitted model (*_desc-convssm_model.safetensors); did the participant level fail?")
    out = []
    for path in fits:
        res = analyse_fit(path, n_steps=min(config.eval.lyap_steps, 5000),
                          transient=min(config.eval.lyap_transient, 1000), seed=config.seed)
        ses, run, seed = _entities(path, sub)
        out.append(({"participant_id": sub, "session": ses, "run": run, "seed": seed, **res.features}, res))
    return out


def subject_table(runs: pd.DataFrame, feats: list[str]) -> pd.DataFrame:
    """Mean over fits per participant, with ``*_sd`` columns where any participant has several fits."""
    g = runs.groupby("participant_id", sort=True)
    table = g[feats].mean()
    table["n_fits"] = g.size().astype(float)
    if (table["n_fits"] > 1).any():
        sd = g[feats].std(ddof=1).add_suffix("_sd")
        table = table.join(sd)
    return table.reset_index()


def read_participants(bids_dir: Path, known: list[str] | None = None) -> pd.DataFrame | None:
    """participants.tsv as strings (None when absent); see :func:`dsr.io.participants.read_participants`."""
    return participants.read_participants(Path(bids_dir) / "participants.tsv", known)


def _numeric_cols(df: pd.DataFrame, exclude) -> list[str]:
    return [c for c in df.columns if c not in exclude and pd.api.types.is_numeric_dtype(df[c])]


def subject_report(sub: str, items: list[tuple[dict, FitAnalysis]], path: Path) -> Report:
    """sub-XX.html: input quality, training curve, data vs generated, attractor, spectra, λ, fixed points."""
    rep = Report(f"dsr report: {sub}")
    for row, res in items:
        p = res.paths
        rep.heading(f"{row['run']} — attractor: {res.kind.replace('_', ' ')}")
        try:
            meta = json.loads(p["data_json"].read_text()) if p["data_json"].is_file() else {}
            quality = {k: v for k, v in meta.items() if isinstance(v, (int, float, str)) and len(str(v)) < 80}
            if quality:
                rep.text("Input (cleaned series sidecar):")
                rep.table(pd.DataFrame({"field": list(quality), "value": [str(v) for v in quality.values()]}))
        except (OSError, ValueError) as exc:
            log.warning("%s: input sidecar unreadable: %s", sub, exc)
        feats = {k: v for k, v in row.items() if k not in ID_COLUMNS}
        rep.table(pd.DataFrame({"feature": list(feats), "value": list(feats.values())}))
        x = read_tsv(p["data"]) if p["data"].is_file() else None
        xg = read_tsv(p["generated_obs"])
        fps = res.fixed_points + res.cycles2
        rep.figure("training curve", lambda: plots.training_curve(read_tsv(p["curve"])))
        rep.figure("data vs generated", lambda: plots.data_vs_generated(x, xg, res.tr))
        pts = np.array([c.points[0] for c in res.fixed_points]) if res.fixed_points else None
        rep.figure("attractor 2-D", lambda: plots.attractor_2d(res.orbit, pts, [c.stable for c in res.fixed_points],
                                                               read_tsv(p["generated_latent"])))
        rep.figure("attractor 3-D", lambda: plots.attractor_3d(res.orbit))
        rep.figure("power spectra", lambda: plots.power_spectra(x, xg, res.tr))
        rep.figure("Lyapunov spectrum", lambda: plots.lyapunov_spectrum(res.lyapunov))
        rep.figure("fixed points", lambda: plots.eigenvalues(fps), "eigenvalues of fixed points and 2-cycles")
    rep.write(path)
    return rep


def group_report(table: pd.DataFrame, feats: list[str], stats: pd.DataFrame, icc: pd.DataFrame,
                 dist: dict, coords: np.ndarray, covariates: list[str], path: Path) -> Report:
    """group.html: feature distributions, features vs covariates, distance matrices and embedding."""
    rep = Report("dsr group report")
    rep.text(f"{len(table)} participants; features are means over each participant's fits.")
    rep.heading("Features")
    rep.table(table)
    rep.figure("feature distributions", lambda: plots.feature_distributions(table, feats))
    rep.heading("Features against covariates")
    if len(stats):
        top = stats.sort_values("p_permutation", na_position="last")
        rep.table(top)
        best = top.dropna(subset=["statistic"]).head(6)
        pairs = [(r.feature, r.covariate, r.statistic) for r in best.itertuples()]
    else:
        rep.text("no covariates (participants.tsv missing or without columns)")
        pairs = []
    rep.figure("features vs covariates", lambda: plots.feature_vs_covariate(table, pairs))
    if len(icc):
        rep.heading("Test–retest reliability (ICC(1) over runs and sessions)")
        rep.table(icc)
    rep.heading("Between-participant dynamics distances")
    labels = list(table["participant_id"])
    rep.figure("distance matrix D_stsp", lambda: plots.distance_heatmap(dist["dstsp"], labels, "D_stsp"))
    rep.figure("distance matrix D_H", lambda: plots.distance_heatmap(dist["dh"], labels, "D_H"))
    colour = table[covariates[0]] if covariates else None
    rep.figure("embedding", lambda: plots.embedding(coords, labels, colour, covariates[0] if covariates else ""),
               "classical MDS of D_stsp")
    rep.write(path)
    return rep


def run_group(bids_dir: Path, output_dir: Path, config: DsrConfig | None = None, n_perm: int = 2000,
              reports: bool = True) -> int:
    """Run the group level of the BIDS App.

    Parameters
    ----------
    bids_dir : Path
        The input dataset (its participants.tsv gives the covariates).
    output_dir : Path
        The participant level's output folder.
    config : DsrConfig, optional
        Orbit lengths come from ``config.eval`` (lyap_steps, lyap_transient, capped at 5000 / 1000).
    n_perm : int
        Permutations per test.
    reports : bool
        Write the HTML reports (group.html and sub-XX.html).

    Returns
    -------
    int
        0 when every participant folder was analysed, 1 when some were skipped.

    Raises
    ------
    InputError
        No participant folder with a fitted model.
    """
    from dsr.config import load_config

    config = config if config is not None else load_config("quick")
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    fits = find_fits(output_dir)
    if not any(fits.values()):
        raise InputError("no fitted models found; run the participant level first", output_dir)
    done, skipped = {}, 0
    for sub, paths in fits.items():
        try:
            done[sub] = analyse_subject(sub, paths, config)
        except Exception as exc:  # one bad folder: one line, the others go on
            print(f"dsr: {sub}: skipped: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
            skipped += 1
    if not done:
        raise InputError("no participant folder could be analysed", output_dir)
    gdir = output_dir / "group"
    runs = pd.DataFrame([row for items in done.values() for row, _ in items])
    feats = _numeric_cols(runs, ID_COLUMNS)
    write_table(gdir / "runs.tsv", runs, "Dynamics features of every fit", FEATURE_DOC)
    table = subject_table(runs, feats)
    parts = read_participants(bids_dir, list(fits))
    covariates = []
    if parts is None:
        log.warning("group: %s/participants.tsv missing: no covariates", bids_dir)
    else:
        covariates = [c for c in parts.columns if c != "participant_id"]
        table = table.merge(parts, on="participant_id", how="left")
        for c in covariates:
            num = pd.to_numeric(table[c].replace("n/a", np.nan), errors="coerce")
            if num.notna().sum() == table[c].replace("n/a", np.nan).notna().sum():
                table[c] = num
    write_table(gdir / "features.tsv", table, "Per-participant dynamics features (mean over fits; *_sd: spread "
                "over fits) joined with participants.tsv", FEATURE_DOC)
    stats = gs.feature_covariate_tests(table, feats, covariates, n_perm=n_perm, seed=config.seed)
    write_table(gdir / "stats.tsv", stats, "Each feature against each participants.tsv column: Spearman "
                "correlation (effect: Pearson r) or one-way F (effect: eta squared); permutation p; BH-FDR q")
    icc_rows = []
    per_run = runs.groupby(["participant_id", "session", "run"], as_index=False)[feats].mean()  # seeds averaged
    if (per_run.groupby("participant_id").size() > 1).any():
        icc_rows = [{"feature": f, **gs.icc(per_run[f], per_run["participant_id"])} for f in feats]
    icc = pd.DataFrame(icc_rows)
    if len(icc):
        write_table(gdir / "icc.tsv", icc, "Test-retest ICC(1) over runs and sessions (seeds averaged), with between- and within-participant "
                    "variances")
    series = [read_tsv(done[s][0][1].paths["generated_obs"]) for s in table["participant_id"]]
    dist = gs.dynamics_distances(series, n_bins=config.eval.dstsp_bins, scaling=config.eval.dstsp_scaling,
                                 bins_max_dims=config.eval.bins_max_dims, smoothing=config.eval.spectrum_smoothing)
    ids = list(table["participant_id"])
    for name, D in dist.items():
        write_table(gdir / f"distance-{name}.tsv", pd.DataFrame(D, columns=ids).assign(participant_id=ids)
                    [["participant_id"] + ids], f"Symmetrised {name} between participants' generated series "
                    "(first fit, each z-scored)")
    base = dist["dstsp"] if np.isfinite(dist["dstsp"]).any() or len(ids) < 2 else dist["dh"]
    coords = gs.classical_mds(base, 2)
    write_table(gdir / "embedding.tsv", pd.DataFrame({"participant_id": ids, "mds1": coords[:, 0],
                                                      "mds2": coords[:, 1]}), "Classical MDS of D_stsp")
    if reports:
        for sub, items in done.items():
            subject_report(sub, items, output_dir / f"{sub}.html")
        group_report(table, feats, stats, icc, dist, coords, covariates, output_dir / "group.html")
    kinds = runs["attractor_kind"].map(lambda k: KINDS[int(k)] if np.isfinite(k) else "n/a").value_counts()
    log.info("group: %d participant(s) analysed, %d skipped; attractors: %s; outputs in %s", len(done), skipped,
             ", ".join(f"{k} {v}" for k, v in kinds.items()), gdir)
    return 1 if skipped else 0

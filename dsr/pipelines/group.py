"""The BIDS-App ``group`` level: features of every fitted model, group statistics and HTML reports.

Reads the fits the participant level wrote (``OUTPUT_DIR/sub-*/[ses-*/]func/*_desc-convssm_model.safetensors``)
and writes, atomically, into ``OUTPUT_DIR/group/`` (each TSV with a JSON sidecar):

- ``runs.tsv``: one row per fit (participant_id, session, run, features);
- ``features.tsv``: one row per participant, the mean over fits — all of them, or each run's best seed with
  ``seeds.combine = "best"`` (:mod:`dsr.analysis.seed_choice`) — (``*_sd``: spread over all fits where a
  participant has several), joined with ``participants.tsv``;
- ``stats.tsv``: each informative dynamics feature (fit-quality metrics left out) against each
  participants.tsv column (Spearman, one-way F, or for a nominal feature Kruskal–Wallis / chi-square;
  permutation p, BH-FDR q; :mod:`dsr.analysis.group_stats`); ``icc.tsv``: test–retest ICC(1) of each feature
  where participants have several fits;
- ``distance-dstsp.tsv``, ``distance-dh.tsv``, ``embedding.tsv``: symmetrised D_stsp / D_H between
  participants' generated series and their classical-MDS embedding;
- ``distance-fc.tsv``, ``distance-lyapunov.tsv``: model-based distances over all of a participant's kept fits:
  1 − correlation of the functional connectivity of their generated series (each fit's z-scored, pooled), and
  the Euclidean distance between their mean Lyapunov spectra (per second);

and the reports ``OUTPUT_DIR/group.html`` and ``OUTPUT_DIR/sub-XX.html``. A participant folder that cannot
be analysed is reported in one line and skipped.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dsr import __version__, timing
from dsr.analysis import group_stats as gs
from dsr.analysis.distances import fc_distances, vector_distances
from dsr.analysis.seed_choice import RUN_KEYS, selected_fits
from dsr.analysis.attractor import FEATURE_DOC, KINDS, FitAnalysis, analyse_fit, fit_orbits, read_tsv
from dsr.config import DsrConfig
from dsr.errors import InputError
from dsr.io import participants
from dsr.io.atomic import atomic_write_text, write_json
from dsr.io import derivatives as layout
from dsr.io.derivatives import GROUP_DIR, find_fits, fit_paths, parse_fit_name
from dsr.log import user_log
from dsr.pipelines.executors import ExecutorSettings, run_tasks
from dsr.pipelines.status import one_line, read_status
from dsr.report.group import GROUP_FIGURES, GroupContext, dynamics_features, group_report
from dsr.report.subject import ID_COLUMNS, QC_FIGURES, SUBJECT_FIGURES, SubjectContext, subject_report

log = user_log()
__all__ = ["GROUP_FIGURES", "QC_FIGURES", "SUBJECT_FIGURES", "run_group", "analyse_subject"]


def write_table(path: Path, df: pd.DataFrame, description: str, columns: dict | None = None) -> Path:
    """A TSV (n/a for missing) and its JSON sidecar, both atomically."""
    atomic_write_text(path, df.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.6g"))
    side = {"Description": description, "GeneratedBy": [{"Name": "dsr", "Version": __version__}]}
    if columns:
        side.update({k: {"Description": v} for k, v in columns.items() if k in df.columns})
    write_json(path.with_suffix(".json"), side)
    return path


def fit_config(model_path: Path) -> DsrConfig:
    """The resolved config a fit was made with (from its model's JSON sidecar)."""
    side = json.loads(Path(model_path).with_suffix(".json").read_text())
    return DsrConfig.from_dict(side["spec"]["meta"]["config"])


def analyse_subject(sub: str, fits: list[Path], config: DsrConfig | None = None) -> list[tuple[dict, FitAnalysis]]:
    """Features of every fit of one participant, each analysed with its own config's eval settings (or
    ``config``'s where given); ``lyapunov_max`` is the fit's own (``metrics.json``). Raises for an unreadable fit."""
    if not fits:
        raise InputError("no fitted model (*_desc-convssm_model.safetensors); did the participant level fail?")
    out, cfgs = [], [config if config is not None else fit_config(path) for path in fits]
    orbits = fit_orbits(fits, [(c.eval.lyap_steps, c.eval.lyap_transient) for c in cfgs])  # the seeds at once
    for path, cfg, orbit in zip(fits, cfgs, orbits):
        res = analyse_fit(path, n_steps=cfg.eval.lyap_steps, transient=cfg.eval.lyap_transient, seed=cfg.seed,
                          orbit=orbit)
        own = json.loads(fit_paths(path)["metrics"].read_text()).get("lyapunov_max_per_second")
        if isinstance(own, (int, float)):
            res.features["lyapunov_max"] = float(own)
        ses, run, seed = parse_fit_name(path)
        row = {"participant_id": sub, "session": ses, "run": run, "seed": seed, "config_hash": cfg.hash(),
               **res.features}
        out.append((row, res))
    return out


def subject_table(runs: pd.DataFrame, feats: list[str], selected: pd.Series | None = None) -> pd.DataFrame:
    """Mean over the ``selected`` fits (default all) per participant, with ``*_sd`` columns (spread over all
    fits) where any participant has several fits."""
    keep = runs if selected is None else runs[selected]
    g, g_all = keep.groupby("participant_id", sort=True), runs.groupby("participant_id", sort=True)
    table = g[feats].mean()
    for f in (f for f in gs.NOMINAL_FEATURES if f in feats):  # a category code: the most frequent, not the mean
        table[f] = g[f].agg(lambda v: v.mode().min() if v.notna().any() else np.nan)
    table["n_fits"] = g_all.size().astype(float)
    if selected is not None and not bool(selected.all()):
        table["n_selected"] = g.size().astype(float)
    if (table["n_fits"] > 1).any():
        sd = g_all[feats].std(ddof=1).add_suffix("_sd")
        table = table.join(sd)
    return table.reset_index()


def read_participants(bids_dir: Path, known: list[str] | None = None) -> pd.DataFrame | None:
    """participants.tsv as strings (None when absent); see :func:`dsr.io.participants.read_participants`."""
    return participants.read_participants(Path(bids_dir) / "participants.tsv", known)


def _numeric_cols(df: pd.DataFrame, exclude) -> list[str]:
    return [c for c in df.columns if c not in exclude and pd.api.types.is_numeric_dtype(df[c])]


def write_reports(output_dir: Path, done: dict, table: pd.DataFrame, feats: list[str], stats: pd.DataFrame,
                  icc: pd.DataFrame, dist: dict, coords: np.ndarray, covariates: list[str], ctx: GroupContext,
                  nprocs: int = 1, threads: int = 1) -> None:
    """sub-XX.html for every analysed participant (in ``nprocs`` processes), then group.html linking them."""
    status = read_status(output_dir)
    ctx.status = status
    jobs = [(sub, items, layout.subject_report(output_dir, sub), output_dir, status[status["participant_id"] == sub],
             ctx.config.seeds if ctx.config is not None else None) for sub, items in done.items()]
    results: dict[int, dict] = {}
    run_tasks(_report_task, jobs, ExecutorSettings(nprocs=nprocs, threads=threads), results.__setitem__,
              "subject reports")
    for i, (sub, _, path, *_) in enumerate(jobs):
        ctx.quality.extend(results[i].get("quality", []))
        if results[i]["status"] == "ok":
            ctx.subject_reports.append((path.name, sub))
        else:
            log.warning("%s: report not written: %s", sub, results[i]["reason"])
    group_report(table, feats, stats, icc, dist, coords, covariates, output_dir / layout.GROUP_REPORT, ctx)


def _report_task(job: tuple, device: str) -> dict:
    """Executor task: one participant's ``sub-XX.html``; its fits' quality rows, or the failure as one line."""
    sub, items, path, output_dir, status, seeds = job
    sctx = SubjectContext(output_dir, status=status, group_href=layout.GROUP_REPORT, seeds=seeds)
    try:
        subject_report(sub, items, path, sctx)
        return {"status": "ok", "quality": sctx.quality}
    except Exception as exc:  # a report that cannot be drawn does not stop the others
        return {"status": "failed", "reason": one_line(f"{type(exc).__name__}: {exc}"),
                "quality": sctx.quality}


def _analyse_task(job: tuple, device: str) -> dict:
    """Executor task: the features of one participant's fits, or its failure as one line; with the worker's
    seconds per stage."""
    sub, paths, config = job
    try:
        with timing.stage("group"):
            items = analyse_subject(sub, paths, config)
        return {"status": "ok", "items": items, "stages": timing.take()}
    except Exception as exc:  # one bad folder: one line, the others go on
        return {"status": "failed", "reason": one_line(f"{type(exc).__name__}: {exc}"),
                "stages": timing.take()}


def _shared_eval(config: DsrConfig | None, models: list[Path]):
    """Eval settings of the between-participant distances: ``config``'s, else those the fits share (the
    first fit's, with a warning, where they differ)."""
    if config is not None:
        return config.eval
    evals = [fit_config(p).eval for p in models]
    if any(e != evals[0] for e in evals[1:]):
        log.warning("group: the fits were evaluated with different settings; distances use %s's", models[0].name)
    return evals[0]


def run_group(bids_dir: Path, output_dir: Path, config: DsrConfig | None = None, n_perm: int = 2000,
              reports: bool = True, nprocs: int = 1, threads: int = 1) -> int:
    """Run the group level of the BIDS App.

    Parameters
    ----------
    bids_dir : Path
        The input dataset (its participants.tsv gives the covariates).
    output_dir : Path
        The participant level's output folder.
    config : DsrConfig, optional
        Analyse every fit with these eval settings; by default each fit's own config (read from its files)
        gives its orbit lengths, and the fits' shared eval settings the between-participant distances.
    n_perm : int
        Permutations per test.
    reports : bool
        Write the HTML reports (group.html and sub-XX.html).
    nprocs, threads : int
        Participants analysed in parallel processes, and the compute threads of each (``--nprocs``,
        ``--omp-nthreads``).

    Returns
    -------
    int
        0 when every participant folder was analysed, 1 when some were skipped.

    Raises
    ------
    InputError
        No participant folder with a fitted model.
    """
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    fits = find_fits(output_dir)
    if not any(fits.values()):
        raise InputError("no fitted models found; run the participant level first", output_dir)
    jobs = [(sub, paths, config) for sub, paths in fits.items()]
    results: dict[int, dict] = {}
    run_tasks(_analyse_task, jobs, ExecutorSettings(nprocs=nprocs, threads=threads), results.__setitem__,
              "participants")
    for res in results.values():  # the tasks' seconds per stage (taken in this process or a worker's)
        timing.add(res.pop("stages", None))
    with timing.stage("group"):
        return _group_tables(bids_dir, output_dir, config, n_perm, reports, fits, jobs, results, nprocs, threads)


def model_distances(kept: list[list]) -> list[tuple[str, np.ndarray, str]]:
    """Between participants, from all their kept fits (each a :class:`FitAnalysis`): FC of the generated
    series (each fit's z-scored, then pooled; 1 − correlation of the Fisher-z FC vectors) and the Euclidean
    distance between the mean Lyapunov spectra. Returns (name, (n, n) distances, description)."""
    def z(x):
        return (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)

    def same_width(arrays):  # fits of other sizes (regions, latent units) have no distance: NaN
        return len({a.shape[-1] for a in arrays}) == 1

    n = len(kept)
    pooled = [[z(read_tsv(fa.paths["generated_obs"])) for fa in fas] for fas in kept]
    pooled = [np.concatenate(xs) if same_width(xs) else None for xs in pooled]
    spectra = [[np.asarray(fa.lyapunov, dtype=np.float64) for fa in fas] for fas in kept]
    spectra = [np.nanmean(v, axis=0) if same_width(v) else None for v in spectra]
    fc = (np.atleast_2d(fc_distances(pooled)) if all(x is not None for x in pooled) and same_width(pooled)
          else np.full((n, n), np.nan))
    lyap = (vector_distances(spectra) if all(v is not None for v in spectra) and same_width(spectra)
            else np.full((n, n), np.nan))
    return [("fc", fc, "1 - correlation of the functional connectivity (Fisher z) of the participants' generated "
             "series, all kept fits pooled (each z-scored)"),
            ("lyapunov", lyap, "Euclidean distance between the participants' Lyapunov spectra (per second), mean "
             "over the kept fits")]


def _group_tables(bids_dir, output_dir, config, n_perm, reports, fits, jobs, results, nprocs=1, threads=1) -> int:
    """The group tables and group.html from every participant's analysed fits (see :func:`run_group`)."""
    done, skipped = {}, {}
    for i, (sub, _, _) in enumerate(jobs):
        if results[i]["status"] == "ok":
            done[sub] = results[i]["items"]
        else:
            log.warning("%s: skipped: %s", sub, results[i]["reason"])
            skipped[sub] = results[i]["reason"]
    if not done:
        raise InputError("no participant folder could be analysed", output_dir)
    gdir = output_dir / GROUP_DIR
    runs = pd.DataFrame([row for items in done.values() for row, _ in items])
    feats = _numeric_cols(runs, ID_COLUMNS)
    group_cfg = config or fit_config(fits[next(iter(done))][0])  # the first analysed participant's fit
    rule = group_cfg.seeds
    selected = selected_fits(runs, rule.combine, rule.select_by)
    runs["selected"] = selected.astype(int)
    write_table(gdir / "runs.tsv", runs, "Dynamics features of every fit; selected: 1 for the fits the "
                f"participant's features come from (seeds.combine = {rule.combine}, by {rule.select_by})",
                FEATURE_DOC)
    table = subject_table(runs, feats, selected)
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
    write_table(gdir / "features.tsv", table, "Per-participant dynamics features (mean over the kept fits, see "
                "runs.tsv's selected; *_sd: spread over all fits) joined with participants.tsv", FEATURE_DOC)
    tested = gs.informative_features(table, dynamics_features(feats))  # fit quality is not a finding
    stats = gs.feature_covariate_tests(table, tested, covariates, n_perm=n_perm,
                                     seed=0 if config is None else config.seed)
    write_table(gdir / "stats.tsv", stats, "Each dynamics feature with three or more distinct values against each "
                "participants.tsv column; test: " + "; ".join(f"{k}: {v}" for k, v in gs.TEST_NAMES.items())
                + "; p_permutation by scipy.stats.permutation_test; q_fdr: Benjamini-Hochberg over all tests")
    icc_rows = []
    per_run = runs[selected].groupby(RUN_KEYS, as_index=False)[feats].mean()  # seeds averaged or the best one
    if (per_run.groupby("participant_id").size() > 1).any():
        icc_rows = [{"feature": f, **gs.icc(per_run[f], per_run["participant_id"])} for f in feats]
    icc = pd.DataFrame(icc_rows)
    if len(icc):
        write_table(gdir / "icc.tsv", icc, "Test-retest ICC(1) over runs and sessions (seeds averaged, or each "
                    "run's best seed), with between- and within-participant variances")
    flags, kept, pos = selected.tolist(), {}, 0
    for sub, items in done.items():  # each participant's kept fits (runs' rows are done's items, in order)
        kept[sub] = [fa for i, (_, fa) in enumerate(items) if flags[pos + i]]
        pos += len(items)
    ids = list(table["participant_id"])
    series = [read_tsv(kept[s][0].paths["generated_obs"]) for s in ids]  # the first kept fit
    ev = _shared_eval(config, [p for s in ids for p in fits[s][:1]])
    dist = gs.dynamics_distances(series, n_bins=ev.dstsp_bins, scaling=ev.dstsp_scaling,
                                 bins_max_dims=ev.bins_max_dims, smoothing=ev.spectrum_smoothing)
    described = [(name, D, f"Symmetrised {name} between participants' generated series (first kept fit, each "
                  "z-scored)") for name, D in dist.items()] + model_distances([kept[s] for s in ids])
    for name, D, what in described:
        write_table(gdir / f"distance-{name}.tsv", pd.DataFrame(D, columns=ids).assign(participant_id=ids)
                    [["participant_id"] + ids], what)
    base = dist["dstsp"] if np.isfinite(dist["dstsp"]).any() or len(ids) < 2 else dist["dh"]
    coords = gs.classical_mds(base, 2)
    write_table(gdir / "embedding.tsv", pd.DataFrame({"participant_id": ids, "mds1": coords[:, 0],
                                                      "mds2": coords[:, 1]}), "Classical MDS of D_stsp")
    if reports:
        with timing.stage("reports"):
            seeds = sorted({str(s) for s in runs["seed"] if str(s)})
            ctx = GroupContext(skipped=skipped, config=group_cfg, seeds=seeds, n_perm=n_perm)
            write_reports(output_dir, done, table, feats, stats, icc, dist, coords, covariates, ctx,
                          nprocs, threads)
    kinds = runs["attractor_kind"].map(lambda k: KINDS[int(k)] if np.isfinite(k) else "n/a").value_counts()
    log.info("group: %d participant(s) analysed, %d skipped; attractors: %s; outputs in %s", len(done), len(skipped),
             ", ".join(f"{k} {v}" for k, v in kinds.items()), gdir)
    return 1 if skipped else 0

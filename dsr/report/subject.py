"""``sub-XX.html``: one participant's report.

Summary (version, command, preset and overrides, status of every run), errors, then per run: input quality
(framewise displacement, tSNR, carpet plot, atlas over the mean image), held-out fit quality beside a VAR(1)
reference, every seed's scores in a table, and for the median seed data and generated series side by side,
spectra, training curve and the attractor's features;
a methods paragraph with its references; links to the group report.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dsr.analysis.attractor import FEATURE_DOC, FitAnalysis, read_tsv
from dsr.analysis.linear_reference import data_floor, var1_reference
from dsr.config import DsrConfig, SeedsConfig
from dsr.io.confounds import strategy_columns
from dsr.report import captions, plots, qc
from dsr.report.html import Report
from dsr.report.provenance import command_line, config_summary, methods_paragraph, reference_list, version_line

log = logging.getLogger("dsr")
#: Figures of every fit, in the order they appear (``scripts/check_reports.py`` checks them).
SUBJECT_FIGURES = ("data vs generated", "power spectra", "training curve", "attractor 2-D", "attractor 3-D",
                   "Lyapunov spectrum", "fixed points")
#: Input-quality figures, drawn where the NIfTI and confounds inputs are found.
QC_FIGURES = ("framewise displacement", "carpet plot", "atlas over mean image")
ID_COLUMNS = ("participant_id", "session", "run", "seed", "config_hash")


@dataclass
class SubjectContext:
    """What a subject report needs besides its fits."""

    output_dir: Path
    status: pd.DataFrame = field(default_factory=pd.DataFrame)  # this participant's status.tsv rows
    group_href: str = "group.html"
    quality: list = field(default_factory=list)  # filled: one dict per fit (held-out scores, VAR(1) beside)
    seeds: SeedsConfig | None = None  # the group level's seed rule: "best" shows the kept seed's figures


def fit_config(model_path: Path) -> DsrConfig | None:
    """The resolved config a fit was made with (from its model's JSON sidecar), None when unreadable."""
    try:
        side = json.loads(Path(model_path).with_suffix(".json").read_text())
        return DsrConfig.from_dict(side["spec"]["meta"]["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _status_summary(status: pd.DataFrame) -> str:
    if status is None or not len(status):
        return "no status.tsv rows"
    counts = status["status"].fillna("n/a").value_counts()
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def _input_quality(rep: Report, inputs: qc.RunInputs, names: list[str], n_volumes: int, label: str) -> None:
    """The input-quality table and figures of one run (or lines saying what is not available)."""
    shown = ", ".join(names[:24]) + (f", … ({len(names)} in all)" if len(names) > 24 else "")
    rows = {"volumes": n_volumes, "regions": shown or "n/a", "TR (s)": inputs.tr,
            "atlas": inputs.atlas.name if inputs.atlas is not None else "n/a",
            "confound strategy": inputs.strategy or "n/a"}
    fd = None
    if inputs.confounds is not None:
        try:
            fd = qc.framewise_displacement(inputs.confounds)
        except Exception as exc:  # an unreadable confounds table is reported, not fatal
            log.warning("%s: confounds unreadable for the report: %s", label, " ".join(str(exc).split()))
    if fd is not None:
        try:
            scrub = strategy_columns(inputs.strategy)[1] if inputs.strategy else None
        except Exception:
            scrub = None
        thr = scrub or qc.FD_THRESHOLD
        rows.update({"mean FD (mm)": float(np.mean(fd)), "max FD (mm)": float(np.max(fd)),
                     f"volumes with FD > {thr:g} mm": f"{int(np.sum(fd > thr))} ({np.mean(fd > thr):.0%})",
                     "scrubbed fraction": f"{np.mean(fd > scrub):.0%}" if scrub else "no scrubbing"})
    image = None
    if inputs.bold is not None:
        try:
            image = qc.ImageQC(inputs.bold, inputs.atlas, inputs.tr)
            rows["median tSNR"] = image.tsnr()
        except Exception as exc:
            log.warning("%s: BOLD image unreadable for the report: %s", label, " ".join(str(exc).split()))
    rep.table(pd.DataFrame({"measure": list(rows), "value": list(rows.values())}))
    if fd is not None:
        rep.figure("framewise displacement", lambda: qc.fd_figure(fd, inputs.tr), captions.FD)
    else:
        rep.unavailable("framewise displacement", "no confounds table with a framewise_displacement column")
    if image is not None:
        rep.figure("carpet plot", image.carpet, captions.CARPET)
        if image.atlas is not None:
            rep.figure("atlas over mean image", image.atlas_over_mean, captions.ATLAS)
        else:
            rep.unavailable("atlas over mean image", "the atlas is not an image (coordinates) or was not found")
    else:
        rep.unavailable("carpet plot and atlas over the mean image", "the input is not a NIfTI image found on "
                        "disk (arrays, or moved files)")


def _fit_quality(rep: Report, metrics: dict, ref: dict, floor: dict) -> None:
    """Held-out scores of the convSSM beside the VAR(1) reference and the data's own floor."""
    names = {"dstsp_test": "D_stsp, test part (nats)", "dh_test": "D_H, test part", "pe_test": "PE, test part"}
    rep.table(pd.DataFrame({"metric (lower is better)": list(names.values()),
                            "convSSM": [metrics.get(k, float("nan")) for k in names],
                            "VAR(1)": [ref.get(k, float("nan")) for k in names],
                            "training part itself (data floor)": [floor.get(k, float("nan")) for k in names]}))
    d_c, d_l = metrics.get("dstsp_test"), ref.get("dstsp_test")
    if isinstance(d_c, (int, float)) and np.isfinite(d_c) and np.isfinite(d_l):
        if abs(d_c - d_l) <= 0.05 * abs(d_l):
            verdict = "about the same as (within 5 % of)"
        else:
            verdict = "lower (better) than" if d_c < d_l else "higher (worse) than"
        rep.text(f"The convSSM's held-out D_stsp is {verdict} the VAR(1) reference's ({d_c:.4g} vs {d_l:.4g}). "
                 + captions.QUALITY + " " + captions.DATA_FLOOR)
    else:
        rep.text(captions.QUALITY + " " + captions.DATA_FLOOR)


def run_key(row: dict) -> tuple:
    """The (session, run) a fit belongs to; a run's seeds share it."""
    return (str(row.get("session", "")), str(row["run"]))


def shown_fit(fits: list[tuple[dict, FitAnalysis, dict]], seeds: SeedsConfig | None = None) -> int:
    """Index of the fit (row, analysis, metrics) whose figures a run's section shows: with
    ``seeds.combine = "best"`` the kept seed (lowest ``seeds.select_by``, the one the features come from),
    otherwise the median seed by held-out D_stsp (a typical fit, not the best one); the first fit where no
    seed has that score."""
    best = seeds is not None and seeds.combine == "best"
    key = seeds.select_by if best else "dstsp_test"
    scores = [(float(d), i) for i, (_, _, m) in enumerate(fits)
              if (d := m.get(key)) is not None and np.isfinite(float(d))]
    if not scores:
        return 0
    scores.sort()
    return scores[0][1] if best else scores[(len(scores) - 1) // 2][1]


def _metrics(res: FitAnalysis) -> dict:
    p = res.paths["metrics"]
    return json.loads(p.read_text()) if p.is_file() else {}


def _fit_command(items: list[tuple[dict, FitAnalysis]]) -> str:
    """The participant-level command that made the first fit (from its provenance), or "not recorded"."""
    p = items[0][1].paths.get("provenance") if items else None
    try:
        return json.loads(p.read_text()).get("CommandLine") or "not recorded"
    except (OSError, ValueError, AttributeError):
        return "not recorded"


def _seed_table(rep: Report, fits: list[tuple[dict, FitAnalysis, dict]], shown: int) -> None:
    """One row per seed of a run: held-out scores and the main dynamics features."""
    rows = []
    for i, (row, res, m) in enumerate(fits):
        rows.append({"seed": row.get("seed", ""), "shown": "yes" if i == shown else "",
                     "D_stsp test": m.get("dstsp_test"), "D_H test": m.get("dh_test"), "PE test": m.get("pe_test"),
                     "λ_max": row.get("lyapunov_max"), "attractor": res.kind.replace("_", " ")})
    rep.table(pd.DataFrame(rows))


def _run_section(rep: Report, sub: str, fits: list[tuple[dict, FitAnalysis, dict]], ctx: SubjectContext
                 ) -> tuple[list[dict], DsrConfig, dict]:
    """One run's fits (row, analysis, metrics): input quality and the VAR(1) reference once, every seed's
    scores in a table, the figures of the median seed. Returns one quality row per fit, the shown fit's
    config and its row."""
    best = ctx.seeds is not None and ctx.seeds.combine == "best"
    shown = shown_fit(fits, ctx.seeds)
    row, res, metrics = fits[shown]
    p = res.paths
    label = f"{sub} {row['run']}" + (f" seed {row['seed']}" if row.get("seed") else "")
    anchor = f"fit-{row['run']}" + (f"-seed-{row['seed']}" if row.get("seed") else "")
    rep.heading(f"{row['run']}" + (f" (seed {row['seed']})" if row.get("seed") else "")
                + f" — attractor: {res.kind.replace('_', ' ')}", anchor)
    cfg = fit_config(p["model"])
    x = read_tsv(p["data"]) if p["data"].is_file() else None
    xg = read_tsv(p["generated_obs"])
    inputs = qc.run_inputs(p["data_json"], ctx.output_dir)
    names = inputs.regions or ([str(c) for c in pd.read_csv(p["data"], sep="\t", nrows=0).columns]
                               if x is not None else [])
    rep.heading("Input quality", level=3)
    _input_quality(rep, inputs, names, 0 if x is None else len(x), label)
    n_train = metrics.get("n_train")
    ref, ref_sample, floor = {}, None, {}
    if x is not None and isinstance(n_train, int):
        try:
            ev = cfg.eval if cfg is not None else None
            kw = {} if ev is None else dict(n_samples=ev.n_rollouts, n_bins=ev.dstsp_bins, scaling=ev.dstsp_scaling,
                                            bins_max_dims=ev.bins_max_dims, smoothing=ev.spectrum_smoothing)
            seed = min(int(m.get("seed", 0)) for _, _, m in fits)  # the run's first seed, whichever fit is shown
            ref, ref_sample = var1_reference(x, n_train, res.tr, seed=seed, **kw)
            floor = data_floor(x, n_train, seed=seed, **kw)
        except Exception as exc:
            log.warning("%s: VAR(1) reference failed: %s", label, " ".join(str(exc).split()))
    rep.heading("Fit quality on held-out data (not a finding)", level=3)
    _fit_quality(rep, metrics, ref, floor)
    quality = []
    for r, _, m in fits:  # every seed's scores beside the run's one VAR(1) reference
        quality.append({"participant_id": sub, "run": r["run"], "seed": r.get("seed", ""),
                        "dstsp_test": m.get("dstsp_test"), "dh_test": m.get("dh_test"), "pe_test": m.get("pe_test"),
                        "var1_dstsp_test": ref.get("dstsp_test"), "var1_dh_test": ref.get("dh_test"),
                        "floor_dstsp_test": floor.get("dstsp_test"), "floor_dh_test": floor.get("dh_test")})
    if len(fits) > 1:
        which = (f"the seed with the lowest held-out {ctx.seeds.select_by}, the one the group features come from"
                 if best else "the median seed by held-out D_stsp (a typical fit, not the best)")
        rep.text(f"{len(fits)} seeds were fitted to this run. The figures below show seed {row.get('seed', '')}, "
                 f"{which}; the table lists every seed.")
        _seed_table(rep, fits, shown)
    rep.figure("data vs generated", lambda: plots.data_vs_generated(x, xg, res.tr, names, n_train, ref_sample),
               captions.DATA_VS_GENERATED)
    rep.figure("power spectra", lambda: plots.power_spectra(x, xg, res.tr, reference=ref_sample),
               captions.SPECTRA)
    rep.figure("training curve", lambda: plots.training_curve(read_tsv(p["curve"])), captions.CURVE)
    rep.heading("Dynamics of the reconstructed system", level=3)
    feats = {k: v for k, v in row.items() if k not in ID_COLUMNS}
    rep.table(pd.DataFrame({"feature": list(feats), "value": list(feats.values()),
                            "meaning": [FEATURE_DOC.get(k, "") for k in feats]}))
    fps = res.fixed_points + res.cycles2
    pts = np.array([c.points[0] for c in res.fixed_points]) if res.fixed_points else None
    rep.figure("attractor 2-D", lambda: plots.attractor_2d(res.orbit, pts, [c.stable for c in res.fixed_points],
                                                           read_tsv(p["generated_latent"])), captions.ATTRACTOR_2D)
    rep.figure("attractor 3-D", lambda: plots.attractor_3d(res.orbit), captions.ATTRACTOR_3D)
    rep.figure("Lyapunov spectrum", lambda: plots.lyapunov_spectrum(res.lyapunov), captions.LYAPUNOV)
    rep.figure("fixed points", lambda: plots.eigenvalues(fps), captions.FIXED_POINTS)
    return quality, cfg, row


def subject_report(sub: str, items: list[tuple[dict, FitAnalysis]], path: Path, ctx: SubjectContext) -> Report:
    """Write ``sub-XX.html`` for one participant's fits; the fits' quality rows are appended to
    ``ctx.quality``."""
    rep = Report(f"dsr report: {sub}")
    body = Report(rep.title)  # the fit sections, composed first: the summary needs their config
    cfg, n_train, n_samples = None, None, None
    runs: dict[tuple, list] = {}
    for row, res in items:  # each fit's metrics.json read once
        runs.setdefault(run_key(row), []).append((row, res, _metrics(res)))
    shown = []
    for fits in runs.values():
        quality, c, shown_row = _run_section(body, sub, fits, ctx)
        ctx.quality.extend(quality)
        shown.append(shown_row)
        cfg = cfg or c
        m = fits[0][2]
        n_train, n_samples = n_train or m.get("n_train"), n_samples or m.get("n_samples")
    status = ctx.status if ctx.status is not None else pd.DataFrame()
    rep.summary({"participant": sub, "software": version_line(), "command (participant level)":
                 _fit_command(items), "command (this report)": command_line(),
                 "fits": str(len(items)), "runs in status.tsv": _status_summary(status),
                 **config_summary(cfg), "group report": ctx.group_href})
    rep.links([(ctx.group_href, "group report")]
              + [(f"#fit-{r['run']}" + (f"-seed-{r['seed']}" if r.get("seed") else ""),
                  f"{r['run']}" + (f" seed {r['seed']}" if r.get("seed") else "")) for r in shown],
              title="Contents")
    rep.heading("Runs", "runs")
    if len(status):
        rep.table(status[["run", "status", "reason", "config_hash"]].fillna(""))
    else:
        rep.unavailable("run status", "no status.tsv rows for this participant")
    rep.heading("Errors", "errors")
    failed = status[status["status"].fillna("") != "ok"] if len(status) else status
    if len(failed):
        rep.table(failed[["run", "status", "reason"]].fillna(""))
    else:
        rep.text("No run of this participant failed.")
    rep.parts += body.parts
    rep.figures += body.figures
    rep.failed += body.failed
    rep.heading("Methods", "methods")
    rep.text(methods_paragraph(cfg, n_train, n_samples))
    rep.references(reference_list())
    rep.write(path)
    return rep

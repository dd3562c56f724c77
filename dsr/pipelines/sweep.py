"""Hyperparameter sweeps: config values × subjects × seeds, model selection on the held-out part.

A sweep file (TOML; shipped ones live in ``configs/sweeps/``) names a base preset, fixed overrides, the
seeds, the selection metric and either a ``[grid]`` (every combination) or a ``[random]`` search::

    base = "quick"            # preset name or TOML path
    seeds = [0, 1]
    metric = "dstsp"          # held-out D_stsp ("dstsp") or D_H ("dh"), or any metrics.json key
    [fixed]
    "train.epochs" = 40
    [grid]
    "train.alpha" = [0.05, 0.1, 0.2]
    [random]                  # instead of [grid]
    n_samples = 8
    seed = 0
    "train.lr_start" = {low = 1e-4, high = 1e-2, log = true}
    "model.latent_dim" = {choices = [8, 16]}

Every trial is a participant-level fit with its config, in ``OUT/sweep/<trial-id>/`` (a derivatives folder
with its own ``status.tsv``; the id is a hash of the config, so trials are shared between sweeps and a rerun
skips the finished fits). The sweep's summary goes to ``OUT/sweep/<name>/``: ``trials.tsv`` (id → values),
``results.tsv`` (trial × subject × run × seed × metrics) and ``sub-<label>_best.json``, the trial with the
lowest mean held-out metric over seeds and runs (the paper selects hyperparameters of short series on the
test part), plus ``best.tsv``.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dsr.analysis.metrics_record import FitMetrics
from dsr.config import DsrConfig, check_sweep_size, load_config, read_toml
from dsr.errors import ConfigError
from dsr.io.atomic import atomic_write_text, write_json
from dsr.log import user_log
from dsr.pipelines.executors import ExecutorSettings, limit_threads, preflight
from dsr.io.derivatives import SWEEP_DIR, fit_files, fit_prefix, run_names
from dsr.pipelines.participant import run_jobs, write_description
from dsr.pipelines.plan import absolute_paths, plan_participant
from dsr.pipelines.status import record_missing

log = user_log()
METRIC_ALIASES = {"dstsp": "dstsp_test", "dh": "dh_test"}
RESULT_METRICS = ("dstsp_test", "dh_test", "dstsp_train", "dh_train", "dstsp", "dh", "pe_test",
                  "lyapunov_max_per_second")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file (see the module docstring)."""

    name: str
    base: str
    seeds: list[int]
    metric: str  # a metrics.json key, e.g. dstsp_test
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    random: dict[str, dict] = field(default_factory=dict)
    n_samples: int = 0
    sample_seed: int = 0


@dataclass(frozen=True)
class Trial:
    """One point of the sweep: its id, the swept values and the full config."""

    trial_id: str
    values: dict[str, Any]
    config: DsrConfig


def _flatten(table: dict, prefix: str = "", leaf=lambda v: not isinstance(v, dict)) -> dict[str, Any]:
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if leaf(v):
            out[key] = v
        else:
            out.update(_flatten(v, f"{key}.", leaf))
    return out


def _sweep_path(spec: str | Path) -> Path:
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: sweep file not found")
        return path
    try:
        folder = resources.files("dsr.presets") / "sweeps"
    except ModuleNotFoundError:
        folder = Path(__file__).resolve().parents[2] / "configs" / "sweeps"
    entry = folder / f"{spec}.toml"
    if not entry.is_file():
        known = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml")) if folder.is_dir() else []
        raise ConfigError(f"unknown sweep '{spec}' (known: {', '.join(known) or 'none'}; or give a TOML path)")
    return Path(str(entry))


def load_sweep(spec: str | Path) -> SweepSpec:
    """Read a sweep file by path or by name (``configs/sweeps/<name>.toml``).

    Raises
    ------
    ConfigError
        Missing file, bad TOML, unknown keys, or both/neither of grid and random with bad values.
    """
    path = _sweep_path(spec)
    data = read_toml(path)  # one line naming the file: unreadable, not UTF-8, not TOML
    unknown = set(data) - {"name", "description", "base", "seeds", "metric", "fixed", "grid", "random"}
    if unknown:
        raise ConfigError(f"{path}: unknown sweep keys {sorted(unknown)}")
    if "grid" in data and "random" in data:
        raise ConfigError(f"{path}: give either [grid] or [random], not both")
    rnd = dict(data.get("random", {}))
    n_samples, sample_seed = int(rnd.pop("n_samples", 0)), int(rnd.pop("seed", 0))
    random = _flatten(rnd, leaf=lambda v: not isinstance(v, dict) or "low" in v or "choices" in v)
    grid = _flatten(data.get("grid", {}))
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid value '{key}' must be a non-empty list")
    for key, r in random.items():
        if not isinstance(r, dict) or not ("choices" in r or ("low" in r and "high" in r)):
            raise ConfigError(f"{path}: random '{key}' needs {{low = .., high = ..}} or {{choices = [..]}}")
    if random and n_samples < 1:
        raise ConfigError(f"{path}: [random] needs n_samples >= 1")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers")
    metric = str(data.get("metric", "dstsp"))
    spec_ = SweepSpec(name=str(data.get("name", path.stem)), base=str(data.get("base", "paper")), seeds=seeds,
                      metric=METRIC_ALIASES.get(metric, metric), fixed=_flatten(data.get("fixed", {})), grid=grid,
                      random=random, n_samples=n_samples, sample_seed=sample_seed)
    check_sweep_size([len(v) for v in grid.values()], n_samples, path)  # before building 10^6 configs
    make_trials(spec_)  # every trial config must be valid before anything runs
    return spec_


def _sample(r: dict, rng: np.random.Generator):
    if "choices" in r:
        return r["choices"][int(rng.integers(len(r["choices"])))]
    lo, hi = float(r["low"]), float(r["high"])
    v = math.exp(rng.uniform(math.log(lo), math.log(hi))) if r.get("log") else rng.uniform(lo, hi)
    return int(round(v)) if r.get("int") or (isinstance(r["low"], int) and isinstance(r["high"], int)) else float(v)


def _apply(config: DsrConfig, values: dict[str, Any]) -> DsrConfig:
    sections: dict[str, dict] = {}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if not name or "." in name:
            raise ConfigError(f"sweep key '{key}' must be 'section.name', e.g. 'train.alpha'")
        sections.setdefault(section, {})[name] = value
    return config.replace(**sections)


def make_trials(spec: SweepSpec, base: DsrConfig | None = None) -> list[Trial]:
    """The trials of a sweep in a fixed order (grid: row-major in file order; random: seeded samples)."""
    base = load_config(spec.base) if base is None else base
    base = _apply(base, spec.fixed)
    if spec.random:
        rng = np.random.default_rng(spec.sample_seed)
        points = [{k: _sample(r, rng) for k, r in spec.random.items()} for _ in range(spec.n_samples)]
    else:
        keys = list(spec.grid)
        points = [dict(zip(keys, combo)) for combo in itertools.product(*(spec.grid[k] for k in keys))]
    trials, seen = [], set()
    for values in points:
        cfg = _apply(base, values).replace(seed=0)
        tid = f"trial-{cfg.hash()[:8]}"
        if tid not in seen:  # the same config twice (e.g. a repeated random choice) is fitted once
            seen.add(tid)
            trials.append(Trial(tid, values, cfg))
    return trials


def run_sweep(bids_dir: Path, output_dir: Path, spec: SweepSpec, *, executor: ExecutorSettings,
              participant_labels: list[str] | None = None, task: str | None = None, session: str | None = None,
              space: str | None = None, atlas: str | None = None, confounds: str | None = None,
              base: DsrConfig | None = None) -> int:
    """Fit every trial × run × seed with one executor, then write the results table and the selection.

    Parameters
    ----------
    bids_dir, output_dir : Path
        As for :func:`dsr.pipelines.participant.run_participant`; trials go to ``output_dir/sweep/``.
    spec : SweepSpec
    executor : ExecutorSettings
    participant_labels, task, session, space, atlas, confounds
        Run filters and extraction, as for the participant level.
    base : DsrConfig or None
        Replaces the sweep's base preset (tests shrink the training this way).

    Returns
    -------
    int
        0 when every fit succeeded (or was already done), 1 when some failed.
    """
    trials = make_trials(spec, base)
    preflight(executor)
    limit_threads(executor.threads)
    if executor.kind == "ray":
        bids_dir, output_dir, atlas = absolute_paths(bids_dir, output_dir, atlas)
    bids_dir, root = Path(bids_dir), Path(output_dir) / SWEEP_DIR
    plan = plan_participant(bids_dir, root, participant_labels=participant_labels, task=task, session=session,
                            space=space, atlas=atlas, config=trials[0].config, confounds=confounds)
    summary = root / spec.name
    summary.mkdir(parents=True, exist_ok=True)
    keys = list(spec.random or spec.grid)
    _write_table(summary / "trials.tsv", [dict(trial_id=t.trial_id, **t.values) for t in trials],
                 ["trial_id", *keys])
    jobs, rows_by_dir, failed = [], {}, 0
    for t in trials:
        folder = root / t.trial_id
        folder.mkdir(parents=True, exist_ok=True)
        write_description(folder, bids_dir)
        rows_by_dir[folder] = {}
        failed += record_missing(plan, bids_dir, t.config, rows_by_dir[folder]) if t is trials[0] else 0
        jobs += plan.jobs(t.config, folder, spec.seeds)
    log.info("sweep %s: %d trial(s) × %d run(s) × %d seed(s) = %d fit(s); selection by %s", spec.name,
             len(trials), len(plan.runs), len(spec.seeds), len(jobs), spec.metric)
    results: list = []
    failed += run_jobs(jobs, executor, rows_by_dir, results)
    by_id = {t.trial_id: t for t in trials}
    table = collect_results(results, plan.atlas.name, by_id, keys)
    _write_table(summary / "results.tsv", table.to_dict("records"), list(table.columns))
    best = select_best(table, spec.metric)
    for sub, (tid, score, ranking) in best.items():
        write_json(summary / f"{sub}_best.json", {
            "participant_id": sub, "sweep": spec.name, "metric": spec.metric, "trial_id": tid, "score": score,
            "values": by_id[tid].values, "config": by_id[tid].config.to_dict(), "ranking": ranking})
    _write_table(summary / "best.tsv", [{"participant_id": s, "trial_id": b[0], spec.metric: b[1]}
                                        for s, b in sorted(best.items())], ["participant_id", "trial_id", spec.metric])
    log.info("sweep %s: results in %s", spec.name, summary)
    return 1 if failed else 0


def collect_results(results: list, atlas_name: str, trials: dict[str, Trial], keys: list[str]) -> pd.DataFrame:
    """One row per fit: trial, values, participant, run, seed, status and the metrics read from its
    ``metrics.json`` (also for fits skipped as already done)."""
    rows = []
    for job, res in results:
        folder = Path(job.output_dir)
        sub_folder, base, label = run_names(job.run, atlas_name)
        metrics: dict = {}
        if res["status"] not in ("failed", "refused"):
            try:
                path = folder / sub_folder / fit_files(fit_prefix(base, job.seed))["metrics"]
                metrics = json.loads(path.read_text())
            except (OSError, ValueError):
                metrics = {}
        trial = trials[folder.name]
        row = {"trial_id": trial.trial_id, **{k: trial.values.get(k) for k in keys},
               "participant_id": job.participant_id, "run": label, "seed": job.config.seed, "status": res["status"]}
        rec = FitMetrics.from_json(metrics)
        row.update({m: rec.score(m) for m in RESULT_METRICS})
        rows.append(row)
    cols = ["trial_id", *keys, "participant_id", "run", "seed", "status", *RESULT_METRICS]
    order = {tid: i for i, tid in enumerate(trials)}
    df = pd.DataFrame(rows, columns=cols)
    df["_o"] = df["trial_id"].map(order)
    return df.sort_values(["_o", "participant_id", "run", "seed"]).drop(columns="_o").reset_index(drop=True)


def select_best(table: pd.DataFrame, metric: str) -> dict[str, tuple[str, float, list[dict]]]:
    """Per participant: the trial with the lowest mean ``metric`` over its runs and seeds (failed fits and
    non-finite values left out; ties go to the earlier trial). Returns ``{sub: (trial_id, score, ranking)}``."""
    if metric not in table.columns:
        table = table.assign(**{metric: np.nan})
    ok = table[(table["status"] != "failed") & np.isfinite(table[metric].astype(float))]
    best = {}
    for sub, part in ok.groupby("participant_id", sort=True):
        scores = part.groupby("trial_id", sort=False)[metric].mean()
        ranked = sorted(scores.items(), key=lambda kv: kv[1])  # stable: ties keep trial order
        best[sub] = (ranked[0][0], float(ranked[0][1]), [{"trial_id": t, "score": float(s)} for t, s in ranked])
    return best


def _write_table(path: Path, rows: list[dict], columns: list[str]) -> None:
    df = pd.DataFrame(rows, columns=columns)
    atomic_write_text(path, df.to_csv(sep="\t", index=False, na_rep="n/a"))

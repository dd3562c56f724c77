"""The layout of a dsr derivatives folder: every output name, how names are parsed, how fits are found.

One participant-level fit of run ``base`` (``sub-01[_ses-1]_task-rest[_run-1][_space-S]_atlas-A``), in
``OUTPUT_DIR/sub-01[/ses-1]/func/``::

    {base}_desc-cleaned_timeseries.tsv/.json      extracted series (+ desc-nuisance, desc-inputs)
    {base}[_seed-N]_desc-convssm_model.safetensors/.json, _metrics.json, _generated-obs.tsv/.json,
        _generated-latent.tsv/.json, _curve.tsv/.json, _fit.png, _provenance.json, _checkpoint/

``[_seed-N]`` appears when several seeds are fitted. ``OUTPUT_DIR/status.tsv`` has one row per fit,
``OUTPUT_DIR/group/`` the group tables, ``OUTPUT_DIR/group.html`` and ``sub-XX.html`` the reports, and
``OUTPUT_DIR/sweep/<trial-id>/`` one derivatives folder per sweep trial (``sweep/<name>/``: its summary).
A ``dsr fit --out DIR`` writes the same fit files without a prefix (``model.safetensors``, …).

BIDS has no name yet for most of these outputs: ``OUTPUT_DIR/.bidsignore`` (:func:`write_bidsignore`) lists
them for the BIDS validator, and ``OUTPUT_DIR/metrics_description.json`` describes every key of the fits'
``metrics.json``.
"""
from __future__ import annotations

import re
from pathlib import Path

from dsr.io import bids
from dsr.io.atomic import atomic_write_bytes
from dsr.io.series_cache import table_path
from dsr.log import LOG_DIR

FIT_DESC = "convssm"
STATUS = "status.tsv"
GROUP_DIR = "group"
SWEEP_DIR = "sweep"
GROUP_REPORT = "group.html"
BIDSIGNORE = ".bidsignore"
METRICS_DESCRIPTION = "metrics_description.json"
INPUT_DATASET = bids.INPUT_DATASET  # the DatasetLinks name of the input dataset (bids:raw:sub-01/...)
_FIT_FILES = {"model": "model.safetensors", "metrics": "metrics.json", "generated_obs": "generated-obs.tsv",
              "generated_latent": "generated-latent.tsv", "curve": "curve.tsv", "figure": "fit.png",
              "checkpoint": "checkpoint", "provenance": "provenance.json"}


def run_names(run: bids.BoldRun, atlas_name: str) -> tuple[Path, str, str]:
    """Output sub-folder (relative to OUTPUT_DIR), file base and run label (the base without ``sub-``)."""
    ents = dict(run.key_entities(), atlas=atlas_name)
    folder = Path(f"sub-{run.subject}") / (f"ses-{run.session}" if run.session else "") / "func"
    return folder, bids.build_name(ents), bids.build_name({k: v for k, v in ents.items() if k != "sub"})


def fit_prefix(base: str, seed: int | None = None) -> str:
    """Prefix of one fit's files: ``{base}[_seed-N]_desc-convssm``."""
    return f"{base}{'' if seed is None else f'_seed-{seed}'}_desc-{FIT_DESC}"


def fit_label(label: str, seed: int | None = None) -> str:
    """The ``run`` column of status.tsv for a fit: the run label, ``_seed-N`` appended."""
    return label if seed is None else f"{label}_seed-{seed}"


def fit_files(prefix: str = "") -> dict[str, str]:
    """File names of one fit's outputs (model, metrics, generated_obs, generated_latent, curve, figure,
    checkpoint, provenance)."""
    return {k: f"{prefix}_{v}" if prefix else v for k, v in _FIT_FILES.items()}


def draws_fit_figure(prefix: str = "") -> bool:
    """Whether a fit gets its own data-vs-generated figure (``_fit.png``): a run fitted once does; the fits of
    a seed list (``_seed-N`` in the prefix) do not (the subject report draws one seed's figures per run, the
    median or the kept seed; one figure per seed would cost more CPU time than a cohort's training on a GPU)."""
    return re.search(r"_seed-\d+_desc-", prefix + "_") is None


def outputs_written(folder: str | Path, prefix: str = "") -> bool:
    """True when every output file of a fit is in ``folder``, its figure included where it gets one
    (:func:`draws_fit_figure`; a fit whose figure a full disk stopped is not done); the checkpoint and the
    provenance do not count."""
    skip = ("checkpoint", "provenance") if draws_fit_figure(prefix) else ("checkpoint", "provenance", "figure")
    return all((Path(folder) / name).is_file() for key, name in fit_files(prefix).items() if key not in skip)


def cleaned_series(folder: Path, base: str) -> Path:
    """The extracted region series a run's fits were made from."""
    return table_path(folder, base, "cleaned")


def fit_paths(model_path: str | Path) -> dict[str, Path]:
    """Every file of one fit from its ``*_model.safetensors`` (+ ``data``/``data_json``: the cleaned series
    and its sidecar, ``base``: the run's file base)."""
    model_path = Path(model_path)
    d, prefix = model_path.parent, model_path.name[: -len("_" + _FIT_FILES["model"])]
    base = prefix.rsplit("_desc-", 1)[0]
    base = base.rsplit("_seed-", 1)[0] if "_seed-" in base else base
    out = {k: d / v for k, v in fit_files(prefix).items()}
    data = cleaned_series(d, base)
    return dict(out, model=model_path, data=data, data_json=data.with_suffix(".json"), base=Path(base))


def parse_fit_name(path: str | Path) -> tuple[str, str, str]:
    """Session, run label (without ``sub-`` and ``seed-``) and seed of a fit's file name ("" when absent)."""
    name = Path(path).name.split("_desc-")[0]
    ents = dict(e.split("-", 1) for e in name.split("_") if "-" in e)
    run = "_".join(p for p in name.split("_") if not p.startswith(("sub-", "seed-")))
    return ents.get("ses", ""), run, ents.get("seed", "")


def find_fits(output_dir: Path) -> dict[str, list[Path]]:
    """Model files of every participant folder, ``{"sub-01": [paths]}`` (folders without fits map to [])."""
    pattern = f"*_desc-{FIT_DESC}_{_FIT_FILES['model']}"
    return {sub.name: sorted(sub.rglob(pattern)) for sub in sorted(Path(output_dir).glob("sub-*")) if sub.is_dir()}


def run_provenances(folder: Path, base: str) -> list[Path]:
    """The provenance files of every fit (every seed) of run ``base`` in ``folder``."""
    return sorted(Path(folder).glob(f"{base}_*desc-{FIT_DESC}_{_FIT_FILES['provenance']}"))


def prefix_of(path: Path) -> str:
    """The fit prefix of one of its files (``..._desc-convssm``)."""
    name = Path(path).name
    return name[: name.index(f"_desc-{FIT_DESC}") + len(f"_desc-{FIT_DESC}")]


def subject_report(output_dir: Path, participant_id: str) -> Path:
    """The participant's HTML report, ``OUTPUT_DIR/sub-XX.html``."""
    return Path(output_dir) / f"{participant_id}.html"


def bidsignore_patterns() -> list[str]:
    """``.bidsignore`` patterns (gitignore syntax) of every output BIDS has no name for yet: the fits' files
    (and sidecars), the extracted series, the checkpoints, status.tsv (and its lock,
    :func:`dsr.io.status_table.status_lock`), the group, sweep and log folders, the reports and the metrics
    description."""
    # folders are named without a trailing slash: bids-validator-deno 3.0.2 ignores "group" but not "group/"
    fit = [f"*_{name}" for name in _FIT_FILES.values()]
    sidecars = [f"*_{Path(name).stem}.json" for key, name in _FIT_FILES.items()
                if Path(name).suffix in (".tsv", ".safetensors")]
    return [*fit, *sidecars, "*_timeseries.tsv", "*_timeseries.json", STATUS, GROUP_DIR, SWEEP_DIR, LOG_DIR,
            "*.html", METRICS_DESCRIPTION, ".status.lock"]


def write_bidsignore(output_dir: str | Path) -> Path:
    """Write ``OUTPUT_DIR/.bidsignore`` atomically: the lines already there (a user's own) are kept as they
    are, and every pattern of :func:`bidsignore_patterns` not among them is appended."""
    path = Path(output_dir) / BIDSIGNORE
    try:
        old = path.read_text().splitlines() if path.is_file() else []
    except (OSError, UnicodeDecodeError):
        old = []  # unreadable: rewritten with dsr's patterns
    new = [p for p in bidsignore_patterns() if p not in {line.strip() for line in old}]
    if not new and path.is_file():
        return path
    header = [] if any(line.startswith("# dsr") for line in old) else ["# dsr outputs BIDS has no name for yet"]
    return atomic_write_bytes(path, ("\n".join([*old, *header, *new]) + "\n").encode())

"""Planning the participant level: the runs, the atlas, the extraction settings and one :class:`FitJob`
per run × seed. Nothing here writes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dsr.config import DsrConfig
from dsr.errors import InputError
from dsr.io import bids, extract, nifti
from dsr.io.derivatives import fit_label, run_names


@dataclass(frozen=True)
class FitJob:
    """One fit to make: a run, how its series is extracted, the config asked for and where it goes.

    ``config`` is the requested one (``seed`` set); it is resolved against the data when the fit starts.
    ``seed`` is the seed label of the output names (None: one fit per run, named without a seed).
    ``input_root`` is the input dataset (BIDS_DIR): ``Sources`` are BIDS URIs relative to it.
    ``work_dir`` (``--work-dir``) holds the training checkpoints when given.
    """

    run: bids.BoldRun
    atlas: nifti.Atlas
    settings: extract.ExtractionSettings
    config: DsrConfig
    output_dir: Path
    atlas_spec: str
    seed: int | None = None
    input_root: Path | None = None
    work_dir: Path | None = None  # checkpoints go here (same relative place) instead of beside the outputs

    @property
    def participant_id(self) -> str:
        return f"sub-{self.run.subject}"

    @property
    def label(self) -> str:
        """The fit's ``run`` column in status.tsv (run label, ``_seed-N`` appended)."""
        return fit_label(run_names(self.run, self.atlas.name)[2], self.seed)


def check_output_dir(bids_dir: Path, output_dir: Path) -> None:
    """Refuse an output folder that is the BIDS folder or lies inside it."""
    b, o = Path(bids_dir).resolve(), Path(output_dir).resolve()
    if o == b or b in o.parents:
        raise InputError(f"the output folder must not lie inside the BIDS folder {b}; choose a folder "
                         "outside it", output_dir)
    if o.exists() and not o.is_dir():
        raise InputError("the output path exists and is not a folder", output_dir)


def default_atlas(bids_dir: Path, runs: list[bids.BoldRun]) -> Path:
    """The one labels atlas (``*_dseg.nii[.gz]``) shipped in ``BIDS_DIR/derivatives/atlas`` or ``BIDS_DIR/atlas``
    whose ``tpl-``/``space-`` matches the runs' space."""
    spaces = {r.space for r in runs if r.space}
    found = []
    for folder in (bids_dir / "derivatives" / "atlas", bids_dir / "atlas"):
        if folder.is_dir():
            for p in sorted(folder.rglob("*_dseg.nii*")):
                ents, _, _ = bids.parse_name(p)
                tpl = ents.get("tpl") or ents.get("space")
                if not spaces or tpl is None or tpl in spaces:
                    found.append(p)
    if len(found) == 1:
        return found[0]
    hint = "pass --atlas FILE (labels or maps NIfTI, coordinates TSV) or power2011, dosenbach2010, seitzman2018"
    if not found:
        raise InputError(f"no atlas given and no *_dseg.nii.gz in derivatives/atlas; {hint}", bids_dir)
    raise InputError(f"no atlas given and {len(found)} candidates in derivatives/atlas "
                     f"({', '.join(p.name for p in found)}); {hint}", bids_dir)


@dataclass
class ParticipantPlan:
    """The runs of a participant-level call and what every fit of them shares."""

    runs: list[bids.BoldRun]
    missing: list[str]  # requested labels without runs
    atlas: nifti.Atlas
    atlas_spec: str
    settings: extract.ExtractionSettings
    bids_dir: Path | None = None  # the input dataset (DatasetLinks "raw")

    def jobs(self, config: DsrConfig, output_dir: Path, seeds: list[int] | None,
             work_dir: Path | None = None) -> list[FitJob]:
        """One :class:`FitJob` per run and seed (``seeds``, else the config's ``seeds.count`` seeds from its
        ``seed`` on, else one fit with the config's seed)."""
        if not seeds and config.seeds.count > 1:
            seeds = [config.seed + i for i in range(config.seeds.count)]
        seed_list = [None] if not seeds else [int(x) for x in seeds]
        return [FitJob(r, self.atlas, self.settings, config if sd is None else config.replace(seed=sd),
                       Path(output_dir), self.atlas_spec, sd, self.bids_dir, work_dir)
                for r in self.runs for sd in seed_list]


def plan_participant(bids_dir: Path, output_dir: Path, *, participant_labels: list[str] | None,
                     task: str | None, session: str | None, space: str | None, atlas: str | None,
                     config: DsrConfig, confounds: str | None, derivatives: str | Path | None = "auto",
                     confounds_mode: str | None = None, high_pass: float | None = None,
                     low_pass: float | None = None, radius: float | None = None,
                     filters: dict | None = None) -> ParticipantPlan:
    """Find the runs, load the atlas and settle the extraction settings (see
    :func:`dsr.pipelines.participant.run_participant`)."""
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    check_output_dir(bids_dir, output_dir)
    runs = bids.find_runs(bids_dir, participant_labels=participant_labels, task=task, session=session,
                          space=space, derivatives=derivatives, filters=filters)
    found = {r.subject for r in runs}
    missing = [lab for lab in (bids._norm_labels(participant_labels) or []) if lab not in found]
    if not runs:
        filters = ", ".join(f"{k} {v}" for k, v in (("participant", participant_labels), ("task", task),
                                                    ("session", session), ("space", space),
                                                    ("the BIDS filter file's", filters)) if v)
        raise InputError("no BOLD runs found" + (f" for {filters}" if filters else ""), bids_dir)
    atlas_spec = str(atlas) if atlas is not None else str(default_atlas(bids_dir, runs))
    atlas_obj = nifti.load_atlas(atlas_spec, radius=radius)
    if radius is not None and atlas_obj.kind != "spheres":
        raise InputError(f"--radius sets the spheres of a coordinate atlas; this atlas is a {atlas_obj.kind} "
                         "image (drop --radius)", atlas_spec)
    settings = extract.ExtractionSettings.from_config(  # the config's [extract], command-line values win
        config.extract, observation=config.model.observation, confounds=confounds, confounds_mode=confounds_mode,
        high_pass=high_pass, low_pass=low_pass, radius=radius)
    return ParticipantPlan(runs, missing, atlas_obj, atlas_spec, settings, bids_dir)


def absolute_paths(bids_dir: Path, output_dir: Path, atlas: str | None) -> tuple[Path, Path, str | None]:
    """The folders and an atlas *file* as absolute paths (Ray workers may run in another folder or on another
    node; an atlas given by name stays a name)."""
    if atlas is not None and Path(atlas).exists():
        atlas = str(Path(atlas).resolve())
    return Path(bids_dir).resolve(), Path(output_dir).resolve(), atlas



"""A ground-truth BIDS + fMRIPrep-style dataset: known dynamics per subject, seen through BOLD.

Each subject gets a parameter (the Lorenz-96 forcing F, or the Hopf-network coupling G) and an age that
grows with it. Its region activity is turned into region BOLD (SPM HRF, or Balloon–Windkessel), spread
over the voxels of a small labels atlas (12³ voxels by default), and contaminated voxel by voxel with
head motion (the confounds' motion regressors), a physiological signal shared with white matter and CSF,
a linear drift and white noise. Written out:

    OUT/dataset_description.json, README, participants.tsv/.json, task-rest_bold.json (RepetitionTime)
    OUT/sub-XX/func/sub-XX_task-rest_bold.nii.gz                       (raw, optional)
    OUT/derivatives/fmriprep/sub-XX/func/*_space-S_desc-preproc_bold.nii.gz (+ .json)
    OUT/derivatives/fmriprep/sub-XX/func/*_desc-confounds_timeseries.tsv    (+ .json)
    OUT/derivatives/atlas/tpl-S_atlas-Sim_dseg.nii.gz (+ .tsv)
    OUT/derivatives/groundtruth/sub-XX/func/*_desc-{latent,bold}_timeseries.tsv (+ .json)

Run ``python -m dsr.simulate.bids_dataset OUT --subjects 6 --seed 0``.
"""
from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from dsr.io.atomic import atomic_write_bytes, atomic_write_text, write_json, write_tsv
from dsr.simulate import dynamics, hemodynamics
from dsr.signal.filters import spm_hrf

SPACE = "MNI152NLin2009cAsym"
ATLAS = "Sim"
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
VOXEL_MM = 4.0


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)


def simulate_region_bold(system: str, param: float, n_regions: int, n_volumes: int, tr: float, *,
                         rng: np.random.Generator, hemo: str = "hrf") -> tuple[np.ndarray, np.ndarray]:
    """Region latents and BOLD of one run, both z-scored.

    Returns
    -------
    latent : ndarray, shape (T, N)
        Neural activity at the volume times.
    bold : ndarray, shape (T, N)
        Region BOLD (every volume has a full haemodynamic history).
    """
    extra = len(spm_hrf(tr))  # warm-up volumes, dropped
    if hemo == "hrf":
        neural = _z(dynamics.simulate(system, n_regions, param, (n_volumes + extra) * tr, tr, rng=rng))
        bold = hemodynamics.hrf_bold(neural, tr)  # (T + extra, N)
        return neural[extra:], _z(bold[extra:])
    if hemo in ("balloon", "bw", "balloon-windkessel"):
        sub = 10
        fine = _z(dynamics.simulate(system, n_regions, param, (n_volumes + extra) * tr, tr / sub, rng=rng))
        bold = hemodynamics.balloon_windkessel(0.5 * fine, tr / sub, substeps=max(1, int(np.ceil(tr / sub / 0.02))))
        return fine[::sub][extra:], _z(bold[::sub][extra:])
    raise ValueError(f"unknown hemodynamics {hemo!r}; choose 'hrf' or 'balloon'")


def make_geometry(shape=(12, 12, 12), n_regions: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A spherical brain: CSF core, white-matter shell, grey-matter rind split into ``n_regions`` sectors.

    Returns
    -------
    atlas : ndarray of int16, shape ``shape``
        Region labels 1..n_regions in grey matter, 0 elsewhere.
    tissue : ndarray of int8, shape ``shape``
        0 outside, 1 grey matter, 2 white matter, 3 CSF.
    """
    shape = tuple(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) - (s - 1) / 2 for s in shape], indexing="ij"), axis=-1)
    r_max = min(shape) / 2 - 0.4
    r = np.linalg.norm(grid / (np.array(shape) / min(shape)), axis=-1)
    tissue = np.zeros(shape, np.int8)
    tissue[r <= r_max] = 1
    tissue[r <= 0.5 * r_max] = 2
    tissue[r <= 0.27 * r_max] = 3
    k = np.arange(n_regions) + 0.5  # Fibonacci directions
    phi, cos_t = np.pi * (1 + 5 ** 0.5) * k, 1 - 2 * k / n_regions
    dirs = np.stack([np.sqrt(1 - cos_t ** 2) * np.cos(phi), np.sqrt(1 - cos_t ** 2) * np.sin(phi), cos_t], 1)
    nearest = np.argmax(grid @ dirs.T, axis=-1)  # (X, Y, Z)
    atlas = np.where(tissue == 1, nearest + 1, 0).astype(np.int16)
    return atlas, tissue


def simulate_motion(n: int, tr: float, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """(T, 6) head motion; translations in mm, rotations in rad.

    A slow linear drift, fast mean-reverting jitter (time constant 0.5 s) and a few brief jerks (1-3 volumes,
    about 1 mm) that scrubbing flags.
    """
    phi = np.exp(-tr / 0.5)
    jitter = np.zeros((n, 6))
    eps = rng.normal(0, 0.05 * scale * np.sqrt(1 - phi ** 2), (n, 6))
    for t in range(1, n):
        jitter[t] = phi * jitter[t - 1] + eps[t]
    drift = np.linspace(0, 1, n)[:, None] * rng.normal(0, 0.3 * scale, 6)  # (T, 6)
    jerks = np.zeros((n, 6))
    for t in rng.choice(np.arange(5, n - 3), size=max(1, n // 100), replace=False):
        jerks[t:t + int(rng.integers(1, 4))] += rng.normal(0, 0.5 * scale, 6)
    motion = jitter + drift + jerks
    motion[:, 3:] /= 50.0  # rotations: mm at 50 mm radius -> rad
    return motion - motion[0]


def framewise_displacement(motion: np.ndarray) -> np.ndarray:
    """Power et al. (2012) FD in mm (first volume NaN)."""
    d = np.abs(np.diff(motion, axis=0))  # (T-1, 6)
    return np.concatenate([[np.nan], d[:, :3].sum(1) + 50.0 * d[:, 3:].sum(1)])


def synthesize_volumes(region_bold: np.ndarray, atlas: np.ndarray, tissue: np.ndarray, motion: np.ndarray,
                       physio: np.ndarray, rng: np.random.Generator, noise: float = 1.0,
                       signal: float = 1.0) -> np.ndarray:
    """(X, Y, Z, T) int16 volumes; signals in percent of each voxel's baseline.

    Grey matter carries its region's BOLD (``signal`` %), every brain voxel motion (the same linear mixing of
    the six parameters for a region or tissue, plus voxel jitter), the physiological signal (stronger in WM
    and CSF), a linear drift and ``noise`` % white noise.
    """
    n = region_bold.shape[0]
    brain = tissue > 0
    nv = int(brain.sum())
    lab = np.where(atlas[brain] > 0, atlas[brain] - 1, region_bold.shape[1] + tissue[brain] - 2)  # (V,)
    motion_mm = np.concatenate([motion[:, :3], 50.0 * motion[:, 3:]], axis=1)  # (T, 6)
    beta = rng.normal(0, 1.2, (region_bold.shape[1] + 2, 6))[lab] + rng.normal(0, 0.3, (nv, 6))  # (V, 6)
    gm = (atlas[brain] > 0)
    amp = np.where(gm, signal * rng.uniform(0.7, 1.3, nv), 0.0)  # (V,)
    phys_w = np.where(gm, rng.uniform(0.2, 0.5, nv), rng.uniform(0.8, 1.2, nv))  # (V,)
    drift = rng.normal(0, 1.0, nv)[None, :] * np.linspace(-0.5, 0.5, n)[:, None]  # (T, V)
    bold = np.zeros((n, nv))
    bold[:, gm] = region_bold[:, atlas[brain][gm] - 1]
    pct = (amp * bold + motion_mm @ beta.T + phys_w * physio[:, None] + drift
           + rng.normal(0, noise, (n, nv)))  # (T, V)
    base = np.select([tissue[brain] == 1, tissue[brain] == 2], [1000.0, 800.0], 1200.0)
    base = base * rng.uniform(0.9, 1.1, nv)  # (V,)
    out = 30.0 + rng.normal(0, 3.0, tissue.shape + (n,))  # (X, Y, Z, T) background
    out[brain] = (base * (1 + pct / 100.0)).T
    return np.round(out).astype(np.int16)


def _physio(n: int, tr: float, rng: np.random.Generator) -> np.ndarray:
    """Shared physiological fluctuation (unit scale, in %): breathing near 0.27 Hz (aliased at long TRs)
    plus fast (nearly white) cardiac-like fluctuations."""
    t = tr * np.arange(n)
    breath = np.sin(2 * np.pi * 0.27 * t + rng.uniform(0, 2 * np.pi) + 0.3 * np.cumsum(rng.normal(0, 0.1, n)))
    bumps = np.convolve(rng.normal(size=n + 4), np.hanning(3), "same")[2:n + 2]
    return 0.6 * breath + 0.6 * _z(bumps)


def confounds_table(vol: np.ndarray, tissue: np.ndarray, motion: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """fMRIPrep-style confounds (T, C): global/WM/CSF signals, motion, their derivatives and squares, FD."""
    base = {"global_signal": vol[tissue > 0].mean(0), "white_matter": vol[tissue == 2].mean(0),
            "csf": vol[tissue == 3].mean(0)}
    base.update({name: motion[:, i] for i, name in enumerate(MOTION)})
    cols, names = [], []
    for name, x in base.items():
        d = np.concatenate([[np.nan], np.diff(x)])
        for suffix, y in (("", x), ("_derivative1", d), ("_power2", x ** 2), ("_derivative1_power2", d ** 2)):
            cols.append(y)
            names.append(name + suffix)
    fd = framewise_displacement(motion)
    cols.append(fd)
    names.append("framewise_displacement")
    for j, t in enumerate(np.flatnonzero(np.nan_to_num(fd) > 0.5)):
        spike = np.zeros(len(fd))
        spike[t] = 1.0
        cols.append(spike)
        names.append(f"motion_outlier{j:02d}")
    return np.stack(cols, 1), names


def _tsv_na(array: np.ndarray, columns: list[str]) -> str:
    lines = ["\t".join(columns)]
    for row in array:
        lines.append("\t".join("n/a" if not np.isfinite(v) else f"{v:.6g}" for v in row))
    return "\n".join(lines) + "\n"


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> Path:
    """Write a NIfTI-1 image atomically (``.nii.gz`` compressed deterministically)."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms(img.header.get_zooms()[:3] + (tr,))
    raw = img.to_bytes()
    return atomic_write_bytes(path, gzip.compress(raw, compresslevel=6, mtime=0)
                              if str(path).endswith(".gz") else raw)


def affine_for(shape) -> np.ndarray:
    """4 mm isotropic voxels centred on the origin."""
    aff = np.diag([VOXEL_MM] * 3 + [1.0])
    aff[:3, 3] = -VOXEL_MM * (np.asarray(shape) - 1) / 2
    return aff


def make_dataset(out_dir: str | Path, n_subjects: int = 6, seed: int = 0, *, n_volumes: int = 300,
                 tr: float = 1.0, n_regions: int = 8, shape=(12, 12, 12), system: str = "lorenz96",
                 hemo: str = "hrf", n_runs: int = 1, raw: bool = True, noise: float = 1.0,
                 motion_scale: float = 1.0) -> dict:
    """Write the dataset; returns ``{"participants": [...], "params": [...], "root": Path}``.

    Parameters
    ----------
    out_dir : path
    n_subjects, seed : int
        Subject ``i`` uses ``default_rng([seed, i])``; parameters are stratified over the range.
    n_volumes, tr : int, float
        Run length and repetition time (s).
    n_regions : int
        Atlas regions (= dimension of the dynamics).
    shape : tuple
        Voxel grid.
    system : {"lorenz96", "hopf"}
    hemo : {"hrf", "balloon"}
    n_runs : int
        Runs per subject (``run-`` entity when > 1).
    raw : bool
        Also write raw ``*_bold.nii.gz`` files.
    noise, motion_scale : float
        Voxel white noise (% of baseline) and head-motion scale.
    """
    root = Path(out_dir)
    pname = dynamics.SYSTEMS[system]
    lo, hi = dynamics.PARAM_RANGE[system]
    atlas, tissue = make_geometry(shape, n_regions)
    aff = affine_for(shape)
    names = [f"R{i + 1:02d}" for i in range(n_regions)]
    _write_dataset_files(root, tr, system, hemo, pname, names, aff, atlas, tissue)
    rows, params = [], []
    strata = np.random.default_rng(seed).permutation(n_subjects)  # parameters spread over the range
    for i in range(n_subjects):
        sub = f"{i + 1:02d}"
        rng = np.random.default_rng([seed, i])
        param = float(lo + (hi - lo) * (strata[i] + rng.uniform()) / n_subjects)
        age = int(np.clip(round(22 + 45 * (param - lo) / (hi - lo) + rng.normal(0, 4)), 18, 80))
        rows.append(f"sub-{sub}\t{age}\t{rng.choice(['F', 'M'])}\t{param:.4f}")
        params.append(param)
        for r in range(n_runs):
            ents = f"sub-{sub}_task-rest" + (f"_run-{r + 1}" if n_runs > 1 else "")
            latent, bold = simulate_region_bold(system, param, n_regions, n_volumes, tr, rng=rng, hemo=hemo)
            motion = simulate_motion(n_volumes, tr, rng, motion_scale)
            vol = synthesize_volumes(bold, atlas, tissue, motion, _physio(n_volumes, tr, rng), rng, noise)
            func = root / "derivatives" / "fmriprep" / f"sub-{sub}" / "func"
            write_nifti(func / f"{ents}_space-{SPACE}_desc-preproc_bold.nii.gz", vol, aff, tr)
            write_json(func / f"{ents}_space-{SPACE}_desc-preproc_bold.json",
                       {"RepetitionTime": tr, "TaskName": "rest", "SkullStripped": False})
            table, cols = confounds_table(vol.astype(np.float64), tissue, motion)
            atomic_write_text(func / f"{ents}_desc-confounds_timeseries.tsv", _tsv_na(table, cols))
            write_json(func / f"{ents}_desc-confounds_timeseries.json",
                       {c: {"Description": "simulated"} for c in cols[:4]})
            if raw:
                write_nifti(root / f"sub-{sub}" / "func" / f"{ents}_bold.nii.gz", vol, aff, tr)
            gt = root / "derivatives" / "groundtruth" / f"sub-{sub}" / "func"
            meta = {"RepetitionTime": tr, "SamplingFrequency": 1.0 / tr, "System": system, pname: param,
                    "Hemodynamics": hemo, "Columns": names}
            write_tsv(gt / f"{ents}_desc-latent_timeseries.tsv", latent, names)
            write_json(gt / f"{ents}_desc-latent_timeseries.json",
                       dict(meta, Description="z-scored neural activity at the volume times"))
            write_tsv(gt / f"{ents}_desc-bold_timeseries.tsv", bold, names)
            write_json(gt / f"{ents}_desc-bold_timeseries.json",
                       dict(meta, Description="z-scored noise-free region BOLD"))
    atomic_write_text(root / "participants.tsv", "participant_id\tage\tsex\t" + pname + "\n"
                      + "\n".join(rows) + "\n")
    atomic_write_text(root / "README", (
        "Simulated resting-state BIDS dataset (ground truth known), made by\n"
        f"  python -m dsr.simulate.bids_dataset OUT --subjects {n_subjects} --seed {seed} --volumes {n_volumes} "
        f"--tr {tr:g} --regions {n_regions} --size {shape[0]} --system {system} --hemodynamics {hemo}"
        f"{' --runs ' + str(n_runs) if n_runs > 1 else ''}{'' if raw else ' --no-raw'}\n\n"
        f"Each subject's {n_regions} regions follow {system} dynamics whose parameter '{pname}' is in "
        "participants.tsv (age grows with it), seen through "
        f"{'the SPM HRF' if hemo == 'hrf' else 'the Balloon-Windkessel model'} at TR {tr:g} s on a toy "
        f"{'x'.join(map(str, shape))} grid of {VOXEL_MM:g} mm voxels labelled {SPACE} (not a real template).\n"
        "Voxels add head motion (the confounds' motion regressors), a physiological signal shared with white\n"
        "matter and CSF, a linear drift and white noise.\n\n"
        "sub-*/func: raw runs; derivatives/fmriprep: preprocessed runs and confounds; derivatives/atlas: the\n"
        "labels atlas; derivatives/groundtruth: the region latents and noise-free region BOLD per run.\n"))
    return {"root": root, "participants": [f"sub-{i + 1:02d}" for i in range(n_subjects)], "params": params}


def _write_dataset_files(root, tr, system, hemo, pname, names, aff, atlas, tissue) -> None:
    gen = [{"Name": "dsr.simulate", "Description": f"{system} dynamics, {hemo} haemodynamics"}]
    write_json(root / "dataset_description.json", {
        "Name": "dsr simulated resting-state example", "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "License": "CC0", "Authors": ["dsr"], "GeneratedBy": gen})
    write_json(root / "task-rest_bold.json", {"TaskName": "rest", "RepetitionTime": tr})
    write_json(root / "participants.json", {
        "age": {"Description": "age in years (simulated; grows with the dynamics parameter)"},
        "sex": {"Description": "simulated", "Levels": {"F": "female", "M": "male"}},
        pname: {"Description": f"ground-truth {system} parameter of the subject's dynamics"}})
    atomic_write_text(root / ".bidsignore", "derivatives/\n")
    prep = root / "derivatives" / "fmriprep"
    write_json(prep / "dataset_description.json", {
        "Name": "fMRIPrep-style derivatives (simulated)", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": gen})
    adir = root / "derivatives" / "atlas"
    write_json(adir / "dataset_description.json", {"Name": "simulation atlas", "BIDSVersion": "1.9.0",
                                                   "DatasetType": "derivative", "GeneratedBy": gen})
    write_nifti(adir / f"tpl-{SPACE}_atlas-{ATLAS}_dseg.nii.gz", atlas, aff)
    atomic_write_text(adir / f"tpl-{SPACE}_atlas-{ATLAS}_dseg.tsv", "index\tname\n" + "".join(
        f"{i + 1}\t{n}\n" for i, n in enumerate(names)))
    gt = root / "derivatives" / "groundtruth"
    write_json(gt / "dataset_description.json", {"Name": "simulation ground truth", "BIDSVersion": "1.9.0",
                                                 "DatasetType": "derivative", "GeneratedBy": gen})
    write_nifti(gt / f"tpl-{SPACE}_desc-tissue_dseg.nii.gz", tissue, aff)


def main(argv=None) -> int:
    """Command line: ``python -m dsr.simulate.bids_dataset OUT [--subjects 6] [--seed 0] ...``."""
    p = argparse.ArgumentParser(prog="python -m dsr.simulate.bids_dataset", description=__doc__.split("\n")[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--subjects", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--volumes", type=int, default=300)
    p.add_argument("--tr", type=float, default=1.0)
    p.add_argument("--regions", type=int, default=8)
    p.add_argument("--size", type=int, default=12, help="voxels per side")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--system", choices=sorted(dynamics.SYSTEMS), default="lorenz96")
    p.add_argument("--hemodynamics", choices=["hrf", "balloon"], default="hrf")
    p.add_argument("--no-raw", action="store_true", help="write only the fMRIPrep-style derivatives")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    a = p.parse_args(argv)
    if a.out_dir.exists() and any(a.out_dir.iterdir()) and not a.force:
        print(f"dsr: {a.out_dir}: folder is not empty (use --force to write into it)", file=sys.stderr)
        return 2
    info = make_dataset(a.out_dir, a.subjects, a.seed, n_volumes=a.volumes, tr=a.tr, n_regions=a.regions,
                        shape=(a.size,) * 3, system=a.system, hemo=a.hemodynamics, n_runs=a.runs,
                        raw=not a.no_raw)
    print(f"wrote {len(info['participants'])} subjects to {info['root']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

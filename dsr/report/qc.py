"""Input quality of one run for the subject report: framewise displacement, tSNR, a carpet plot and the
atlas over the mean image (nilearn plotting).

The inputs are found from the cleaned series' sidecar (``*_desc-cleaned_timeseries.json``): its ``Sources``
are BIDS URIs (``bids:raw:path``) resolved against the output dataset's ``DatasetLinks``; the atlas is its
``Settings.atlas``. Inputs that are arrays, or files that have moved, give ``None`` (the report then says
"not available").
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from dsr.io.confounds import read_confounds_table
from dsr.library_warnings import logged_warnings
from dsr.report.plots import _plt

log = logging.getLogger("dsr")
FD_THRESHOLD = 0.5  # mm; the usual scrubbing threshold (Power et al. 2012)


@dataclass
class RunInputs:
    """The files a run's series came from (None where not found)."""

    bold: Path | None = None
    confounds: Path | None = None
    atlas: Path | None = None
    tr: float = 1.0
    strategy: str = ""
    regions: list[str] = field(default_factory=list)


def _dataset_links(output_dir: Path) -> dict[str, Path]:
    try:
        desc = json.loads((Path(output_dir) / "dataset_description.json").read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name, uri in (desc.get("DatasetLinks") or {}).items():
        u = urlparse(str(uri))
        if u.scheme in ("file", ""):
            out[name] = Path(unquote(u.path))
    return out


def _resolve(source: str, links: dict[str, Path], output_dir: Path) -> Path | None:
    """A BIDS URI (``bids:raw:path``, ``bids::path``) or a plain path → an existing file, else None."""
    if source.startswith("bids:"):
        _, name, rel = source.split(":", 2)
        root = links.get(name) if name else Path(output_dir)
        path = None if root is None else root / rel
    else:
        path = Path(source)
    return path if path is not None and path.is_file() else None


def run_inputs(sidecar: Path, output_dir: Path) -> RunInputs:
    """The inputs of a run, from its cleaned-series sidecar (an empty :class:`RunInputs` when unreadable)."""
    try:
        meta = json.loads(Path(sidecar).read_text())
    except (OSError, ValueError):
        return RunInputs()
    links = _dataset_links(output_dir)
    found = [p for p in (_resolve(str(s), links, output_dir) for s in meta.get("Sources") or []) if p]
    bold = next((p for p in found if p.name.endswith(("_bold.nii.gz", "_bold.nii"))), None)
    conf = next((p for p in found if "confounds" in p.name and p.suffix == ".tsv"), None)
    atlas = (meta.get("Settings") or {}).get("atlas")
    atlas = Path(atlas) if atlas and Path(str(atlas)).is_file() else None
    if atlas is None:
        atlas = next((p for p in found if "atlas-" in p.name and ".nii" in p.name), None)
    return RunInputs(bold, conf, atlas, float(meta.get("RepetitionTime") or 1.0),
                     str(meta.get("ConfoundStrategy") or ""), [str(c) for c in meta.get("Columns") or []])


def framewise_displacement(confounds: Path) -> np.ndarray | None:
    """fMRIPrep's ``framewise_displacement`` column (first volume 0), None when absent."""
    df = read_confounds_table(confounds)
    col = next((c for c in ("framewise_displacement", "FramewiseDisplacement") if c in df.columns), None)
    if col is None:
        return None
    return np.nan_to_num(df[col].to_numpy(dtype=np.float64), nan=0.0)


def fd_figure(fd: np.ndarray, tr: float, threshold: float = FD_THRESHOLD) -> bytes:
    """Framewise displacement against time with the threshold line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 2.2))
    t = np.arange(len(fd)) * tr
    ax.plot(t, fd, color="k", lw=0.8)
    ax.axhline(threshold, color="tab:red", ls="--", lw=0.8, label=f"{threshold:g} mm")
    bad = fd > threshold
    if bad.any():
        ax.scatter(t[bad], fd[bad], color="tab:red", s=8, zorder=3)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("FD (mm)")
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig)


def _save(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


class ImageQC:
    """The BOLD image of a run with its atlas on the same grid: tSNR, a carpet plot, the atlas over the mean."""

    def __init__(self, bold: Path, atlas: Path | None, tr: float):
        import nibabel as nib
        from nilearn import image

        with logged_warnings("nilearn"):
            self.img = nib.load(str(bold))
            self.mean = image.mean_img(self.img, copy_header=True)
            self.atlas = None
            if atlas is not None:
                self.atlas = image.resample_to_img(str(atlas), self.mean, interpolation="nearest",
                                                   copy_header=True, force_resample=True)
        self.tr = tr

    def mask(self) -> np.ndarray:
        """Voxels inside the atlas (every non-zero label), else those above 20 % of the mean's maximum."""
        if self.atlas is not None:
            return np.asarray(self.atlas.dataobj) > 0
        m = np.asarray(self.mean.dataobj, dtype=np.float64)
        return m > 0.2 * m.max()

    def tsnr(self) -> float:
        """Median temporal SNR (mean / SD over time) of the voxels in :meth:`mask`."""
        data = np.asarray(self.img.dataobj, dtype=np.float32)[self.mask()]  # (V, T)
        sd = data.std(1)
        ok = sd > 0
        return float(np.median(data.mean(1)[ok] / sd[ok])) if ok.any() else float("nan")

    def carpet(self) -> bytes:
        """Voxel intensities (rows) against time, detrended and standardised (nilearn ``plot_carpet``)."""
        import nibabel as nib
        from nilearn import plotting

        plt = _plt()
        fig = plt.figure(figsize=(9, 3.2))
        mask = nib.Nifti1Image(self.mask().astype(np.int8), self.mean.affine)
        with logged_warnings("nilearn"):
            plotting.plot_carpet(self.img, mask_img=mask, t_r=self.tr, figure=fig, title=None)
        return _save(fig)

    def atlas_over_mean(self) -> bytes:
        """The atlas regions drawn over the run's mean image (nilearn ``plot_roi``)."""
        from nilearn import plotting

        plt = _plt()
        fig = plt.figure(figsize=(9, 3))
        with logged_warnings("nilearn"):
            plotting.plot_roi(self.atlas, bg_img=self.mean, figure=fig, display_mode="ortho", alpha=0.6,
                              cmap="tab20", draw_cross=False, black_bg=False, dim=0)
        return _save(fig)

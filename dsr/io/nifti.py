"""NIfTI validation and region extraction with nilearn maskers.

Three kinds of atlas: a labels image (3D integers, names from a labels TSV), a probabilistic maps image
(4D, one map per region), or sphere centres (a coordinates TSV, or Power 2011 / Dosenbach 2010 /
Seitzman 2018 by name, shipped inside nilearn). Every problem raises one :class:`InputError` naming
the file.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from dsr.errors import InputError
from dsr.library_warnings import logged_warnings
from dsr.io.sizes import check_declared, check_memory

_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}
#: Coordinate atlases offered by name: name → (nilearn fetcher, default radius in mm).
COORDINATE_ATLASES = {
    "power2011": ("fetch_coords_power_2011", 5.0),
    "dosenbach2010": ("fetch_coords_dosenbach_2010", 5.0),
    "seitzman2018": ("fetch_coords_seitzman_2018", None),  # radii ship with the coordinates
}
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, MemoryError)


def _why(exc: BaseException, path: Path) -> str:
    """An exception's text without the file name (the error line names it first already)."""
    text = " ".join(str(exc).split())
    text = text.replace(f"File {path} is", "it is").replace(f"Empty file: '{path}'", "empty file")
    return text.replace(f'"{path}"', "the file").replace(f"'{path}'", "the file").replace(str(path), "the file")


def _load_image(path: Path, what: str) -> nib.spatialimages.SpatialImage:
    """nib.load with one-line errors; the data stays on disk (proxy)."""
    if not path.is_file():
        raise InputError(f"{what} not found", path)
    try:
        img = nib.load(str(path))
    except nib.filebasedimages.ImageFileError as exc:
        raise InputError(f"not a NIfTI image ({_why(exc, path)})", path) from None
    except _READ_ERRORS as exc:
        raise InputError(f"cannot read the NIfTI header ({exc.__class__.__name__}: {_why(exc, path)})",
                         path) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"not a NIfTI image (read as {img.__class__.__name__})", path)
    _check_declared_size(img, path)
    return img


def _check_declared_size(img, path: Path) -> None:
    """Refuse, before reading any voxel, a header that declares more data than the file can hold (a
    truncated or crafted file) or than memory can hold as float32."""
    n = float(np.prod([float(d) for d in img.shape])) if img.shape else 0.0
    stored = int(n * img.header.get_data_dtype().itemsize)
    check_declared(stored, path, f"the NIfTI header (shape {tuple(img.shape)}, "
                                 f"{img.header.get_data_dtype()})", int(img.header.get("vox_offset", 0)))
    check_memory(int(n * 4), path, f"the NIfTI image (shape {tuple(img.shape)}) as float32")


def _load_data(img, path: Path) -> np.ndarray:
    """The image data as float32, with truncated or corrupt files reported."""
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except _READ_ERRORS as exc:
        raise InputError(f"truncated or corrupt image data ({exc.__class__.__name__}: {_why(exc, path)})",
                         path) from None
    return data


def _check_finite(data: np.ndarray, path: Path) -> None:
    bad = ~np.isfinite(data)
    if bad.any():
        voxels = bad.reshape(-1, data.shape[-1]).any(axis=1) if data.ndim == 4 else bad.ravel()
        first = tuple(int(i) for i in np.argwhere(bad)[0][:3])
        raise InputError(f"{int(voxels.sum())} voxel(s) hold NaN or Inf values (first at voxel {first})",
                         path)


def load_bold(path: str | Path) -> nib.Nifti1Image:
    """Load and validate a 4D BOLD run; the returned image holds its float32 data in memory.

    Raises
    ------
    InputError
        Missing file, not a NIfTI, truncated data, not 4D, NaN/Inf voxels.
    """
    path = Path(path)
    img = _load_image(path, "BOLD image")
    if len(img.shape) != 4:
        raise InputError(f"is a {len(img.shape)}D image of shape {tuple(img.shape)}; a BOLD run must be 4D "
                         "(x, y, z, time)", path)
    data = _load_data(img, path)  # (X, Y, Z, T)
    _check_finite(data, path)
    return nib.Nifti1Image(data, img.affine, img.header)


def header_tr(img) -> float | None:
    """TR in seconds from the header's 4th zoom, or None without a time unit or with a zero TR."""
    zooms = img.header.get_zooms()
    if len(zooms) < 4:
        return None
    unit = img.header.get_xyzt_units()[1]
    if unit not in _TIME_UNITS or not zooms[3] > 0:
        return None
    return float(zooms[3]) * _TIME_UNITS[unit]


@dataclass
class Atlas:
    """Regions to extract: a labels image, a maps image or sphere centres.

    Attributes
    ----------
    kind : {"labels", "maps", "spheres"}
    name : str
        Used in output names (``atlas-<name>``).
    names : list of str
        One per region.
    path : Path or None
        The atlas file (None for a named coordinate atlas).
    img : image or None
        Labels (3D) or maps (4D) image.
    labels : list of int
        Label values (labels kind).
    coords : ndarray, shape (R, 3)
        Sphere centres in mm (spheres kind).
    radius : float or ndarray
        Sphere radius in mm (spheres kind).
    """

    kind: str
    name: str
    names: list
    path: Path | None = None
    img: object = None
    labels: list = field(default_factory=list)
    coords: np.ndarray | None = None
    radius: object = None

    def files(self) -> list[Path]:
        """Files the atlas was read from (for cache fingerprints)."""
        out = [self.path] if self.path is not None else []
        if self.path is not None and self.kind != "spheres":
            tsv = _labels_tsv(self.path)
            out += [tsv] if tsv is not None else []
        return out


def _atlas_name(path: Path) -> str:
    m = re.search(r"atlas-([A-Za-z0-9]+)", path.name)
    if m:
        return m.group(1)
    stem = path.name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9]", "", stem) or "custom"


def _labels_tsv(path: Path) -> Path | None:
    stem = path.name.split(".nii")[0]
    for cand in (f"{stem}.tsv", f"{stem}_labels.tsv", f"{stem}.csv", f"{stem}_labels.csv"):
        if (path.parent / cand).is_file():
            return path.parent / cand
    return None


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=None if path.suffix == ".csv" else "\t", engine="python")
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the table ({exc.__class__.__name__}: {exc})", path) from None


def _label_names(tsv: Path) -> dict[int, str]:
    """{label value: name} from a BIDS dseg TSV (index, name) or any two-column table."""
    df = _read_table(tsv)
    cols = {c.lower(): c for c in df.columns}
    idx = next((cols[c] for c in ("index", "label", "value", "id") if c in cols), df.columns[0])
    name = next((cols[c] for c in ("name", "label_name", "region", "roi") if c in cols and cols[c] != idx),
                None)
    try:
        values = [int(v) for v in df[idx]]
    except (TypeError, ValueError):
        raise InputError(f"column '{idx}' must hold integer labels", tsv) from None
    names = [str(v) for v in (df[name] if name is not None else [f"region-{v}" for v in values])]
    _check_unique(values, f"label value (column '{idx}')", tsv)
    _check_unique([n for v, n in zip(values, names) if v != 0], "region name", tsv)
    return {v: n for v, n in zip(values, names) if v != 0}


def _check_unique(items: list, what: str, path: Path) -> None:
    """Refuse a table listing the same label or region name twice (outputs are keyed by name)."""
    seen = set()
    for item in items:
        if item in seen:
            raise InputError(f"{what} {item!r} appears more than once; each region needs its own", path)
        seen.add(item)


def load_atlas(spec: str | Path, *, radius: float | None = None) -> Atlas:
    """Load an atlas from a NIfTI file, a coordinates TSV or a coordinate atlas name.

    Parameters
    ----------
    spec : str or path
        ``power2011``, ``dosenbach2010``, ``seitzman2018`` (or ``power``, ``dosenbach``, ``seitzman``); a 3D labels NIfTI (names from the TSV of the
        same stem, BIDS ``dseg.tsv`` style); a 4D maps NIfTI; or a TSV with ``x``, ``y``, ``z`` columns.
    radius : float, optional
        Sphere radius in mm for coordinate atlases (default 5 mm, or Seitzman's own radii).

    Raises
    ------
    InputError
        Unreadable files, non-integer labels, a listed region with no voxels, an empty map.
    """
    key = str(spec).lower().replace("_", "").replace(" ", "")
    key = next((k for k in COORDINATE_ATLASES if key == k.rstrip("0123456789")), key)  # "power" -> power2011
    if key in COORDINATE_ATLASES:
        return _coordinate_atlas(key, radius)
    path = Path(spec)
    if path.suffix in (".tsv", ".csv"):
        return _coords_table(path, radius)
    img = _load_image(path, "atlas")
    data = _load_data(img, path)
    _check_finite(data, path)
    tsv = _labels_tsv(path)
    if data.ndim == 3:
        if not np.allclose(data, np.round(data)):
            raise InputError("a 3D atlas must hold integer labels (give probabilistic maps as a 4D image)", path)
        present = set(np.unique(np.round(data).astype(np.int64)).tolist()) - {0}
        names = _label_names(tsv) if tsv is not None else {v: f"region-{v}" for v in sorted(present)}
        if not names:
            raise InputError("the atlas holds no regions (all voxels are 0)", path)
        unnamed = sorted(present - set(names))
        if unnamed:
            raise InputError(f"{len(unnamed)} label value(s) of the atlas image {path.name} are not in this "
                             f"table (first: {unnamed[:5]}); add them or set those voxels to 0", tsv)
        for value, name in names.items():
            if value not in present:
                raise InputError(f"region '{name}' (label {value}) has no voxels", path)
        labels_img = nib.Nifti1Image(np.round(data).astype(np.int32), img.affine)
        return Atlas("labels", _atlas_name(path), list(names.values()), path, labels_img, list(names))
    if data.ndim == 4:
        n = data.shape[3]
        names = list(_label_names(tsv).values()) if tsv is not None else [f"map-{i + 1}" for i in range(n)]
        if len(names) != n:
            raise InputError(f"{len(names)} names in {tsv} for {n} maps", path)
        for i in range(n):
            if not np.any(data[..., i] != 0):
                raise InputError(f"region '{names[i]}' (map {i + 1}) has no voxels", path)
        return Atlas("maps", _atlas_name(path), names, path, nib.Nifti1Image(data, img.affine))
    raise InputError(f"an atlas must be a 3D labels or 4D maps image, got shape {tuple(img.shape)}", path)


def _coordinate_atlas(key: str, radius: float | None) -> Atlas:
    from nilearn import datasets

    fetcher, default_radius = COORDINATE_ATLASES[key]
    with logged_warnings("nilearn"):
        bunch = getattr(datasets, fetcher)()
    rois = bunch["rois"]
    coords = np.asarray(rois[["x", "y", "z"]], dtype=np.float64)  # (R, 3)
    names = ([str(s) for s in bunch["labels"]] if "labels" in bunch
             else [f"roi-{i + 1}" for i in range(len(coords))])
    if radius is None:
        radius = default_radius if default_radius is not None else np.asarray(bunch["radius"], dtype=float)
    return Atlas("spheres", key, names, None, coords=coords, radius=radius)


def _coords_table(path: Path, radius: float | None) -> Atlas:
    df = _read_table(path) if path.is_file() else None
    if df is None:
        raise InputError("coordinates table not found", path)
    cols = {c.lower(): c for c in df.columns}
    if not all(c in cols for c in "xyz"):
        raise InputError("a coordinates table needs columns x, y, z (mm)", path)
    coords = df[[cols["x"], cols["y"], cols["z"]]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)  # (R, 3)
    name_col = next((cols[c] for c in ("name", "label", "region", "roi") if c in cols), None)
    names = ([str(v) for v in df[name_col]] if name_col else [f"roi-{i + 1}" for i in range(len(coords))])
    _check_unique(names, "region name", path)
    if not np.isfinite(coords).all():
        raise InputError("the x, y, z columns hold missing or non-numeric values", path)
    if "radius" in cols and radius is None:
        radius = df[cols["radius"]].to_numpy(dtype=np.float64)
    return Atlas("spheres", _atlas_name(path), names, path, coords=coords,
                 radius=5.0 if radius is None else radius)


def check_atlas_grid(atlas: Atlas, bold_img, bold_path: str | Path) -> None:
    """Raise InputError unless the atlas lies on the BOLD image's voxel grid (shape and affine).

    For spheres, every centre must fall inside the image.
    """
    shape = tuple(bold_img.shape[:3])
    if atlas.kind == "spheres":
        ijk = nib.affines.apply_affine(np.linalg.inv(bold_img.affine), atlas.coords)  # (R, 3)
        inside = np.all((ijk > -0.5) & (ijk < np.array(shape) - 0.5), axis=1)
        if not inside.all():
            i = int(np.argmin(inside))
            raise InputError(f"{int((~inside).sum())} sphere centre(s) of atlas '{atlas.name}' lie outside "
                             f"the image (first: '{atlas.names[i]}' at {atlas.coords[i].tolist()} mm); "
                             "is the image in the atlas' space?", bold_path)
        return
    a_shape = tuple(atlas.img.shape[:3])
    voxel = float(np.abs(np.linalg.det(bold_img.affine[:3, :3]))) ** (1 / 3)
    if a_shape != shape or not np.allclose(atlas.img.affine, bold_img.affine, atol=1e-3 * max(voxel, 1.0)):
        raise InputError(f"atlas grid (shape {a_shape}) does not match the BOLD image {bold_path} (shape "
                         f"{shape}) in shape or affine; resample the atlas to the BOLD space", atlas.path)


def extract_regions(bold_img, atlas: Atlas, bold_path: str | Path) -> np.ndarray:
    """Region signals (no cleaning) with a nilearn masker.

    Returns
    -------
    ndarray, shape (T, R), float64, columns in ``atlas.names`` order.

    Raises
    ------
    InputError
        Atlas and image on different grids, or a constant region (naming the BOLD file).
    """
    from nilearn.maskers import NiftiLabelsMasker, NiftiMapsMasker, NiftiSpheresMasker

    check_atlas_grid(atlas, bold_img, bold_path)
    with logged_warnings("nilearn"):
        if atlas.kind == "labels":
            masker = NiftiLabelsMasker(atlas.img, background_label=0, standardize=None)
            signals = masker.fit_transform(bold_img)  # (T, R')
            ids = {k: v for k, v in masker.region_ids_.items() if k != "background"}
            col = {int(v): int(k) for k, v in ids.items()}
            signals = signals[:, [col[v] for v in atlas.labels]]  # (T, R)
        elif atlas.kind == "maps":
            masker = NiftiMapsMasker(atlas.img, standardize=None)
            signals = masker.fit_transform(bold_img)  # (T, R)
        else:
            masker = NiftiSpheresMasker([tuple(c) for c in atlas.coords], radius=_radius(atlas.radius),
                                        allow_overlap=True, standardize=None)
            signals = masker.fit_transform(bold_img)  # (T, R)
    signals = np.asarray(signals, dtype=np.float64)
    flat = np.nanstd(signals, axis=0) <= 1e-8 * (np.nanmax(np.abs(signals)) + 1e-30)
    if flat.any():
        i = int(np.argmax(flat))
        raise InputError(f"{int(flat.sum())} region(s) have a constant signal (first: '{atlas.names[i]}' of "
                         f"atlas '{atlas.name}'); are the voxels outside the brain mask?", bold_path)
    return signals


def _radius(radius):
    """nilearn takes one radius for all spheres; use the largest of per-sphere radii."""
    r = np.asarray(radius, dtype=float)
    return float(r.max()) if r.ndim else float(r)

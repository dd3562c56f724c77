"""NIfTI validation, atlases and region extraction: every bad input is one InputError line naming the file."""
import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from dsr.config import FilterConfig
from dsr.errors import InputError
from dsr.io import bids, extract, nifti
from dsr.simulate.bids_dataset import write_nifti

AFF = np.diag([3.0, 3.0, 3.0, 1.0])
T = 70  # the SPM filter at TR 1 s needs 33 taps + 25 masked samples


@pytest.fixture
def run_ds(tmp_path):
    """One raw run (6×6×6×70, TR 1 s) with a two-region labels atlas and a confounds table."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    (root / "sub-01" / "func").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t"}')
    (root / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 1.0}))
    labels = np.zeros((6, 6, 6), np.int16)
    labels[:3, :, :] = 1
    labels[3:, :, :] = 2
    signal = rng.standard_normal((T, 2))
    data = 100 + rng.standard_normal((6, 6, 6, T))
    data[:3] += signal[:, 0]
    data[3:] += signal[:, 1]
    bold = write_nifti(root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz", data.astype(np.float32), AFF, 1.0)
    atlas = write_nifti(tmp_path / "atlas-Two_dseg.nii.gz", labels, AFF)
    (tmp_path / "atlas-Two_dseg.tsv").write_text("index\tname\n1\tleft\n2\tright\n")
    conf = root / "sub-01" / "func" / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    conf.write_text("trans_x\ttrans_y\n" + "".join(f"{a:.4f}\t{b:.4f}\n" for a, b in rng.normal(size=(T, 2))))
    return {"root": root, "bold": bold, "atlas": atlas, "signal": signal, "labels": labels, "data": data,
            "confounds": conf, "tmp": tmp_path}


def _extract(ds, **settings):
    run = bids.find_runs(ds["root"])[0]
    atlas = nifti.load_atlas(ds["atlas"])
    return extract.extract_run(run, atlas, extract.ExtractionSettings(**settings), filter_config=FilterConfig())


def _assert_names(err, path):
    msg = str(err.value)
    assert msg.startswith(str(path)) and "\n" not in msg and "Traceback" not in msg


def test_labels_extraction_recovers_regions(run_ds):
    out = _extract(run_ds, confounds="none")
    assert out.series.shape == (T, 2) and out.names == ["left", "right"] and out.tr == 1.0
    for i in range(2):
        assert np.corrcoef(out.series[:, i], run_ds["signal"][:, i])[0, 1] > 0.98
    assert np.allclose(out.series.mean(0), 0, atol=1e-8) and np.allclose(out.series.std(0, ddof=1), 1)


def test_confounds_regressed_or_kept(run_ds):
    reg = _extract(run_ds, confounds="trans_x+trans_y")
    assert reg.nuisance is None and reg.meta["ConfoundStrategy"] == "trans_x+trans_y"
    kept = _extract(run_ds, confounds="trans_x+trans_y", confounds_mode="nuisance", high_pass=0.01)
    assert kept.nuisance.shape == (T, 2) and kept.nuisance_names == ["trans_x", "trans_y"]


def test_truncated_gz(run_ds):
    raw = run_ds["bold"].read_bytes()
    run_ds["bold"].write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as err:
        _extract(run_ds)
    _assert_names(err, run_ds["bold"])


def test_not_nifti(run_ds):
    run_ds["bold"].write_bytes(gzip.compress(b"this is not an image" * 50))
    with pytest.raises(InputError) as err:
        nifti.load_bold(run_ds["bold"])
    _assert_names(err, run_ds["bold"])
    run_ds["bold"].write_text("plain text")
    with pytest.raises(InputError) as err:
        nifti.load_bold(run_ds["bold"])
    _assert_names(err, run_ds["bold"])


def test_3d_image(run_ds):
    write_nifti(run_ds["bold"], run_ds["data"][..., 0].astype(np.float32), AFF)
    with pytest.raises(InputError, match="3D") as err:
        nifti.load_bold(run_ds["bold"])
    _assert_names(err, run_ds["bold"])


def test_nan_voxels(run_ds):
    data = run_ds["data"].astype(np.float32)
    data[1, 2, 3, 5:9] = np.nan
    write_nifti(run_ds["bold"], data, AFF, 1.0)
    with pytest.raises(InputError, match="NaN") as err:
        _extract(run_ds)
    _assert_names(err, run_ds["bold"])


def test_atlas_other_shape_or_affine(run_ds):
    write_nifti(run_ds["atlas"], np.pad(run_ds["labels"], ((0, 1), (0, 0), (0, 0))), AFF)
    with pytest.raises(InputError, match="does not match") as err:
        _extract(run_ds)
    _assert_names(err, run_ds["atlas"])
    write_nifti(run_ds["atlas"], run_ds["labels"], np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(InputError, match="does not match") as err:
        _extract(run_ds)
    _assert_names(err, run_ds["atlas"])


def test_atlas_region_without_voxels(run_ds):
    (run_ds["tmp"] / "atlas-Two_dseg.tsv").write_text("index\tname\n1\tleft\n2\tright\n3\tghost\n")
    with pytest.raises(InputError, match="'ghost'") as err:
        nifti.load_atlas(run_ds["atlas"])
    _assert_names(err, run_ds["atlas"])


def test_constant_region(run_ds):
    data = run_ds["data"].astype(np.float32)
    data[3:] = 0.0
    write_nifti(run_ds["bold"], data, AFF, 1.0)
    with pytest.raises(InputError, match="constant") as err:
        _extract(run_ds)
    _assert_names(err, run_ds["bold"])


def test_run_shorter_than_filter(run_ds):
    write_nifti(run_ds["bold"], run_ds["data"][..., :40].astype(np.float32), AFF, 1.0)
    with pytest.raises(InputError, match="shorter than the spm filter") as err:
        _extract(run_ds, confounds="none")
    _assert_names(err, run_ds["bold"])


def test_confounds_row_count(run_ds):
    lines = run_ds["confounds"].read_text().splitlines()
    run_ds["confounds"].write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(InputError, match="67 rows but the BOLD run has 70") as err:
        _extract(run_ds, confounds="trans_x")
    _assert_names(err, run_ds["confounds"])


def test_maps_atlas(run_ds):
    maps = np.stack([(run_ds["labels"] == 1), (run_ds["labels"] == 2)], -1).astype(np.float32) * 0.8
    path = write_nifti(run_ds["tmp"] / "maps.nii.gz", maps, AFF)
    atlas = nifti.load_atlas(path)
    assert atlas.kind == "maps" and atlas.names == ["map-1", "map-2"]
    run = bids.find_runs(run_ds["root"])[0]
    out = extract.extract_run(run, atlas, extract.ExtractionSettings(confounds="none"))
    assert np.corrcoef(out.series[:, 1], run_ds["signal"][:, 1])[0, 1] > 0.98
    maps[..., 1] = 0
    write_nifti(path, maps, AFF)
    with pytest.raises(InputError, match="no voxels") as err:
        nifti.load_atlas(path)
    _assert_names(err, path)


def test_sphere_atlases(run_ds):
    img = nib.load(str(run_ds["bold"]))
    centre = nib.affines.apply_affine(img.affine, [[1, 2, 2], [4, 2, 2]])  # mm, one per region
    table = run_ds["tmp"] / "seeds.tsv"
    table.write_text("name\tx\ty\tz\n" + "".join(f"s{i}\t{x}\t{y}\t{z}\n" for i, (x, y, z) in enumerate(centre)))
    atlas = nifti.load_atlas(table, radius=4.0)
    assert atlas.kind == "spheres" and atlas.names == ["s0", "s1"]
    run = bids.find_runs(run_ds["root"])[0]
    out = extract.extract_run(run, atlas, extract.ExtractionSettings(confounds="none"))
    assert np.corrcoef(out.series[:, 0], run_ds["signal"][:, 0])[0, 1] > 0.95
    power = nifti.load_atlas("power")  # ships inside nilearn: works offline
    assert power.coords.shape == (264, 3)
    assert nifti.load_atlas("dosenbach2010").coords.shape == (160, 3)
    assert nifti.load_atlas("seitzman2018").coords.shape == (300, 3)
    with pytest.raises(InputError, match="outside the image") as err:
        extract.extract_run(run, power, extract.ExtractionSettings(confounds="none"))
    _assert_names(err, run.bold)


def test_atlas_not_integer(run_ds):
    write_nifti(run_ds["atlas"], run_ds["labels"] + np.float32(0.5), AFF)
    with pytest.raises(InputError, match="integer") as err:
        nifti.load_atlas(run_ds["atlas"])
    _assert_names(err, run_ds["atlas"])

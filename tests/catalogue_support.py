"""Shared pieces of the bad-input catalogue (issue 16): tiny data, the ``Expect`` record and the case runner.

Each catalogue case plants one bad input or fault and returns an :class:`Expect`; :func:`run_case` runs it
through the command line and asserts what the user sees. The cases live in ``test_catalogue_inputs.py``
(inputs and configs) and ``test_catalogue_runs.py`` (runs, outputs, checkpoints, workers, exit codes).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from dsr.cli import main

QUICK = """
[model]
latent_dim = 2
hidden_dim = 8
[train]
epochs = 1
batches_per_epoch = 2
batch_size = 4
sequence_length = 40
[eval]
n_rollouts = 2
lyap_steps = 50
lyap_transient = 10
lyap_orbits = 1
pe_steps = 3
"""
BOLD = "derivatives/fmriprep/sub-{s}/func/sub-{s}_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold"
CONFOUNDS = "derivatives/fmriprep/sub-{s}/func/sub-{s}_task-rest_desc-confounds_timeseries.tsv"
ATLAS_TSV = "derivatives/atlas/tpl-MNI152NLin2009cAsym_atlas-Sim_dseg.tsv"


class Payload:
    """Unpickling this object runs ``open(MARKER, "w")``: a file appears if anything unpickles it."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class Expect:
    """What a case must give: the exit code, words of the one stderr line, status rows, and extra checks."""

    argv: list = field(default_factory=list)
    rc: int = 1
    words: tuple = ()  # each must appear in the error line (file names, keys)
    status: dict = field(default_factory=dict)  # participant_id -> (status, words of the reason)
    out: Path | None = None
    check: Callable[[], None] | None = None
    setup: Callable[[pytest.MonkeyPatch], None] | None = None  # fault injection, undone after the case


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base_dataset(tmp_path_factory):
    from dsr.simulate.bids_dataset import make_dataset

    root = tmp_path_factory.mktemp("base") / "ds"
    make_dataset(root, n_subjects=2, seed=0, n_volumes=90, tr=1.0, n_regions=3, shape=(8, 8, 8))
    return root


@pytest.fixture
def ds(tmp_path, base_dataset):
    dst = tmp_path / "ds"
    shutil.copytree(base_dataset, dst, symlinks=True)
    return dst


def _config(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(QUICK)
    return path


def _oscillator(T=200, N=2, scale=1.0):
    t = np.arange(T)
    return scale * np.stack([np.sin(2 * np.pi * t / 17 + k) for k in range(N)], 1) + 0.01 * scale * np.cos(t)[:, None]


def _fit_case(tmp_path, data, tr="1.0", extra=(), config_text=None, name="data.npy"):
    path = tmp_path / name
    if isinstance(data, np.ndarray):
        np.save(path, data)
    cfg = _config(tmp_path)
    if config_text is not None:
        cfg.write_bytes(config_text if isinstance(config_text, bytes) else config_text.encode())
    out = tmp_path / "out"
    return path, cfg, out, ["fit", str(path), "--tr", tr, "--out", str(out), "--config", str(cfg), *extra]


def _participant(ds, tmp_path, labels=("01",), extra=()):
    out = tmp_path / "out"
    return out, [str(ds), str(out), "participant", "--participant-label", *labels, "--config",
                 str(_config(tmp_path)), *extra]


def _no_fit_outputs(out: Path):
    def check():
        assert not list(out.rglob("*model.safetensors")) and not list(out.rglob("*checkpoint*")), \
            "the failure came after training started"
    return check



def run_case(expect: Expect, capsys, monkeypatch) -> None:
    """Run one case: its fault injection, the command line (if any) and the case's own check."""
    if expect.setup is not None:
        expect.setup(monkeypatch)
    if expect.argv:
        rc = main(list(expect.argv))
        err = capsys.readouterr().err
        assert "Traceback" not in err and "internal error" not in err, err
        assert rc == expect.rc, err
        lines = err.splitlines()
        assert rc == 0 or any("error" in ln or "failed" in ln for ln in lines), err
        assert any(all(w in ln for w in expect.words) for ln in lines), err
        if expect.status:
            out = Path(expect.argv[1])
            status = pd.read_csv(out / "status.tsv", sep="\t", dtype=str,
                                 keep_default_na=False).set_index("participant_id")
            for sub, (state, words) in expect.status.items():
                assert status.loc[sub, "status"] == state, status
                assert all(w in status.loc[sub, "reason"] for w in words), status.loc[sub, "reason"]
    if expect.check is not None:
        expect.check()

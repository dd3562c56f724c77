"""`dsr fit` on Ca²⁺ imaging output: a suite2p folder and an NWB file, sampling rate read from the file."""
import json

import numpy as np
import pytest

from dsr.cli import main
from dsr.simulate.calcium import simulate_calcium, write_nwb, write_suite2p

TINY = """
[model]
latent_dim = 6
hidden_dim = 8
[filter]
kind = "calcium"
indicator = "GCaMP6f"
[train]
epochs = 2
batches_per_epoch = 3
batch_size = 4
sequence_length = 30
[eval]
n_rollouts = 2
lyap_steps = 100
lyap_transient = 10
pe_steps = 2
"""


@pytest.fixture(scope="module")
def recording():
    return simulate_calcium(fs=5.0, n_cells=6, duration=80.0, seed=1)


@pytest.mark.parametrize("form", ["suite2p", "nwb"])
def test_fit_calcium_recording(tmp_path, recording, form, capsys):
    src = write_suite2p(recording, tmp_path / "suite2p") if form == "suite2p" else \
        write_nwb(recording, tmp_path / "rec.nwb")
    cfg = tmp_path / "ca.toml"
    cfg.write_text(TINY)
    target = tmp_path / ("suite2p" if form == "suite2p" else "rec.nwb")
    code = main(["fit", str(target), "--out", str(tmp_path / "out"), "--config", str(cfg)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["tr"] == pytest.approx(0.2) and metrics["n_channels"] == 6
    assert np.isfinite(metrics["dh"])


def test_table_without_tr_is_one_clear_error(tmp_path, capsys):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((100, 2)))
    code = main(["fit", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--tr" in err[0] and "x.npy" in err[0]

"""Several seeds per run: the participant level fits each, the group level reports mean and spread."""
import pandas as pd

from dsr.cli import main
from dsr.config import load_config
from dsr.pipelines.group import run_group
from dsr.simulate.bids_dataset import make_dataset

TINY = """
[model]
latent_dim = 3
hidden_dim = 8
[train]
epochs = 2
batches_per_epoch = 3
sequence_length = 30
[eval]
n_rollouts = 2
lyap_steps = 100
lyap_transient = 20
lyap_orbits = 1
pe_steps = 2
"""


def test_seeds_give_one_fit_each_and_a_spread(tmp_path, capsys):
    bids_dir = tmp_path / "ds"
    make_dataset(bids_dir, n_subjects=2, seed=2, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8))
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    assert main([str(bids_dir), str(out), "participant", "--config", str(cfg), "--seeds", "0", "1"]) == 0
    models = sorted(out.rglob("*_desc-convssm_model.safetensors"))
    assert len(models) == 4 and sum("_seed-1_" in m.name for m in models) == 2
    status = pd.read_csv(out / "status.tsv", sep="\t")
    assert len(status) == 4 and (status["status"] == "ok").all()
    assert run_group(bids_dir, out, config=load_config(cfg), n_perm=20, reports=False) == 0
    runs = pd.read_csv(out / "group" / "runs.tsv", sep="\t", dtype={"seed": str})
    assert sorted(runs["seed"]) == ["0", "0", "1", "1"] and runs["run"].nunique() == 1
    feats = pd.read_csv(out / "group" / "features.tsv", sep="\t")
    assert (feats["n_fits"] == 2).all() and "lyapunov_max_sd" in feats.columns
    assert not (out / "group" / "icc.tsv").exists()  # seeds are not test-retest repeats
    # a rerun skips the finished fits
    assert main([str(bids_dir), str(out), "participant", "--config", str(cfg), "--seeds", "0", "1"]) == 0
    assert "already done" in capsys.readouterr().err

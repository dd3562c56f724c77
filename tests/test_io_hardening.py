"""The lower-layer checks behind issue 16: run lengths, TR units, declared sizes, tolerant tables, config types."""
import nibabel as nib
import numpy as np
import pytest

from dsr import fit
from dsr.config import DsrConfig, load_config
from dsr.errors import ConfigError, InputError
from dsr.io import sizes
from dsr.io.feasibility import check_run_length, check_tr, min_run_length
from dsr.io.nifti import load_bold
from dsr.io.participants import read_participants
from dsr.io.status_table import read_status, write_status

COLS = ("participant_id", "run", "status", "reason", "config_hash")


@pytest.fixture(scope="module")
def tiny():
    return load_config("quick", model={"latent_dim": 2, "hidden_dim": 4},
                       train={"epochs": 1, "batches_per_epoch": 1, "batch_size": 2},
                       eval={"n_rollouts": 2, "lyap_steps": 20, "lyap_transient": 5, "lyap_orbits": 1})


@pytest.mark.parametrize("tr,train_fraction", [(0.5, 0.75), (2.0, 0.5)])
def test_min_run_length_is_the_boundary_of_a_real_fit(tiny, tr, train_fraction):
    """One sample fewer than min_run_length is refused before training; exactly that many fits and evaluates."""
    cfg = tiny.replace(train={"train_fraction": train_fraction})
    need, k = min_run_length(tr, cfg)
    assert need > k
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((need, 2)), 0)
    with pytest.raises(InputError, match=f"at least {need} samples") as err:
        fit(x[:-1], tr, cfg, path="short.npy")
    assert str(err.value).startswith("short.npy:")
    assert fit(x, tr, cfg).metrics["n_samples"] == need


def test_check_tr_units():
    f = DsrConfig().filter
    assert check_tr(2, f) == 2.0
    for bad, words in [(1e-9, "taps"), (2000.0, "milliseconds"), (-1, "> 0"), (True, "number"), ("x", "number")]:
        with pytest.raises(InputError, match=words):
            check_tr(bad, f, "where.json")
    calcium = load_config("calcium").filter
    assert check_tr(1 / 30, calcium) == pytest.approx(1 / 30)  # 30 Hz imaging is fine
    with pytest.raises(InputError, match="taps"):
        check_tr(1e-6, calcium)


def test_check_run_length_names_the_file(tiny):
    with pytest.raises(InputError) as err:
        check_run_length(20, 1.0, tiny, "sub-01_bold.nii.gz")
    assert str(err.value).startswith("sub-01_bold.nii.gz:") and "\n" not in str(err.value)


def test_uncompressed_nifti_declaring_more_than_it_holds(tmp_path):
    img = nib.Nifti1Image(np.random.default_rng(0).normal(size=(4, 4, 4, 30)).astype(np.float32), np.eye(4))
    path = tmp_path / "bold.nii"
    nib.save(img, path)
    assert load_bold(path).shape == (4, 4, 4, 30)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError, match="declares .* but the file holds"):
        load_bold(path)


def test_memory_check_refuses_more_than_available(tmp_path):
    with pytest.raises(InputError, match="more than this machine can hold"):
        sizes.check_memory(sizes.available_memory() + (1 << 30), tmp_path / "x.npy", "the array")
    sizes.check_memory(1 << 20, tmp_path / "x.npy", "the array")


def test_load_npy_reads_numbers_and_refuses_objects(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6.0).reshape(3, 2))
    assert sizes.load_npy(tmp_path / "a.npy").shape == (3, 2)
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="never unpickles"):
        sizes.load_npy(tmp_path / "o.npy")
    (tmp_path / "t.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="not a readable .npy"):
        sizes.load_npy(tmp_path / "t.npy")


def test_status_table_set_aside_when_unparseable_and_merge_keeps_rows(tmp_path):
    path = tmp_path / "status.tsv"
    path.write_text("something else entirely\n")
    assert len(read_status(path, COLS)) == 0
    assert (tmp_path / "status.tsv.corrupt").read_text() == "something else entirely\n"
    write_status(path, {("sub-01", "r"): ["sub-01", "r", "ok", "", "h"]}, COLS)
    write_status(path, {("sub-02", "r"): ["sub-02", "r", "failed", "why\tnot", "h"]}, COLS)
    df = read_status(path, COLS)
    assert list(df["participant_id"]) == ["sub-01", "sub-02"] and df["reason"].iloc[1] == "why not"


def test_participants_numeric_id_matches_only_an_unambiguous_folder(tmp_path):
    path = tmp_path / "participants.tsv"
    path.write_text("participant_id\tage\n1\t30\n")
    assert list(read_participants(path, known=["sub-01"])["participant_id"]) == ["sub-01"]
    assert list(read_participants(path, known=["sub-1", "sub-01"])["participant_id"]) == ["sub-1"]
    assert read_participants(tmp_path / "absent.tsv") is None
    path.write_text("participant_id\tage\nsub-01\t\n")
    assert read_participants(path)["age"].iloc[0] == "n/a"


def test_config_types_follow_the_dataclass_fields():
    cfg = DsrConfig.from_dict({"train": {"alpha": 0, "epochs": 3}, "filter": {"tau": None}})
    assert isinstance(cfg.train.alpha, float) and cfg.train.epochs == 3 and cfg.filter.tau is None
    for data, key in [({"train": {"epochs": 3.0}}, "train.epochs"), ({"filter": {"kind": 1}}, "filter.kind"),
                      ({"train": {"cuda_graph": "yes"}}, "train.cuda_graph"), ({"seed": "1"}, "seed")]:
        with pytest.raises(ConfigError, match=key):
            DsrConfig.from_dict(data)

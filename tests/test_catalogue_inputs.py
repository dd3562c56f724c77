"""Bad-input catalogue (issue 16), part 1: data files, configs, BIDS inputs, sidecars, confounds, atlases and
participants.tsv. Each case plants one and asserts what the user sees (:mod:`catalogue_support`): one line
naming the file or key, before any training starts; nothing in a data file is ever unpickled.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from catalogue_support import base_dataset, ds  # noqa: F401  (the fixtures the cases take)
from catalogue_support import ATLAS_TSV, BOLD, CONFOUNDS, QUICK, Expect, Payload, _config, _fit_case, _no_fit_outputs, _oscillator, _participant, run_case


# ---------------------------------------------------------------------------------------------- cases
# each returns an Expect; argv empty means the case asserts through its check alone (an API-level case)


def pickle_ops_payload_not_run(tmp_path, ds):
    plane = tmp_path / "suite2p" / "plane0"
    plane.mkdir(parents=True)
    np.save(plane / "F.npy", np.abs(_oscillator(300, 3)).T + 1.0)
    np.save(plane / "Fneu.npy", np.full((3, 300), 0.1))
    np.save(plane / "iscell.npy", np.ones((3, 2)))
    Payload.marker = str(tmp_path / "PWNED")
    np.save(plane / "ops.npy", np.array({"evil": Payload(), "nframes": 300}, dtype=object), allow_pickle=True)
    out = tmp_path / "out"

    def check():
        assert not (tmp_path / "PWNED").exists(), "ops.npy was unpickled"
    return Expect(["fit", str(tmp_path / "suite2p"), "--out", str(out), "--config", str(_config(tmp_path))],
                  words=("ops.npy", "--tr", "never unpickles"), check=check)


def pickle_ops_fs_read_safely(tmp_path, ds):
    from dsr.io.calcium_suite2p import read_ops_fs

    Payload.marker = str(tmp_path / "PWNED")
    path = tmp_path / "ops.npy"
    np.save(path, np.array({"evil": Payload(), "fs": 30.0, "tau": 1.0}, dtype=object), allow_pickle=True)

    def check():
        assert read_ops_fs(path) == 30.0 and not (tmp_path / "PWNED").exists()
    return Expect(check=check)


def pickle_data_npy_refused(tmp_path, ds):
    Payload.marker = str(tmp_path / "PWNED")
    path, cfg, out, argv = _fit_case(tmp_path, None)
    np.save(path, np.array([[Payload(), 1.0]], dtype=object), allow_pickle=True)

    def check():
        assert not (tmp_path / "PWNED").exists()
    return Expect(argv, words=(str(path), "never unpickles"), check=check)


def _config_case(key_line: str, words: tuple):
    def case(tmp_path, ds):
        section, line = key_line.split(":", 1)
        text = QUICK.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
        text = "\n".join(ln for ln in text.splitlines()
                         if not (ln.split("=")[0].strip() == line.split("=")[0].strip() and ln != line))
        path, cfg, out, argv = _fit_case(tmp_path, _oscillator(), config_text=text)
        return Expect(argv, words=(str(cfg), *words), check=_no_fit_outputs(out))
    return case


CONFIG_CASES = {
    "config_epochs_text": ('train:epochs = "ten"', ("train.epochs", "integer")),
    "config_noise_negative": ("train:noise = -1", ("train.noise",)),
    "config_sequence_length_zero": ("train:sequence_length = 0", ("train.sequence_length",)),
    "config_latent_dim_float": ("model:latent_dim = 2.5", ("model.latent_dim", "integer")),
    "config_dstsp_bins_zero": ("eval:dstsp_bins = 0", ("eval.dstsp_bins",)),
    "config_n_rollouts_zero": ("eval:n_rollouts = 0", ("eval.n_rollouts",)),
    "config_lyap_steps_zero": ("eval:lyap_steps = 0", ("eval.lyap_steps",)),
    "config_checkpoint_every_zero": ("train:checkpoint_every = 0", ("train.checkpoint_every",)),
    "config_batch_size_huge": ("train:batch_size = 10000000", ("train.batch_size",)),
    "config_alpha_bool": ("train:alpha = true", ("train.alpha", "number")),
}


def config_not_utf8(tmp_path, ds):
    text = QUICK.replace("[model]", "# r\xe9sum\xe9\n[model]").encode("latin-1")
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(), config_text=text)
    return Expect(argv, words=(str(cfg), "UTF-8"))


def seed_negative(tmp_path, ds):
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(), extra=("--seed", "-1"))
    return Expect(argv, words=("seed",), check=_no_fit_outputs(out))


def epochs_zero_on_command_line(tmp_path, ds):
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(), extra=("--epochs", "0"))
    return Expect(argv, words=("train.epochs",))


def run_too_short_for_evaluation(tmp_path, ds):
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(120, 3), tr="0.5")
    return Expect(argv, words=(str(path), "120 samples", "at least"), check=_no_fit_outputs(out))


def tr_1e_9(tmp_path, ds):
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(), tr="1e-9")
    return Expect(argv, words=("TR", "taps", "seconds"))


def tr_1e_7(tmp_path, ds):
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(), tr="1e-7")
    return Expect(argv, words=("TR", "taps"))


def tr_in_milliseconds(tmp_path, ds):
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(), tr="2000")
    return Expect(argv, words=("TR", "milliseconds"))


def npy_declares_74_gib(tmp_path, ds):
    path, cfg, out, argv = _fit_case(tmp_path, None)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (100_000, 100_000)})
        fh.write(b"\0" * 64)
    return Expect(argv, words=(str(path), "declares", "GiB"))


def csv_byte_order_mark(tmp_path, ds):
    from dsr.io.arrays import load_array

    path = tmp_path / "bom.csv"
    rows = _oscillator(50, 2)
    path.write_text("\n".join(",".join(f"{v:.6f}" for v in r) for r in rows) + "\n", encoding="utf-8-sig")

    def check():
        x = load_array(path)
        assert x.shape == (50, 2) and np.allclose(x, rows, atol=1e-6)  # the first row is data, not a header
    return Expect(check=check)


def data_scaled_1e300(tmp_path, ds):
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(scale=1e300))
    return Expect(argv, words=(str(path), "rescale"))


def data_scaled_1e_300(tmp_path, ds):
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(scale=1e-300))
    return Expect(argv, words=(str(path), "rescale"))


def output_below_a_file(tmp_path, ds):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator())
    argv[argv.index("--out") + 1] = str(blocker / "out")
    return Expect(argv, words=(str(blocker / "out"), "cannot write"))


def disk_full_names_output(tmp_path, ds):
    from dsr.io.atomic import output_error

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")

    def check():
        try:
            with open("/dev/full", "wb") as fh:
                fh.write(b"x" * 65536)
                fh.flush()
        except OSError as exc:
            msg = str(output_error(exc, tmp_path / "out" / "fit.png"))
            assert msg.startswith(str(tmp_path / "out" / "fit.png")) and "disk is full" in msg
        else:  # pragma: no cover
            raise AssertionError("/dev/full accepted a write")
    return Expect(check=check)


def dangling_symlink_datalad(tmp_path, ds):
    bold = ds / (BOLD.format(s="01") + ".nii.gz")
    bold.unlink()
    bold.symlink_to("../../../../.git/annex/objects/XX/YY/MD5E-s1--0.nii.gz/MD5E-s1--0.nii.gz")
    out, argv = _participant(ds, tmp_path)
    return Expect(argv, words=("sub-01", "datalad get"),
                  status={"sub-01": ("failed", ("symbolic link", "datalad get"))})


def raw_bold_without_fmriprep(tmp_path, ds):
    shutil.rmtree(ds / "derivatives/fmriprep/sub-02")
    out, argv = _participant(ds, tmp_path, labels=("02",))
    return Expect(argv, words=("sub-02", "without fMRIPrep output"),
                  status={"sub-02": ("failed", ("without fMRIPrep output",))})


def symlinked_func_folder_followed(tmp_path, ds):
    from dsr.io import bids

    func = ds / "derivatives/fmriprep/sub-01/func"
    elsewhere = tmp_path / "storage" / "func"
    elsewhere.parent.mkdir()
    shutil.move(str(func), str(elsewhere))
    func.symlink_to(elsewhere, target_is_directory=True)

    def check():
        runs = bids.find_runs(ds, participant_labels=["01"])
        assert len(runs) == 1 and runs[0].problem is None and runs[0].source == "fmriprep"
    return Expect(check=check)


def _sidecar_case(content: str, words: tuple):
    def case(tmp_path, ds):
        side = ds / (BOLD.format(s="01") + ".json")
        side.write_text(content)
        out, argv = _participant(ds, tmp_path)
        return Expect(argv, words=(str(side), *words), status={"sub-01": ("failed", (str(side), *words))})
    return case


SIDECAR_CASES = {
    "sidecar_5000_digit_number": ('{"RepetitionTime": 1.0, "Huge": ' + "9" * 5000 + "}", ("cannot read",)),
    "sidecar_deep_nesting": ('{"RepetitionTime": 1.0, "Deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
                             ("cannot read",)),
    "sidecar_tr_milliseconds": ('{"RepetitionTime": 1000}', ("milliseconds",)),
    "sidecar_tr_true": ('{"RepetitionTime": true}', ("RepetitionTime", "not a number")),
}


def nifti_83_bytes_declaring_3_gib(tmp_path, ds):
    bold = ds / (BOLD.format(s="01") + ".nii.gz")
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1024, 1024, 800, 1))
    hdr.set_data_dtype(np.float32)
    hdr.set_xyzt_units("mm", "sec")
    bold.write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 4))
    out, argv = _participant(ds, tmp_path)

    def check():
        assert bold.stat().st_size < 200
    return Expect(argv, words=(str(bold), "declares"), status={"sub-01": ("failed", ("declares", "truncated"))},
                  check=check)


def _confounds_strategy_case(strategy: str, words: tuple):
    def case(tmp_path, ds):  # a bad --confounds value is refused before any run is touched
        out, argv = _participant(ds, tmp_path, extra=("--confounds", strategy))
        def check():
            assert not (out / "status.tsv").exists()
        return Expect(argv, words=words, check=check)
    return case


def scrubbing_most_volumes(tmp_path, ds):
    path = ds / CONFOUNDS.format(s="01")
    df = pd.read_csv(path, sep="\t")
    df["framewise_displacement"] = 0.9  # a high-motion run: every volume above 0.2 mm
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")
    out, argv = _participant(ds, tmp_path, extra=("--confounds", "motion6+wmcsf+scrub=0.2"))
    return Expect(argv, words=(str(path), "scrubbing", "volumes"),
                  status={"sub-01": ("failed", ("scrubbing", str(path)))})


def too_many_regressors(tmp_path, ds):
    path = ds / CONFOUNDS.format(s="01")
    df = pd.read_csv(path, sep="\t")
    comp = np.random.default_rng(0).normal(size=(len(df), 20))
    df = pd.concat([df, pd.DataFrame(comp, columns=[f"a_comp_cor_{i:02d}" for i in range(20)])], axis=1)
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")
    strategy = "motion24+wmcsf8+" + "+".join(f"a_comp_cor_{i:02d}" for i in range(20))
    out, argv = _participant(ds, tmp_path, extra=("--confounds", strategy))
    return Expect(argv, words=(str(path), "degrees of freedom"), status={"sub-01": ("failed", ("regressors",))})


def confound_text_cell(tmp_path, ds):
    path = ds / CONFOUNDS.format(s="01")
    df = pd.read_csv(path, sep="\t").astype(object)
    df.loc[0, "trans_x"] = "oops"
    df.to_csv(path, sep="\t", index=False, na_rep="n/a")
    out, argv = _participant(ds, tmp_path, extra=("--confounds", "motion6"))
    return Expect(argv, words=(str(path), "trans_x", "text"), status={"sub-01": ("failed", ("trans_x",))})


def events_beyond_run(tmp_path, ds):
    events = ds / "sub-01" / "func" / "sub-01_task-rest_events.tsv"
    events.write_text("onset\tduration\ttrial_type\n10\t5\tgo\n500\t5\tgo\n")
    out, argv = _participant(ds, tmp_path)
    return Expect(argv, words=(str(events), "after the run ends"), status={"sub-01": ("failed", ("events",))})


def atlas_label_missing_from_tsv(tmp_path, ds):
    tsv = ds / ATLAS_TSV
    tsv.write_text("index\tname\n1\tR01\n2\tR02\n")  # label 3 is in the image
    out, argv = _participant(ds, tmp_path)
    return Expect(argv, words=(str(tsv), "not in this table"), check=_no_fit_outputs(out))


def atlas_duplicate_region_names(tmp_path, ds):
    tsv = ds / ATLAS_TSV
    tsv.write_text("index\tname\n1\tR01\n2\tR01\n3\tR03\n")
    out, argv = _participant(ds, tmp_path)
    return Expect(argv, words=(str(tsv), "R01", "more than once"))


def _participants_case(text: bytes, ok: bool, words: tuple = (), expect=None):
    def case(tmp_path, ds):
        from dsr.errors import InputError
        from dsr.io.participants import read_participants

        path = tmp_path / "participants.tsv"
        path.write_bytes(text)

        def check():
            if ok:
                df = read_participants(path, known=["sub-01", "sub-02"])
                assert expect(df), df
            else:
                with pytest.raises(InputError) as err:
                    read_participants(path, known=["sub-01", "sub-02"])
                msg = str(err.value)
                assert msg.startswith(str(path)) and "\n" not in msg and all(w in msg for w in words), msg
        return Expect(check=check)
    return case


PARTICIPANTS_CASES = {
    "participants_duplicate_id": (b"participant_id\tage\nsub-01\t30\nsub-02\t40\nsub-01\t31\n", False,
                                  ("sub-01", "twice")),
    "participants_ragged_row": (b"participant_id\tage\tsex\nsub-01\t30\tF\nsub-02\t40\n", False,
                                ("line 3", "fields")),
    "participants_no_id_column": (b"subject,age\n01,30\n", False, ("participant_id", "tab")),
    "participants_bare_ids": (b"participant_id\tage\n01\t30\n02\t40\n", True, (),
                              lambda df: list(df["participant_id"]) == ["sub-01", "sub-02"]),
    "participants_numeric_ids": (b"participant_id\tage\n1\t30\n2\t40\n", True, (),
                                 lambda df: list(df["participant_id"]) == ["sub-01", "sub-02"]),
    "participants_latin1": ("participant_id\tsite\nsub-01\tK\xf6ln\nsub-02\tBonn\n".encode("latin-1"), True, (),
                            lambda df: df["site"].iloc[0] == "K\xf6ln"),
}


CASES: dict[str, Callable] = {
    "pickle_ops_payload_not_run": pickle_ops_payload_not_run,
    "pickle_ops_fs_read_safely": pickle_ops_fs_read_safely,
    "pickle_data_npy_refused": pickle_data_npy_refused,
    **{k: _config_case(*v) for k, v in CONFIG_CASES.items()},
    "config_not_utf8": config_not_utf8,
    "seed_negative": seed_negative,
    "epochs_zero_on_command_line": epochs_zero_on_command_line,
    "run_too_short_for_evaluation": run_too_short_for_evaluation,
    "tr_1e-9": tr_1e_9,
    "tr_1e-7": tr_1e_7,
    "tr_in_milliseconds": tr_in_milliseconds,
    "npy_declares_74_gib": npy_declares_74_gib,
    "csv_byte_order_mark": csv_byte_order_mark,
    "data_scaled_1e300": data_scaled_1e300,
    "data_scaled_1e-300": data_scaled_1e_300,
    "output_below_a_file": output_below_a_file,
    "disk_full_names_output": disk_full_names_output,
    "dangling_symlink_datalad": dangling_symlink_datalad,
    "raw_bold_without_fmriprep": raw_bold_without_fmriprep,
    "symlinked_func_folder_followed": symlinked_func_folder_followed,
    **{k: _sidecar_case(*v) for k, v in SIDECAR_CASES.items()},
    "nifti_83_bytes_declaring_3_gib": nifti_83_bytes_declaring_3_gib,
    "scrub_zero": _confounds_strategy_case("motion6+scrub=0", ("scrubbing threshold", "> 0")),
    "scrub_negative": _confounds_strategy_case("motion6+scrub=-1", ("scrubbing threshold", "> 0")),
    "scrubbing_most_volumes": scrubbing_most_volumes,
    "too_many_regressors": too_many_regressors,
    "confound_text_cell": confound_text_cell,
    "events_beyond_run": events_beyond_run,
    "atlas_label_missing_from_tsv": atlas_label_missing_from_tsv,
    "atlas_duplicate_region_names": atlas_duplicate_region_names,
    **{k: _participants_case(*v) for k, v in PARTICIPANTS_CASES.items()},
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input(case, tmp_path, ds, capsys, monkeypatch):
    run_case(CASES[case](tmp_path, ds), capsys, monkeypatch)

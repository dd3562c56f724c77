"""Bad-input catalogue (issue 16), part 2: status tables, checkpoints, caches, models, sweeps, killed workers,
missing outputs and exit codes. Each case plants one fault and asserts what the user sees
(:mod:`catalogue_support`); every run the user asked for keeps a row in status.tsv.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from dsr.config import DsrConfig
from catalogue_support import base_dataset, ds  # noqa: F401  (the fixtures the cases take)
from catalogue_support import BOLD, QUICK, Expect, _fit_case, _oscillator, _participant, run_case


# each returns an Expect; argv empty means the case asserts through its check alone (an API-level case)

def status_extra_column_kept(tmp_path, ds):
    from dsr.io.status_table import read_status, write_status

    cols = ("participant_id", "run", "status", "reason", "config_hash")
    path = tmp_path / "status.tsv"
    path.write_text("participant_id\trun\tstatus\treason\tconfig_hash\tnotes\n"
                    "sub-01\ttask-rest\tok\t\tabc\tscanner artefact, check\n")

    def check():
        write_status(path, {("sub-02", "task-rest"): ["sub-02", "task-rest", "failed", "bad", "abc"]}, cols)
        df = read_status(path, cols).set_index("participant_id")
        assert list(df.index) == ["sub-01", "sub-02"] and df.loc["sub-01", "notes"] == "scanner artefact, check"
    return Expect(check=check)


def corrupt_checkpoint_set_aside(tmp_path, ds):
    from dsr.training.checkpoint import CHECKPOINT_NAME, load_checkpoint

    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / CHECKPOINT_NAME).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")

    def check():
        assert load_checkpoint(folder) is None
        assert (folder / f"{CHECKPOINT_NAME}.corrupt").is_file() and not (folder / CHECKPOINT_NAME).exists()
    return Expect(check=check)


def corrupt_cache_set_aside(tmp_path, ds):
    from dsr.io import series_cache

    folder = tmp_path / "cache"
    series_cache.save_series(folder, "sub-01_x", {"cleaned": (np.ones((5, 2)), ["a", "b"])},
                             {"RepetitionTime": 1.0}, "k1")
    side = series_cache.table_path(folder, "sub-01_x", "cleaned", ".json")
    side.write_bytes(b"\xff\xfe garbage")

    def check():
        assert series_cache.load_series(folder, "sub-01_x", "k1") is None
        assert side.with_name(side.name + ".corrupt").is_file()
    return Expect(check=check)


def corrupt_model_named(tmp_path, ds):
    from dsr.errors import InputError
    from dsr.models.convssm import ConvSSM

    path = tmp_path / "m_model.safetensors"
    path.write_bytes(b"\x00" * 20)
    path.with_suffix(".json").write_text("{}")

    def check():
        with pytest.raises(InputError) as err:
            ConvSSM.load(path)
        assert str(err.value).startswith(str(path)) and "refit" in str(err.value)
    return Expect(check=check)


def model_json_negative_tr(tmp_path, ds):
    import torch

    from dsr.errors import InputError
    from dsr.models.convssm import ConvSSM, ConvSSMSpec

    path = tmp_path / "m_model.safetensors"
    ConvSSM.initialise(ConvSSMSpec("cshPLRNN", 2, 4, "identity", n_obs=2, tr=1.0), torch.ones(3) / 3, [0]).save(path)
    side = json.loads(path.with_suffix(".json").read_text())
    side["spec"]["tr"] = -1
    path.with_suffix(".json").write_text(json.dumps(side))

    def check():
        with pytest.raises(InputError) as err:
            ConvSSM.load(path)
        assert str(err.value).startswith(str(path.with_suffix(".json"))) and "tr" in str(err.value)
    return Expect(check=check)


def sweep_million_trials(tmp_path, ds):
    sweep = tmp_path / "huge.toml"
    sweep.write_text('base = "quick"\n[grid]\n"train.alpha" = [' + ", ".join(f"{0.001 * i:.3f}" for i in range(100))
                     + ']\n"train.lr_start" = [' + ", ".join(f"{1e-4 * (i + 1):.4g}" for i in range(100))
                     + ']\n"train.noise" = [' + ", ".join(f"{0.001 * i:.3f}" for i in range(100)) + "]\n")
    return Expect([str(ds), str(tmp_path / "out"), "sweep", "--sweep", str(sweep)], words=(str(sweep), "trials"))


def worker_killed_is_named_and_batch_goes_on(tmp_path, ds):
    out, argv = _participant(ds, tmp_path, labels=("01", "02"))
    return Expect(argv, words=(), setup=_kill_subject_once_started("01"),
                  status={"sub-01": ("failed", ("worker process died", "out of memory")), "sub-02": ("ok", ())})


def _kill_subject_once_started(subject: str):
    """Fault injection (no hook in the product code): the process fitting ``subject`` ends abruptly, like an
    out-of-memory kill, once its fit has started. Each fit runs in a forked child, which inherits the patch."""
    def setup(monkeypatch):
        from dsr.pipelines import fitrun

        start = fitrun.start_fit

        def start_fit(job):
            pending = start(job)
            if not isinstance(pending, dict) and job.run.subject == subject:
                os._exit(137)
            return pending

        monkeypatch.setattr(fitrun, "start_fit", start_fit)
    return setup


def isolated_child_killed(tmp_path, ds):
    from dsr.pipelines.isolation import run_isolated

    def check():
        res = run_isolated(_kill_self, "sub-07", "cpu")
        assert res["status"] == "failed" and "SIGKILL" in res["reason"] and "out of memory" in res["reason"]
        assert run_isolated(_echo, "x", "cpu") == {"status": "ok", "job": "x"}
    return Expect(check=check)


def _kill_self(job, device):
    os.kill(os.getpid(), 9)


def _echo(job, device):
    return {"status": "ok", "job": job}


def config_unknown_key(tmp_path, ds):
    text = QUICK.replace("[train]\n", "[train]\nepoch = 3\n")
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(), config_text=text)
    return Expect(argv, words=(str(cfg), "epoch", "train"))


def sweep_not_utf8(tmp_path, ds):
    sweep = tmp_path / "s.toml"
    sweep.write_bytes('base = "quick"\n# caf\xe9\n[grid]\n"train.alpha" = [0.1]\n'.encode("latin-1"))
    return Expect([str(ds), str(tmp_path / "out"), "sweep", "--sweep", str(sweep)], words=(str(sweep), "UTF-8"))


def status_notes_kept_by_a_participant_run(tmp_path, ds):
    bold = ds / (BOLD.format(s="01") + ".nii.gz")
    bold.unlink()
    bold.symlink_to(tmp_path / "nowhere.nii.gz")
    out, argv = _participant(ds, tmp_path)
    out.mkdir()
    (out / "status.tsv").write_text("participant_id\trun\tstatus\treason\tconfig_hash\tnotes\n"
                                    "sub-02\ttask-rest\tok\t\tabc\tre-check motion\n")

    def check():
        df = pd.read_csv(out / "status.tsv", sep="\t", dtype=str, keep_default_na=False).set_index("participant_id")
        assert df.loc["sub-02", "notes"] == "re-check motion" and df.loc["sub-01", "status"] == "failed"
    return Expect(argv, words=("sub-01", "symbolic link"), status={"sub-01": ("failed", ("symbolic link",))},
                  check=check)


def corrupt_checkpoint_resume_restarts(tmp_path, ds):
    path, cfg, out, argv = _fit_case(tmp_path, _oscillator(), extra=("--resume",))
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "checkpoint.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")

    def check():
        assert (out / "metrics.json").is_file() and (out / "fit.png").is_file()
    return Expect(argv, rc=0, words=(str(out / "checkpoint" / "checkpoint.safetensors"), "corrupt checkpoint",
                                     "restarts"), check=check)


def figure_missing_is_not_done(tmp_path, ds):
    from dsr.io.derivatives import fit_files, outputs_written

    def check():
        names = fit_files("p")
        for key, name in names.items():
            if key not in ("checkpoint", "figure", "provenance"):
                (tmp_path / name).write_text("x")
        assert not outputs_written(tmp_path, "p")
        (tmp_path / names["figure"]).write_bytes(b"png")
        assert outputs_written(tmp_path, "p")
    return Expect(check=check)


def diverged_fit_exit_code(tmp_path, ds):
    from dsr.io.bids import BoldRun
    from types import SimpleNamespace

    from dsr.io.extract import ExtractionSettings
    from dsr.pipelines.plan import FitJob
    from dsr.pipelines.status import record_result

    def check():
        run = BoldRun(tmp_path / "sub-01_task-rest_bold.nii.gz", {"sub": "01", "task": "rest"}, "raw", tmp_path)
        job = FitJob(run, SimpleNamespace(name="A"), ExtractionSettings(), DsrConfig(), tmp_path, "A")
        assert record_result(job, {"status": "diverged", "metrics": {}}, {}) == 1
        assert record_result(job, {"status": "ok", "metrics": {}}, {}) == 0
    return Expect(check=check)


CASES: dict[str, Callable] = {
    "status_extra_column_kept": status_extra_column_kept,
    "corrupt_checkpoint_set_aside": corrupt_checkpoint_set_aside,
    "corrupt_cache_set_aside": corrupt_cache_set_aside,
    "corrupt_model_named": corrupt_model_named,
    "model_json_negative_tr": model_json_negative_tr,
    "sweep_million_trials": sweep_million_trials,
    "worker_killed_is_named_and_batch_goes_on": worker_killed_is_named_and_batch_goes_on,
    "isolated_child_killed": isolated_child_killed,
    "config_unknown_key": config_unknown_key,
    "sweep_not_utf8": sweep_not_utf8,
    "status_notes_kept_by_a_participant_run": status_notes_kept_by_a_participant_run,
    "corrupt_checkpoint_resume_restarts": corrupt_checkpoint_resume_restarts,
    "figure_missing_is_not_done": figure_missing_is_not_done,
    "diverged_fit_exit_code": diverged_fit_exit_code,
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_run(case, tmp_path, ds, capsys, monkeypatch):
    run_case(CASES[case](tmp_path, ds), capsys, monkeypatch)


def test_catalogue_size():
    """The issue's closing note quotes this count (both parts of the catalogue)."""
    from test_catalogue_inputs import CASES as INPUT_CASES

    assert len(INPUT_CASES) + len(CASES) >= 50, len(INPUT_CASES) + len(CASES)

"""The BIDS-App command line: per-level help with defaults, and an effect for every flag (issue 17, item 1)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dsr.cli import main, parse_args, participant_options
from dsr.cli_options import fit_parser, level_parser
from dsr.config import ConfigError
from dsr.errors import InputError
from dsr.io.bids import find_runs
from dsr.io.bids_filter import read_filter_file
from dsr.pipelines.plan import plan_participant

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
#: The quick preset shrunk to seconds (2 epochs of 5 batches, short evaluation).
TINY = ["--config", "quick", "--set", "train.batches_per_epoch=5", "--set", "eval.n_rollouts=2",
        "--set", "eval.lyap_steps=100", "--set", "eval.lyap_transient=20", "--set", "eval.lyap_orbits=1"]
FUNC = "sub-{s}_task-rest_space-MNI152NLin2009cAsym_atlas-Sim"


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("level", ["participant", "group", "sweep", "fit"])
def test_every_level_has_its_own_help_with_every_default(level, capsys):
    argv = ["fit", "-h"] if level == "fit" else ["ds", "out", level, "-h"]
    text = _help(argv, capsys)
    parser = fit_parser() if level == "fit" else level_parser(level)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            assert action.help, action.dest  # positional arguments have help
            continue
        assert all(opt in text for opt in action.option_strings), action.option_strings
        own = parser.formatter_class("x")._get_help_string(action).replace("%(default)s", str(action.default))
        squeeze = "".join  # help lines are wrapped at spaces and hyphens
        assert "(default: " in own and squeeze(own.split()) in squeeze(text.split()), own
    if level != "fit":
        assert "BIDS_DIR the input dataset" in text and "OUTPUT_DIR the derivatives folder" in text
    assert "(default: paper" in text or level == "group"


def test_levels_show_only_their_options(capsys):
    participant = _help(["ds", "out", "participant", "-h"], capsys)
    group = _help(["ds", "out", "group", "-h"], capsys)
    for flag in ("--work-dir", "--mem", "--bids-filter-file", "--derivatives", "--high-pass", "--low-pass",
                 "--radius", "--confounds-mode", "--set", "--reports-only", "--verbose", "--nprocs",
                 "--omp-nthreads", "(default: auto)", "(default: 1)"):
        assert flag in participant, flag
    for flag in ("--atlas", "--work-dir", "--seeds", "--bids-filter-file", "--executor", "--sweep"):
        assert flag not in group, flag
    assert "each fit's own config" in group and "--reports-only" in group
    general = _help(["-h"], capsys)
    assert "participant -h" in general and "dsr fit -h" in general


def test_options_may_come_before_the_positional_arguments():
    args = parse_args(["--nprocs", "3", "-vv", "--config", "quick", "ds", "out", "participant",
                       "--participant-label", "01", "02", "--set", "train.epochs=4"])[1]
    assert (args.nprocs, args.verbose, args.config, args.participant_label, args.bids_dir, args.set) == \
        (3, 2, "quick", ["01", "02"], "ds", ["train.epochs=4"])
    assert parse_args(["--config", "group", "ds", "out", "group"])[1].config == "group"  # a value, not the level


def test_bad_set_is_one_line_naming_the_key(tmp_path, capsys):
    out = tmp_path / "out"
    for item, words in (("train.epoch=3", ("train.epoch", "keys of [train]", "epochs")),
                        ("trian.epochs=3", ("trian.epochs", "sections")),
                        ("train.epochs=abc", ("train.epochs", "an integer")),
                        ("train.epochs=0", ("train.epochs", ">= 1")),
                        ("extract.low_pass=fast", ("extract.low_pass", "a number")),
                        ("epochs", ("section.key=value",))):
        assert main([str(DATA), str(out), "participant", "--set", item]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dsr: error: --set") and all(w in err[0] for w in words), err
    assert not out.exists()
    for item in ("train.epoch=3", "seed=2"):  # the sweep level: its [fixed] table takes --set values
        assert main([str(DATA), str(out), "sweep", "--sweep", "alpha_lr", "--set", item]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("train.epoch" in err[0] or "seeds come from its file" in err[0]), err
    assert not out.exists()


def test_flags_reach_the_plan(tmp_path):
    """--derivatives, --bids-filter-file, --high-pass/--low-pass, --confounds-mode, --radius and --set
    change what the participant level would extract and fit (planned, not fitted)."""
    def plan(*extra):
        kw = participant_options(parse_args([str(DATA), str(tmp_path / "o"), "participant", *extra])[1])
        keys = ("participant_labels", "task", "session", "space", "atlas", "config", "confounds", "derivatives",
                "confounds_mode", "high_pass", "low_pass", "radius", "filters")
        return plan_participant(kw["bids_dir"], kw["output_dir"], **{k: kw[k] for k in keys}), kw

    default, _ = plan()
    assert {r.source for r in default.runs} == {"fmriprep"} and len(default.runs) == 6
    raw, _ = plan("--derivatives", "none")
    assert {r.source for r in raw.runs} == {"raw"}
    named, _ = plan("--derivatives", str(DATA / "derivatives" / "fmriprep"))
    assert [r.bold for r in named.runs] == [r.bold for r in default.runs]
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps({"bold": {"subject": ["02", "05"], "task": "rest", "session": None},
                                "t1w": {"datatype": "anat"}}))
    filtered, _ = plan("--bids-filter-file", str(filt))
    assert [r.subject for r in filtered.runs] == ["02", "05"]
    band, kw = plan("--high-pass", "0.01", "--low-pass", "0.1", "--confounds-mode", "nuisance",
                    "--set", "extract.detrend=false", "--set", "model.latent_dim=7", "--epochs", "9")
    s = band.settings
    assert (s.high_pass, s.low_pass, s.confounds_mode, s.detrend) == (0.01, 0.1, "nuisance", False)
    assert (kw["config"].model.latent_dim, kw["config"].train.epochs) == (7, 9)
    power, _ = plan("--atlas", "power2011", "--radius", "8")
    assert power.atlas.kind == "spheres" and power.settings.radius == 8 and float(power.atlas.radius) == 8
    with pytest.raises(InputError, match="--radius"):
        plan("--radius", "8")  # the dataset's atlas is a labels image: --radius would do nothing


def test_bids_filter_file_errors_name_the_file_and_key(tmp_path, capsys):
    cases = {"bad.json": ("{not json", "not valid JSON"),
             "list.json": ("[1, 2]", "JSON object"),
             "query.json": ('{"bolt": {"task": "rest"}}', "unknown query 'bolt'"),
             "entity.json": ('{"bold": {"tsak": "rest"}}', "unknown entity 'bold.tsak'"),
             "value.json": ('{"bold": {"task": {"a": 1}}}', "bold.task"),
             "suffix.json": ('{"bold": {"suffix": "T1w"}}', "bold.suffix")}
    for name, (text, words) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=words.replace("(", r"\(")):
            read_filter_file(path)
        assert main([str(DATA), str(tmp_path / "out"), "participant", "--bids-filter-file", str(path)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and words in err[0], err
    assert main([str(DATA), str(tmp_path / "out"), "participant", "--bids-filter-file",
                 str(tmp_path / "missing.json")]) == 1
    assert "missing.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bids_filter_values_match_as_pybids_does():
    assert len(find_runs(DATA, filters={"run": ["1"]})) == 0  # the runs have no run entity
    assert len(find_runs(DATA, filters={"run": None})) == 6  # null: the entity must be absent
    assert [r.subject for r in find_runs(DATA, filters={"sub": ["3", "04"]})] == ["03", "04"]  # numbers as numbers
    assert len(find_runs(DATA, filters={"space": ["MNI152NLin2009cAsym"]})) == 6


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One participant-level run through the command line (-v, a filter file, --set, --work-dir, --high-pass)."""
    tmp = tmp_path_factory.mktemp("flags")
    filt = tmp / "filter.json"
    filt.write_text(json.dumps({"bold": {"subject": "02"}}))
    out, work = tmp / "out", tmp / "work"
    rc = main([str(DATA), str(out), "participant", *TINY, "--set", "train.epochs=3", "-v", "--bids-filter-file",
               str(filt), "-w", str(work), "--high-pass", "0.01"])
    return rc, out, work


def test_a_participant_run_applies_every_flag(fitted):
    rc, out, work = fitted
    assert rc == 0
    assert sorted(p.name for p in out.glob("sub-*")) == ["sub-02"]  # the filter file
    func = out / "sub-02" / "func"
    metrics = json.loads((func / f"{FUNC.format(s='02')}_desc-convssm_metrics.json").read_text())
    assert metrics["epochs"] == 3  # --set train.epochs=3
    prov = json.loads((func / f"{FUNC.format(s='02')}_desc-convssm_provenance.json").read_text())
    assert prov["Config"]["train"]["epochs"] == 3 and prov["Config"]["eval"]["n_rollouts"] == 2
    side = json.loads((func / f"{FUNC.format(s='02')}_desc-cleaned_timeseries.json").read_text())
    assert "0.01" in json.dumps(side)  # --high-pass reached the extraction
    assert (work / "sub-02" / "func").is_dir() and not list(out.rglob("*checkpoint*"))  # -w
    logs = list((out / "logs").glob("dsr_*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "command: dsr" in text and "--bids-filter-file" in text  # the command heads the file
    assert "1 run(s) of 1 participant(s)" in text and "ok (dstsp" in text  # every user-facing line
    assert "DEBUG" in text and "epoch 3/3" in text  # -v: debug lines


def test_reports_only_rebuilds_the_reports_without_fitting(fitted, capsys):
    rc, out, _ = fitted
    assert rc == 0
    assert main([str(DATA), str(out), "group"]) == 0
    model = out / "sub-02" / "func" / f"{FUNC.format(s='02')}_desc-convssm_model.safetensors"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("sub-02/func/*")}
    for report in ("group.html", "sub-02.html"):
        (out / report).unlink()
    for level in ("participant", "group"):
        capsys.readouterr()
        assert main([str(DATA), str(out), level, "--reports-only"]) == 0
        assert (out / "group.html").is_file() and (out / "sub-02.html").is_file()
        assert "--reports-only" in capsys.readouterr().err
        assert {p: p.stat().st_mtime_ns for p in out.rglob("sub-02/func/*")} == before and model.is_file()
        (out / "group.html").unlink()
    assert len(list((out / "logs").glob("dsr_*.log"))) == 4  # one per command that ran


def test_mem_caps_the_workers_or_refuses_the_plan(tmp_path, capsys):
    from dsr.config import load_config
    from dsr.pipelines.executors import ExecutorSettings
    from dsr.pipelines.memory import GB, PROCESS_BYTES, fit_memory, group_workers, job_bytes

    plan = plan_participant(DATA, tmp_path / "o", participant_labels=None, task=None, session=None, space=None,
                            atlas=None, config=load_config("quick"), confounds=None)
    jobs = plan.jobs(load_config("quick"), tmp_path / "o", None)
    image, model = job_bytes(jobs[0])
    per_fit = PROCESS_BYTES + image + model
    assert image > 0 and model > 0
    ex = ExecutorSettings(nprocs=4)
    assert fit_memory(jobs, ex, None).nprocs == 4
    assert fit_memory(jobs, ex, 100).nprocs == 4
    assert fit_memory(jobs, ex, (PROCESS_BYTES + 2.5 * per_fit) / GB).nprocs == 2
    with pytest.raises(ConfigError, match="--mem"):
        fit_memory(jobs, ex, (PROCESS_BYTES + 0.5 * per_fit) / GB)
    stack = ExecutorSettings(kind="stack", nprocs=2)  # one process holds every fit's training and evaluation
    need = 2 * PROCESS_BYTES + image + 6 * model
    assert fit_memory(jobs, stack, 1.01 * need / GB) == stack
    with pytest.raises(ConfigError, match="the stack of 6 fit"):
        fit_memory(jobs, stack, 0.99 * need / GB)
    assert group_workers(8, 2.0) == 2 and group_workers(8, None) == 8
    out = tmp_path / "out"
    capsys.readouterr()
    assert main([str(DATA), str(out), "participant", "--mem", "0.5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mem 0.5" in err[0] and "raise --mem" in err[0], err
    assert not out.exists()


def test_work_dir_holds_the_checkpoints_and_a_rerun_resumes_from_it(tmp_path):
    """A participant run killed mid-training leaves its checkpoint in -w, none in OUTPUT_DIR; the rerun with
    the same -w resumes from it (its first epoch is not the first) and removes it."""
    out, work = tmp_path / "out", tmp_path / "work"
    argv = [sys.executable, "-m", "dsr.cli", str(DATA), str(out), "participant", "--participant-label", "01", *TINY,
            "--set", "train.epochs=60", "--set", "train.checkpoint_every=1", "-w", str(work), "-v"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    pattern = "sub-01/func/*_desc-convssm_checkpoint/checkpoint.safetensors"
    deadline = time.time() + 240
    while not list(work.glob(pattern)) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its fit's child process
    proc.wait()
    assert list(work.glob(pattern)) and not list(out.rglob("*checkpoint*"))
    assert json.loads(next(out.rglob("*_provenance.json")).read_text())["Status"] == "running"
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    first = next(line for line in done.stderr.splitlines() if ": epoch " in line)
    assert "epoch 1/60" not in first, first  # resumed from the checkpoint in -w
    assert json.loads(next(out.rglob("*_metrics.json")).read_text())["epochs"] == 60
    assert not list(work.glob(pattern))  # removed once the outputs are written
    assert len(pd.read_csv(next(out.rglob("*_curve.tsv")), sep="\t")) == 60


def test_progress_counts_failures_apart(tmp_path, capsys):
    from dsr.progress import Progress

    with Progress(3, "fits", bar=False) as p:
        p.update()
        p.update(failed=True)
        p.update(failed=True)
    err = capsys.readouterr().err
    assert "progress: 3/3 fits finished (1 ok, 2 failed" in err and "done" not in err
    with Progress(2, "fits", bar=True) as p:  # the terminal bar, drawn on stderr
        p.update(failed=True)
        p.update()
    err = capsys.readouterr().err
    assert "2/2" in err and "failed=1" in err and "ok=1" in err


def test_verbosity_levels_and_the_log_file(tmp_path, capsys):
    """Default: info lines on stderr and in the file, no debug; -v: debug lines too; -vv: Python warnings
    (nilearn's, for one) reach both. Nothing is written before the output folder is opened, and the
    command's settings end with it."""
    import logging
    import warnings

    from dsr import log as dsr_log

    files = []
    for level in (0, 1, 2):
        logger = dsr_log.configure(level, ["data", "out", "participant"])
        logger.info("an info line")
        logger.debug("a debug line")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a library warning", UserWarning)
        assert not (tmp_path / f"out{level}").exists()
        path = dsr_log.open_log_file(tmp_path / f"out{level}")
        logger.info("after the file opened")
        dsr_log.to_file("dsr: error: the last line")
        dsr_log.close_log()
        files.append(path.read_text())
        err = capsys.readouterr().err
        assert ("a debug line" in err) == (level >= 1) and ("a library warning" in err) == (level >= 2), err
    for level, text in enumerate(files):
        assert "an info line" in text and "after the file opened" in text and "the last line" in text
        assert ("a debug line" in text) == (level >= 1) and ("a library warning" in text) == (level >= 2)
    assert dsr_log.VERBOSITY_ENV not in os.environ and dsr_log.LOG_FILE_ENV not in os.environ
    assert logging.getLogger("dsr").level == logging.INFO
    assert dsr_log.open_log_file(tmp_path / "api") is None and not (tmp_path / "api").exists()  # no CLI: no file


def test_group_config_and_set_change_the_analysis(fitted):
    """--set on the group level analyses every fit with the changed eval settings (the config hash of
    runs.tsv changes); without it each fit's own config is used."""
    rc, out, _ = fitted
    assert rc == 0
    if not (out / "group" / "runs.tsv").is_file():  # written by the --reports-only test before, when it ran
        assert main([str(DATA), str(out), "group"]) == 0
    own = pd.read_csv(out / "group" / "runs.tsv", sep="\t")["config_hash"].tolist()
    assert main([str(DATA), str(out), "group", "--config", "quick", "--set", "eval.lyap_steps=150"]) == 0
    changed = pd.read_csv(out / "group" / "runs.tsv", sep="\t")["config_hash"].tolist()
    from dsr.config import apply_overrides, load_config

    assert changed == [apply_overrides(load_config("quick"), ["eval.lyap_steps=150"]).hash()] != own

"""The options of every command line level, with their help and defaults (``dsr BIDS OUT LEVEL -h``).

``dsr fit`` has its own parser; the BIDS-App levels (``participant``, ``group``, ``sweep``) each get a parser
with the three positional arguments and that level's options only, grouped as fMRIPrep groups them. Every
help line ends with the option's default. :func:`level_of` finds the level in an argument list so that
options may come before or after the positional arguments.
"""
from __future__ import annotations

import argparse
import sys

from dsr.config import preset_names

EXIT_USAGE = 2
LEVELS = ("participant", "group", "sweep")
LEVEL_HELP = {
    "participant": "fit one model per BOLD run (and seed): extract region series, train, evaluate, write",
    "group": "features of every fit, group statistics against participants.tsv, the HTML reports",
    "sweep": "a hyperparameter sweep: every trial x run x seed, the best trial per participant",
}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage dump)."""

    def error(self, message):
        print(f"dsr: error: {message} (see {self.prog} -h)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help with every option's default: ``(default: X)`` appended unless the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._CountAction)):
            return f"{text} (default: off)"
        return f"{text} (default: %(default)s)"


def _parser(prog: str, description: str, **kw) -> Parser:
    return Parser(prog=prog, description=description, formatter_class=_Formatter, **kw)


def _config_options(g, group_level: bool = False) -> None:
    presets = ", ".join(preset_names())
    if group_level:
        g.add_argument("--config", default=None, metavar="PRESET", help=f"analyse every fit with the eval settings "
                       f"of this preset ({presets}) or TOML file (default: each fit's own config, read from its "
                       "files)")
        g.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="change one config key (repeatable), e.g. eval.lyap_steps=2000; with it the group "
                            "level analyses every fit with the changed config (default: none)")
        return
    g.add_argument("--config", default=None, metavar="PRESET",
                   help=f"config preset ({presets}) or path to a TOML file (default: paper, the paper's "
                        "settings: 1000 epochs; quick is 40 epochs for trying dsr out)")
    g.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change one config key (repeatable), parsed by the key's type: train.epochs=200, "
                        "model.latent_dim=20, extract.low_pass=0.1, filter.tau=none; applied after --config, "
                        "--seed and --epochs (default: none)")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, 0)")
    g.add_argument("--epochs", type=int, default=None, help="training epochs, same as --set train.epochs=N "
                                                            "(default: the config's)")


def _runtime_options(g, level: str) -> None:
    if level != "fit":
        g.add_argument("--nprocs", "--n-jobs", dest="nprocs", type=int, default=1, metavar="N",
                       help="participants analysed in parallel worker processes" if level == "group" else
                       "worker processes on the CPU (with --stack: stack shards)")
    g.add_argument("--omp-nthreads", type=int, default=1, metavar="N",
                   help="compute threads of every process that fits or analyses (torch, OpenMP, BLAS)")
    if level == "participant":
        g.add_argument("--mem", type=float, default=None, metavar="GB",
                       help="memory budget in GB: the parallel fits are capped to what it holds by an estimate "
                            "of each fit (process, BOLD image, training and evaluation), and a plan that cannot "
                            "fit is refused before any fit (default: no limit)")
    elif level == "group":
        g.add_argument("--mem", type=float, default=None, metavar="GB",
                       help="memory budget in GB: the parallel workers are capped to what it holds, about "
                            "0.6 GB each (default: no limit)")


def _output_options(g, log_dir: str | None = "OUTPUT_DIR") -> None:
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more lines: -v adds debug lines (epochs, memory estimate, config), -vv also other "
                        "libraries' messages and Python warnings (nilearn)"
                        + (f"; every line also goes to {log_dir}/logs/dsr_<UTC time>.log" if log_dir else ""))
    g.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def fit_parser() -> Parser:
    """``dsr fit FILE --tr S --out DIR``: one recording."""
    p = _parser("dsr fit", "Fit a convSSM to one recording (T x N array) and write model, metrics, generated "
                           "series and figure into --out.")
    p.add_argument("file", help="recording: .npy, .csv or .tsv with T rows and N columns; or Ca2+ imaging: "
                                "a suite2p output folder or an NWB file (fitted as dF/F)")
    p.add_argument("--tr", type=float, default=None, help="sampling interval in seconds (default: none; required "
                                                          "for tables, read from suite2p / NWB files)")
    p.add_argument("--out", required=True, help="output folder (required)")
    p.add_argument("--nuisance", default=None, help="nuisance regressors (T x P) for the regressor observation "
                                                    "model (default: none)")
    p.add_argument("--inputs", default=None, help="external inputs (T x Q) (default: none)")
    p.add_argument("--latent-truth", default=None, help="ground-truth latents (T' x n) for latent-space metrics "
                                                        "(default: none)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint of an interrupted fit")
    p.add_argument("--no-standardise", action="store_true", help="keep the data's units (no z-scoring)")
    p.add_argument("-w", "--work-dir", default=None, metavar="DIR",
                   help="folder for the training checkpoint (default: --out/checkpoint)")
    _config_options(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    _runtime_options(p, "fit")
    _output_options(p, "--out")
    return p


def level_parser(level: str) -> Parser:
    """The parser of one BIDS-App level: the positional arguments and that level's options only."""
    p = _parser(f"dsr BIDS_DIR OUTPUT_DIR {level}", f"dsr {level} level: {LEVEL_HELP[level]}.")
    _positionals(p, level)
    if level in ("participant", "sweep"):
        sel = p.add_argument_group("selecting runs")
        sel.add_argument("--participant-label", "--participant_label", nargs="+", default=None, metavar="LABEL",
                         help="participants to fit, with or without 'sub-' (default: all)")
        sel.add_argument("--task", default=None, help="only runs of this task (default: all tasks)")
        sel.add_argument("--session", default=None, help="only runs of this session (default: all sessions)")
        sel.add_argument("--space", default=None, help="only runs in this space (default: one space per run, "
                                                       "MNI152NLin2009cAsym first)")
        ext = p.add_argument_group("region series")
        ext.add_argument("--atlas", default=None, help="labels/maps atlas NIfTI, a coordinates TSV, or a "
                         "coordinate atlas by name (power2011, dosenbach2010, seitzman2018) (default: the one "
                         "*_dseg.nii.gz in BIDS_DIR/derivatives/atlas)")
        ext.add_argument("--confounds", default=None, metavar="STRATEGY",
                         help="confound strategy: motion6, motion12, motion24, wmcsf, wmcsf8, gsr, gsr4, "
                              "scrub=FD_MM or column names, joined by '+'; none for no confounds "
                              "(default: config extract.confounds, else motion6+wmcsf when a confounds table "
                              "exists)")
    if level == "participant":
        sel.add_argument("--bids-filter-file", default=None, metavar="FILE",
                         help='JSON filter file as for fMRIPrep: {"bold": {"session": "1", "task": "rest", '
                              '"run": [1, 2]}}; entities subject, session, task, acquisition, run, echo, space, '
                              "... (default: none)")
        sel.add_argument("--derivatives", default="auto", metavar="PATH",
                         help="fMRIPrep derivatives folder; 'auto' looks in BIDS_DIR and BIDS_DIR/derivatives/*, "
                              "'none' fits the raw runs (default: auto)")
        ext.add_argument("--confounds-mode", choices=["regress", "nuisance"], default=None,
                         help="regress the confounds out of the series, or keep them as nuisance regressors of "
                              "the regressor observation model (default: config extract.confounds_mode, else "
                              "nuisance with the regressor model, regress otherwise)")
        ext.add_argument("--high-pass", type=float, default=None, metavar="HZ",
                         help="band-pass: lower cut-off in Hz, e.g. 0.01 (default: config extract.high_pass, none)")
        ext.add_argument("--low-pass", type=float, default=None, metavar="HZ",
                         help="band-pass: upper cut-off in Hz, e.g. 0.1 (default: config extract.low_pass, none)")
        ext.add_argument("--radius", type=float, default=None, metavar="MM",
                         help="sphere radius in mm of a coordinate atlas (default: 5 mm; seitzman2018 its own "
                              "radii)")
    if level == "group":
        cfg = p.add_argument_group("analysis")
        _config_options(cfg, group_level=True)
    else:
        cfg = p.add_argument_group("model and training")
        _config_options(cfg)
        cfg.add_argument("--device", default="cpu", help="cpu, cuda:N, or cuda/auto to spread the fits over "
                                                         "every visible GPU")
    if level == "participant":
        cfg.add_argument("--seeds", type=int, nargs="+", default=None, metavar="N",
                         help="fit every run once per seed (outputs named _seed-N; the group level reports mean "
                              "and spread) (default: one fit with the config's seed)")
    if level == "sweep":
        cfg.add_argument("--sweep", default=None, help="a sweep TOML file, or a name from configs/sweeps "
                                                       "(alpha_lr, random_small) (default: none; required)")
    run = p.add_argument_group("execution")
    if level != "group":
        run.add_argument("--executor", choices=["local", "ray", "stack"], default="local",
                         help="local processes/GPUs, tasks on a Ray cluster, or stacked models (= --stack)")
        run.add_argument("--ray-address", default=None, help="Ray cluster address (auto, HOST:6379, "
                         "ray://HOST:10001) (default: start a local Ray cluster)")
        run.add_argument("--fits-per-gpu", type=int, default=1, help="fits sharing one GPU (with --device cuda "
                                                                     "or auto)")
        run.add_argument("--max-retries", type=int, default=2, help="Ray: reruns of a fit whose worker process "
                                                                    "died")
    if level == "participant":
        run.add_argument("--stack", action="store_true", help="train all fits (runs x seeds) as one stacked "
                         "model per device (fills a GPU; each fit's outputs are those of a fit of its own)")
        run.add_argument("-w", "--work-dir", default=None, metavar="DIR",
                         help="folder for the training checkpoints of unfinished fits (same sub-folders as the "
                              "outputs) (default: beside each fit's outputs in OUTPUT_DIR)")
    _runtime_options(run, level)
    out = p.add_argument_group("output and logging")
    if level in ("participant", "group"):
        out.add_argument("--reports-only", action="store_true",
                         help="fit nothing: rebuild the HTML reports (OUTPUT_DIR/sub-XX.html, group.html) and "
                              "group tables from the fits already in OUTPUT_DIR")
    _output_options(out, None if level == "sweep" else "OUTPUT_DIR")
    return p


def _positionals(p, level: str | None) -> None:
    p.add_argument("bids_dir", metavar="BIDS_DIR", help="the input dataset: raw BIDS (with or without "
                   "derivatives/fmriprep inside) or an fMRIPrep output folder")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="the derivatives folder to write (outside BIDS_DIR); "
                   "the group level reads the participant level's outputs from it")
    if level is None:
        p.add_argument("analysis_level", metavar="LEVEL", choices=LEVELS,
                       help="; ".join(f"{k}: {v}" for k, v in LEVEL_HELP.items()))
    else:
        p.add_argument("analysis_level", metavar=level, choices=[level], help=f"this level: {LEVEL_HELP[level]}")


def general_parser() -> Parser:
    """``dsr -h``: the levels, and where each level's options are listed."""
    p = _parser("dsr", "dsr: dynamical systems reconstruction of fMRI as a BIDS App.\n\n"
                       "  dsr BIDS_DIR OUTPUT_DIR participant [options]   (dsr BIDS_DIR OUTPUT_DIR participant -h)\n"
                       "  dsr BIDS_DIR OUTPUT_DIR group [options]         (dsr BIDS_DIR OUTPUT_DIR group -h)\n"
                       "  dsr BIDS_DIR OUTPUT_DIR sweep --sweep FILE      (dsr BIDS_DIR OUTPUT_DIR sweep -h)\n"
                       "  dsr fit FILE --tr SECONDS --out DIR             (dsr fit -h)\n"
                       "  dsr --version")
    _positionals(p, None)
    p.add_argument("--version", "-V", action="store_true", help="print the version and exit")
    return p


def level_of(argv: list[str]) -> str | None:
    """The analysis level in ``argv``: the third positional argument, options (and their values) skipped;
    None when there is none."""
    takes_value = set()
    for level in LEVELS:
        for action in level_parser(level)._actions:
            if action.option_strings and action.nargs != 0:
                takes_value.update(action.option_strings)
    positional, i = [], 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            positional += argv[i + 1:]
            break
        if token.startswith("-") and len(token) > 1:
            if token in takes_value:
                i += 1  # its value (nargs="+" options take the next tokens; the level word ends them below)
                while i + 1 < len(argv) and not argv[i + 1].startswith("-") and argv[i + 1] not in LEVELS \
                        and _is_list(token):
                    i += 1
        else:
            positional.append(token)
        i += 1
    return positional[2] if len(positional) >= 3 and positional[2] in LEVELS else None


def _is_list(option: str) -> bool:
    return option in ("--participant-label", "--participant_label", "--seeds")

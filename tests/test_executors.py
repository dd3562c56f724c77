"""Local executor: device slots over N GPUs (faked counts), worker pinning, progress; the SLURM recipe."""
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from dsr.errors import DsrError
from dsr.pipelines.executors import ExecutorSettings, probe, run_tasks, slot_devices

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n_gpus, per_gpu, device, n_tasks, expected", [
    (2, 1, "cuda", 10, ["cuda:0", "cuda:1"]),
    (2, 3, "auto", 10, ["cuda:0", "cuda:1"] * 3),
    (4, 2, "cuda", 3, ["cuda:0", "cuda:1", "cuda:2"]),  # no more workers than tasks
    (0, 2, "auto", 10, ["cpu"] * 3),  # auto without CUDA: nprocs CPU processes
    (2, 2, "cuda:1", 10, ["cuda:1"] * 3),  # one named GPU: every fit there
    (2, 2, "cpu", 10, ["cpu"] * 3),
])
def test_slot_devices_spread_round_robin(n_gpus, per_gpu, device, n_tasks, expected):
    ex = ExecutorSettings(device=device, nprocs=3, fits_per_gpu=per_gpu, n_gpus=n_gpus)
    assert slot_devices(ex, n_tasks) == expected


def test_settings_are_checked():
    with pytest.raises(DsrError, match="unknown executor"):
        ExecutorSettings(kind="dask")
    with pytest.raises(DsrError, match="fits-per-gpu"):
        ExecutorSettings(fits_per_gpu=0)


def test_local_pool_pins_each_worker_to_one_gpu(caplog):
    """Two faked GPUs, two fits per GPU: four worker processes, each pinned to one device, two per GPU,
    and every task reports the device of the worker that ran it."""
    ex = ExecutorSettings(device="cuda", fits_per_gpu=2, n_gpus=2)
    results = {}
    with caplog.at_level(logging.INFO, logger="dsr"):
        run_tasks(probe, list(range(8)), ex, lambda i, res: results.__setitem__(i, res))
    assert sorted(results) == list(range(8)) and all(r["job"] == i for i, r in results.items())
    by_pid = {}
    for r in results.values():
        by_pid.setdefault(r["pid"], set()).add(r["device"])
    assert all(len(devs) == 1 for devs in by_pid.values())  # a worker never changes device
    per_device = {}
    for pid, devs in by_pid.items():
        per_device.setdefault(devs.pop(), []).append(pid)
    assert set(per_device) <= {"cuda:0", "cuda:1"} and all(len(p) <= 2 for p in per_device.values())
    assert "8/8 fits finished (all ok" in caplog.text


def test_serial_run_in_process():
    out = []
    run_tasks(probe, ["a", "b"], ExecutorSettings(device="cpu", nprocs=1), lambda i, r: out.append((i, r["device"])))
    assert out == [(0, "cpu"), (1, "cpu")]


def test_cli_options_and_one_line_errors(tmp_path, capsys):
    from dsr.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), str(tmp_path / "out"), "participant", "--executor", "spark"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err
    assert main([str(tmp_path), str(tmp_path / "out"), "group", "--sweep", "alpha_lr"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["dsr: error: --sweep is for the sweep level: dsr BIDS_DIR OUTPUT_DIR sweep "
                                        "--sweep FILE"]


SBATCH = ROOT / "slurm" / "dsr_array.sbatch"


def test_sbatch_template_parses_and_maps_array_index_to_label(tmp_path):
    """The job array: task i runs ``dsr BIDS OUT participant --participant-label <i-th label>`` (here with a
    stand-in ``dsr`` on PATH that prints its arguments; no SLURM needed)."""
    bash = shutil.which("bash")
    assert subprocess.run([bash, "-n", str(SBATCH)], capture_output=True).returncode == 0
    text = SBATCH.read_text()
    assert "#SBATCH --array" in text and "--participant-label" in text
    bids = tmp_path / "ds"
    bids.mkdir()
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-01\t30\nsub-02\t41\nsub-07\t25\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dsr").write_text('#!/bin/sh\necho "ARGS: $*"\n')
    (fake / "dsr").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "BIDS_DIR": str(bids), "OUT_DIR": str(tmp_path / "out"),
           "DSR_ARGS": "--config quick"}
    lines = []
    for task in (0, 2):
        r = subprocess.run([bash, str(SBATCH)], env=dict(env, SLURM_ARRAY_TASK_ID=str(task)), capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        lines.append([x for x in r.stdout.splitlines() if x.startswith("ARGS:")][0])
    assert lines[0] == f"ARGS: {bids} {tmp_path / 'out'} participant --participant-label 01 --config quick"
    assert "--participant-label 07" in lines[1]
    # a labels file instead of participants.tsv; an index past the end is an error naming the list
    (tmp_path / "labels.txt").write_text("03\nsub-05\n")
    r = subprocess.run([bash, str(SBATCH)], env=dict(env, SLURM_ARRAY_TASK_ID="1", LABELS=str(tmp_path / "labels.txt")),
                       capture_output=True, text=True)
    assert "--participant-label 05" in r.stdout
    r = subprocess.run([bash, str(SBATCH)], env=dict(env, SLURM_ARRAY_TASK_ID="5"), capture_output=True, text=True)
    assert r.returncode != 0 and "participants.tsv" in r.stderr and "ARGS" not in r.stdout


def test_unreachable_ray_address_is_one_line_before_anything_is_written(tmp_path, capsys):
    import socket

    from dsr.cli import main

    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    assert main([str(ROOT / "data"), str(out), "participant", "--executor", "ray", "--ray-address",
                 f"127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dsr: error: --ray-address 127.0.0.1:{port}: no Ray cluster")
    assert not out.exists()


def test_stack_shards_one_per_gpu():
    from dsr.pipelines.stack import shard, stack_devices

    assert stack_devices(ExecutorSettings(device="cuda", fits_per_gpu=4, n_gpus=2), 100) == ["cuda:0", "cuda:1"]
    assert stack_devices(ExecutorSettings(device="auto", n_gpus=3), 2) == ["cuda:0", "cuda:1"]
    assert stack_devices(ExecutorSettings(device="cuda:1", n_gpus=2), 100) == ["cuda:1"]
    # one named GPU is one stack shard, whatever --nprocs says (it sizes the writer processes)
    assert stack_devices(ExecutorSettings(device="cuda:0", nprocs=32, n_gpus=2), 100) == ["cuda:0"]
    assert stack_devices(ExecutorSettings(device="cpu", nprocs=2, n_gpus=2), 100) == ["cpu", "cpu"]
    parts = shard(list(range(51 * 20)), 2)
    assert [len(p) for p in parts] == [510, 510] and sum(parts, []) == list(range(1020))
    assert [len(p) for p in shard(list(range(5)), 3)] == [2, 2, 1] and shard([1], 4) == [[1]]


@pytest.mark.parametrize("threads", [1, 2])
def test_every_worker_uses_the_threads_it_is_given(threads):
    """Two CPU worker processes: each computes on ``threads`` torch threads and passes the count on to
    OpenMP/BLAS through the environment."""
    import torch

    before = torch.get_num_threads()
    results = {}
    run_tasks(probe, list(range(4)), ExecutorSettings(device="cpu", nprocs=2, threads=threads),
              results.__setitem__)
    import os

    assert 1 <= len({r["pid"] for r in results.values()}) <= 2 and os.getpid() not in {r["pid"] for r in results.values()}
    assert all(r["threads"] == threads and r["omp"] == str(threads) for r in results.values())
    run_tasks(probe, [0], ExecutorSettings(device="cpu", threads=threads), results.__setitem__)  # in process
    assert results[0]["threads"] == threads and torch.get_num_threads() == threads
    torch.set_num_threads(before)


def test_nprocs_and_threads_options():
    from dsr.cli import fit_parser, parse_args

    args = parse_args(["ds", "out", "participant", "--n-jobs", "3", "--omp-nthreads", "2"])[1]
    assert (args.nprocs, args.omp_nthreads) == (3, 2)
    args = parse_args(["ds", "out", "group", "--nprocs", "2"])[1]
    assert (args.nprocs, args.omp_nthreads) == (2, 1)
    assert fit_parser().parse_args(["x.npy", "--out", "o"]).omp_nthreads == 1
    with pytest.raises(DsrError, match="omp-nthreads"):
        ExecutorSettings(threads=0)

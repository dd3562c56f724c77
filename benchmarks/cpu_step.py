"""Milliseconds per CPU training step of S stacked fits through ``train()`` (the README example's shape).

    python benchmarks/cpu_step.py [--fits 30] [--latent 16] [--regions 8] [--epochs 6] [--threads 1]
    PYTHONPATH=/path/to/older/checkout python benchmarks/cpu_step.py ...   # another version's dsr

Defaults: each of the two processes of ``dsr data out participant --config rest_fmri --stack --nprocs 2`` on
the README's example (6 runs × 10 seeds in two stacks of 30; 8 regions, latent M 16, L 50, B 16, T̃ 60, SPM
HRF at TR 1 s, one thread). The series is a smooth random walk (the step's cost does not depend on it). The
first epoch is left out (warm-up); ``--batches`` steps per epoch. Prints one JSON line; the ``dsr`` imported
is the first on ``sys.path`` (PYTHONPATH before this repository).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # last: a PYTHONPATH checkout or the installed dsr first
import dsr  # noqa: E402
from dsr.config import load_config  # noqa: E402
from dsr.models.convssm import ConvSSM, ConvSSMSpec  # noqa: E402
from dsr.signal.filters import spm_hrf  # noqa: E402
from dsr.training.data import prepare_subject  # noqa: E402
from dsr.training.loop import train  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fits", type=int, default=30)
    ap.add_argument("--latent", type=int, default=16)
    ap.add_argument("--regions", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--tr", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    h = spm_hrf(args.tr)
    x = np.random.default_rng(0).standard_normal((400, args.regions)).cumsum(0) * 0.1  # (T, N)
    cfg = load_config("rest_fmri", model={"latent_dim": args.latent, "hidden_dim": args.hidden},
                      train={"epochs": args.epochs, "batches_per_epoch": args.batches})
    sd = prepare_subject(x, h, cfg)
    spec = ConvSSMSpec("cshPLRNN", args.latent, args.hidden, "identity", n_obs=args.regions, tr=args.tr)
    seeds = list(range(args.fits))
    model = ConvSSM.initialise(spec, torch.as_tensor(h), seeds)
    marks = {}
    train(model, [sd] * args.fits, cfg.train, seeds, progress=lambda e, n, info: marks.__setitem__(e, info["seconds"]))
    ms = (marks[args.epochs] - marks[1]) * 1e3 / ((args.epochs - 1) * args.batches)
    print(json.dumps({"ms_per_step": round(ms, 2), "fits": args.fits, "latent": args.latent,
                      "regions": args.regions, "hidden": args.hidden, "threads": args.threads,
                      "dsr": str(Path(dsr.__file__).parent)}))


if __name__ == "__main__":
    main()

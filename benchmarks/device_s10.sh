#!/usr/bin/env bash
# Session 10 on one GPU (issues 18 and 13):
#   aln    the 50 ALN subjects x 5 seeds at $ALN_EPOCHS (3000) epochs, convSSM and the SSM without the decoder,
#          detached side by side; waits for them (up to $WAIT, by default what is left of 560 s), copies
#   wait   after STILL_RUNNING: wait again, copy
#   final  step_limit.py, both cases, this tree's default (and three ablations) against session 9's code (.s9,
#          `git archive 841bd71`) in the same call; the product path at LEMON scale (51 subjects x 20 seeds,
#          1000 epochs, NIfTI to group report); the GPU tests of the changed kernels in what is left of the call
#   smoke  CPU, seconds: the same commands at tiny settings
# The session's three rounds of kernel variants ran as `step_limit.py --detail --cases lemon --paths ...` with
# the variants named in benchmarks/RESULTS.md (Session 10); the winners are now the defaults, the rest ablations.
# Usage (repository root; carry .whl, .shared_data and .s9):
#   bash benchmarks/device_s10.sh aln|wait|final|smoke
set -u
MODE=${1:-final}
source benchmarks/device_env.sh "pywt, nibabel, nilearn"
source benchmarks/device_jobs.sh
W=${S10_DIR:-/tmp/s10}
OUT=${OUT:-/tmp/s10_out}
mkdir -p "$W" "$OUT"
ALN="--subjects 50 --seeds 5 --epochs ${ALN_EPOCHS:-3000} --select-every 25"
JOBS="selection_aln.py"
old_step() {  # session 9's code: its own step_limit.py and dsr package, both cases (first argument: time limit)
  local limit=$1
  shift
  (cd .s9 && PYTHONPATH=/tmp/site:$PWD timeout "$limit" python3 benchmarks/step_limit.py "$@")
}

if [ "$MODE" = smoke ]; then
  set -e
  python3 benchmarks/step_limit.py --cpu-smoke --detail --paths default no_split conv32 --out "$W/step_smoke.json"
  old_step 120 --cpu-smoke --paths default --out "$W/step_smoke_s9.json"
  python3 benchmarks/selection_aln.py --subjects 2 --seeds 1 --epochs 2 --select-every 1 --rollouts 2 \
    --variant conv --out "$W/aln" --tag "_s10_conv"
  python3 benchmarks/product_path.py --subjects 2 --seeds 1 --epochs 2 --volumes 60 --regions 4 --device cpu \
    --no-reports --work /tmp/s10_pp --out "$W/product_path_smoke.json"
  collect "$W" "$OUT/s10.tar.gz"
  echo SMOKE_OK
  exit 0
fi
if [ "$MODE" = aln ]; then
  start_aln "$W" s10 $ALN
fi
if [ "$MODE" = final ]; then
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  timeout 150 python3 benchmarks/step_limit.py --detail --paths default no_split precise_cos conv32 \
    --out "$W/step_final.json" > "$W/step_final.log" 2>&1
  echo "final rc=$?"
  old_step 90 --detail --paths default --plain-steps 1 --out "$W/step_final_s9.json" > "$W/step_final_s9.log" 2>&1
  echo "s9 rc=$?"
  collect "$W" "$OUT/s10.tar.gz"
  timeout $((590 - SECONDS - ${TEST_S:-100})) python3 benchmarks/product_path.py --subjects 51 --seeds 20 \
    --epochs 1000 --work /tmp/s10_pp --out "$W/product_path_s10.json" > "$W/product_path.log" 2>&1
  echo "product rc=$?"
  collect "$W" "$OUT/s10.tar.gz"
  timeout $((585 - SECONDS)) python3 -m pytest -q -x -p no:cacheprovider tests/test_ops_conv_loss.py \
    tests/test_ops_sample.py tests/test_ops_gtf_triton.py > "$W/gpu_tests_final.log" 2>&1
  echo "tests rc=$?"
  collect "$W" "$OUT/s10.tar.gz"
  exit 0
fi
left=$((560 - SECONDS))  # this call's time left (a run is cut at 600 s)
wait_jobs "$JOBS" "${WAIT:-$((left > 30 ? left : 30))}"
aln_compare "$W" s10
collect "$W" "$OUT/s10.tar.gz"
still_running "$JOBS"

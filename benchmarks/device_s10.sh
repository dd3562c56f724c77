#!/usr/bin/env bash
# Session 10 on one GPU (issues 18 and 13):
#   tune   the GPU tests of the changed kernels; step_limit.py at 1020 stacked fits for the launch variants of
#          the weight-gradient, decoder-loss and gather kernels (one factor at a time from the default), and
#          session 9's code (.s9, `git archive 841bd71`) beside it in the same call; then the 50 ALN subjects
#          x 5 seeds at $ALN_EPOCHS (3000) epochs, convSSM and the SSM without the decoder detached side by side
#   tune2  the GPU tests of the Toeplitz decoder loss; a second round of variants at both sizes
#   tune3  the third round: the gather's fast cosine, operands split once in every GTF kernel, combinations
#   wait   after STILL_RUNNING: wait again (up to $WAIT, by default what is left of 560 s), copy
#   final  step_limit.py, both cases, this tree's default against session 9's in the same call; then the
#          product path at LEMON scale (51 subjects x 20 seeds, 1000 epochs, NIfTI to group report)
#   smoke  CPU, seconds: the same commands at tiny settings
# Usage (repository root; carry .whl, .shared_data and .s9):
#   bash benchmarks/device_s10.sh tune|wait|final|smoke
set -u
MODE=${1:-tune}
source benchmarks/device_env.sh "pywt, nibabel, nilearn"
source benchmarks/device_jobs.sh
W=${S10_DIR:-/tmp/s10}
OUT=${OUT:-/tmp/s10_out}
mkdir -p "$W" "$OUT"
VARIANTS=${VARIANTS:-"default w_split w_sm8 w_sm16 w_br32 w_split_sm8 w_split_br32 w_split_br32_w8 conv64 conv64_w2 gather512 gather_w8"}
ALN="--subjects 50 --seeds 5 --epochs ${ALN_EPOCHS:-3000} --select-every 25"
JOBS="selection_aln.py"
old_step() {  # session 9's code: its own step_limit.py and dsr package, both cases (first argument: time limit)
  local limit=$1
  shift
  (cd .s9 && PYTHONPATH=/tmp/site:$PWD timeout "$limit" python3 benchmarks/step_limit.py "$@")
}

if [ "$MODE" = smoke ]; then
  set -e
  python3 benchmarks/step_limit.py --cpu-smoke --detail --paths default w_split conv64 gather512 --out "$W/step_smoke.json"
  old_step 120 --cpu-smoke --paths default --out "$W/step_smoke_s9.json"
  python3 benchmarks/selection_aln.py --subjects 2 --seeds 1 --epochs 2 --select-every 1 --rollouts 2 \
    --variant conv --out "$W/aln" --tag "_s10_conv"
  python3 benchmarks/product_path.py --subjects 2 --seeds 1 --epochs 2 --volumes 60 --regions 4 --device cpu \
    --no-reports --work /tmp/s10_pp --out "$W/product_path_smoke.json"
  collect "$W" "$OUT/s10.tar.gz"
  echo SMOKE_OK
  exit 0
fi
if [ "$MODE" = tune ]; then
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_ops_conv_loss.py tests/test_ops_sample.py \
    tests/test_ops_gtf_triton.py -k "conv or sample or gather or stage or weights or split or precision" \
    > "$W/gpu_tests.log" 2>&1
  echo "tests rc=$?"
  timeout 300 python3 benchmarks/step_limit.py --detail --cases lemon --paths $VARIANTS \
    --out "$W/step_variants.json" > "$W/step_variants.log" 2>&1
  echo "variants rc=$?"
  old_step 90 --detail --paths default --out "$W/step_s9.json" > "$W/step_s9.log" 2>&1
  echo "s9 rc=$?"
  for v in conv noconv; do
    setsid nohup python3 benchmarks/selection_aln.py $ALN --variant $v --device cuda --out "$W/aln" \
      --tag "_s10_$v" > "$W/aln_$v.log" 2>&1 < /dev/null &
  done
fi
if [ "$MODE" = tune2 ]; then  # second round of variants, both cases, and the GPU tests of the Toeplitz decoder loss
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_ops_conv_loss.py tests/test_ops_gtf_triton.py \
    -k "conv or launch_variants" > "$W/gpu_tests2.log" 2>&1
  echo "tests rc=$?"
  timeout 400 python3 benchmarks/step_limit.py --detail --paths default w_r64 w_split_r64 w_split_r80 conv_toe \
    conv_toe_w2 conv64 fwd2 chain2 fwd2_chain2 combo_toe combo_taps --plain-steps 1 \
    --out "$W/step_variants2.json" > "$W/step_variants2.log" 2>&1
  echo "variants rc=$?"
  collect "$W" "$OUT/s10.tar.gz"
  exit 0
fi
if [ "$MODE" = tune3 ]; then  # third round: fast cosine, split operands everywhere, combinations; GPU tests
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_ops_sample.py tests/test_ops_gtf_triton.py \
    -k "twin or launch_variants" > "$W/gpu_tests3.log" 2>&1
  echo "tests rc=$?"
  timeout 300 python3 benchmarks/step_limit.py --detail --paths default g_fast split_all conv_b best best_w best_fc \
    fwd2 --plain-steps 1 --out "$W/step_variants3.json" > "$W/step_variants3.log" 2>&1
  echo "variants rc=$?"
  collect "$W" "$OUT/s10.tar.gz"
  exit 0
fi
if [ "$MODE" = final ]; then
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  timeout 150 python3 benchmarks/step_limit.py --detail --paths default --out "$W/step_final.json" \
    > "$W/step_final.log" 2>&1
  echo "final rc=$?"
  old_step 90 --detail --paths default --plain-steps 1 --out "$W/step_final_s9.json" > "$W/step_final_s9.log" 2>&1
  echo "s9 rc=$?"
  python3 benchmarks/product_path.py --subjects 51 --seeds 20 --epochs 1000 --work /tmp/s10_pp \
    --out "$W/product_path_s10.json" > "$W/product_path.log" 2>&1
  echo "product rc=$?"
  collect "$W" "$OUT/s10.tar.gz"
  exit 0
fi
left=$((560 - SECONDS))  # this call's time left (a run is cut at 600 s)
wait_jobs "$JOBS" "${WAIT:-$((left > 30 ? left : 30))}"
if [ -f "$W/aln/selection_aln_s10_conv.json" ] && [ -f "$W/aln/selection_aln_s10_noconv.json" ]; then
  python3 benchmarks/selection_aln.py --compare "$W/aln/selection_aln_s10_conv.json" \
    "$W/aln/selection_aln_s10_noconv.json" > "$W/aln_compare.log" 2>&1
fi
collect "$W" "$OUT/s10.tar.gz"
still_running "$JOBS"

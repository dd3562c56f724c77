#!/usr/bin/env bash
# Session 9 on one GPU (issues 13 and 18):
#   step  the training-step paths at one model and at 1020 stacked fits, every kernel's GPU time listed
#         (step_limit.py --detail), run alone first so that nothing else shares the GPU while it times;
#   g1    G1 (σ 0.01, 0.1) + G2 (2 250, 5 000 training steps) at 5000 epochs, α 0.15 (the reference's Lorenz
#         setting), 20 seeds, selection every 25 epochs scored on 5 rollouts, rollouts with the observation
#         noise (the lorenz63 preset's protocol with α 0.15), detached.
# Usage (repository root; carry .whl (PyWavelets, nibabel, nilearn wheels) and .shared_data):
#   bash benchmarks/device_s9.sh start     # step, then g1 detached; wait up to $WAIT (400) s; copy to $OUT
#   bash benchmarks/device_s9.sh wait      # after STILL_RUNNING: wait again (up to $WAIT), copy
#   bash benchmarks/device_s9.sh aln       # 50 ALN subjects x 5 seeds at 2000 epochs (session 8: 1000), convSSM
#                                          # and the SSM without the decoder detached side by side; wait, compare
#   bash benchmarks/device_s9.sh smoke     # CPU, seconds: both jobs at tiny settings into $OUT
set -u
MODE=${1:-start}
source benchmarks/device_env.sh "pywt, nibabel, nilearn"
W=${S9_DIR:-/tmp/s9}
OUT=${OUT:-/tmp/s9_out}
mkdir -p "$W" "$OUT"
P=benchmarks/lorenz_protocol.py
G1="--parts g1 g2 --epochs 5000 --seeds 20 --noise 0.01 0.1 --alphas 0.15 --loss-states free --train select_every=25 select_rollouts=5 --eval generation=stochastic --tag _g1s9_a015"
STEP_PATHS="fused split split_w3 split_w1 fused_tf32x3 split_tf32x3"

source benchmarks/device_jobs.sh

if [ "$MODE" = smoke ]; then
  set -e
  python3 benchmarks/step_limit.py --cpu-smoke --detail --paths $STEP_PATHS --out "$W/step_limit_smoke.json"
  python3 $P --smoke --parts g1 g2 --alphas 0.15 --loss-states free --train select_every=1 select_rollouts=2 \
    --eval generation=stochastic --device cpu --out "$W/g1"
  for v in conv noconv; do
    python3 benchmarks/selection_aln.py --subjects 2 --seeds 1 --epochs 2 --select-every 1 --rollouts 2 \
      --variant $v --out "$W/aln" --tag "_s9_$v"
  done
  python3 benchmarks/selection_aln.py --compare "$W/aln/selection_aln_s9_conv.json" "$W/aln/selection_aln_s9_noconv.json"
  collect "$W" "$OUT/s9.tar.gz"
  echo SMOKE_OK
  exit 0
fi
ALN="--subjects 50 --seeds 5 --epochs ${ALN_EPOCHS:-2000} --select-every 25"
if [ "$MODE" = aln ]; then
  start_aln "$W" s9 $ALN
fi
if [ "$MODE" = start ]; then
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  timeout 200 python3 benchmarks/step_limit.py --detail --paths $STEP_PATHS --out "$W/step_limit_s9.json" \
    > "$W/step.log" 2>&1
  echo "step rc=$?"
  setsid nohup python3 $P $G1 --out "$W/g1" > "$W/g1.log" 2>&1 < /dev/null &
fi
JOBS="lorenz_protocol.py|selection_aln.py"
wait_jobs "$JOBS" "${WAIT:-400}"
aln_compare "$W" s9
collect "$W" "$OUT/s9.tar.gz"
still_running "$JOBS"

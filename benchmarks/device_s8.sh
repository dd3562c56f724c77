#!/usr/bin/env bash
# Session 8 on one GPU (issues 13 and 14), five jobs side by side (the Lorenz stacks are latency-bound and
# leave most of the GPU idle):
#   g0    the reference code's own Lorenz example (no HRF, α 0.15, 5000 epochs, 10 seeds; the shipped
#         model_5000.bson scored beside them by the same engine), checkpoint selection every 25 epochs;
#   g1    G1 (σ 0.01, 0.1) + G2 (2 250, 5 000 training steps) at 5000 epochs, α 0.1 and 0.15, 10 seeds,
#         selection every 25 epochs (80 fits; selected and last parameters both evaluated);
#   aln   50 ALN subjects × 5 seeds, 1000 epochs, selection every 25 epochs, convSSM and the SSM without
#         the decoder (two stacks of 250 fits), then the per-subject comparison;
#   rest  the HCP split halves (benchmarks/device_rest14.sh, 10 seeds, 1000 epochs), fits saved for CPU
#         re-scoring.
# Second call (start2 / wait2): G1 + G2 at 5000 epochs, α 0.1, seeds 0-19, selection every 25 epochs scored on
# 5 rollouts (train.select_rollouts; seeds 0-9 train exactly as in the first call, so the two selections compare
# per seed), and the first call's G1/G2 models evaluated again with observation noise in the rollouts
# (eval.generation = stochastic; carried in .realdata/s8g1).
# Third call (eval3): the second call's models (carried in .realdata/s8g1b) evaluated with observation noise.
# Usage (repository root; carry .whl (PyWavelets, nibabel, nilearn wheels), .shared_data and .realdata with
# hcp16/ and model_5000.bson (the reference repository's Results/Lorenz/test/001/checkpoints/model_5000.bson)):
#   bash benchmarks/device_s8.sh start     # start all detached, wait up to $WAIT (560) s, copy results to $OUT
#   bash benchmarks/device_s8.sh wait      # after STILL_RUNNING: wait again, copy
#   bash benchmarks/device_s8.sh smoke     # CPU, seconds: every job at tiny settings into $OUT
set -u
MODE=${1:-start}
source benchmarks/device_env.sh "pywt, nibabel, nilearn"
W=${S8_DIR:-/tmp/s8}
OUT=${OUT:-/tmp/s8_out}
mkdir -p "$W" "$OUT"
P=benchmarks/lorenz_protocol.py
REF=.realdata/model_5000.bson
G0="--parts g0 --epochs 5000 --seeds 10 --alphas 0.15 --loss-states free --train select_every=25 --tag _g0s8"
G1="--parts g1 g2 --epochs 5000 --seeds 10 --noise 0.01 0.1 --alphas 0.1 0.15 --loss-states free --train select_every=25 --tag _g1s8_e5000_select"
ALN="--subjects 50 --seeds 5 --epochs 1000 --select-every 25"

source benchmarks/device_jobs.sh

if [ "$MODE" = smoke ]; then
  set -e
  python3 $P --smoke --parts g0 --alphas 0.15 --loss-states free --train select_every=1 --device cpu \
    --reference-model "${REF_SMOKE:-$REF}" --out "$W/g0"
  python3 $P --smoke --parts g1 g2 --alphas 0.1 --loss-states free --train select_every=1 --device cpu --out "$W/g1"
  for v in conv noconv; do
    python3 benchmarks/selection_aln.py --subjects 2 --seeds 1 --epochs 2 --select-every 1 --rollouts 2 \
      --variant $v --out "$W/aln" --tag "_$v"
  done
  python3 benchmarks/selection_aln.py --compare "$W/aln/selection_aln_conv.json" "$W/aln/selection_aln_noconv.json"
  echo SMOKE_OK
  exit 0
fi

G1B="--parts g1 g2 --epochs 5000 --seeds 20 --noise 0.01 0.1 --alphas 0.1 --loss-states free --train select_every=25 select_rollouts=5 --tag _g1s8_e5000_select5"
G1S="--phase eval --parts g1 g2 --epochs 5000 --seeds 10 --noise 0.01 0.1 --alphas 0.1 0.15 --loss-states free --train select_every=25 --tag _g1s8_e5000_select --eval generation=stochastic"
if [ "$MODE" = start2 ]; then
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  mkdir -p "$W/g1stoch" && cp .realdata/s8g1/* "$W/g1stoch/"
  setsid nohup python3 $P $G1B --out "$W/g1b" > "$W/g1b.log" 2>&1 < /dev/null &
  setsid nohup python3 $P $G1S --out "$W/g1stoch" > "$W/g1stoch.log" 2>&1 < /dev/null &
fi
if [ "$MODE" = eval3 ]; then  # third call: the second call's models with observation noise in the rollouts
  mkdir -p "$W/g1bstoch" && cp .realdata/s8g1b/* "$W/g1bstoch/"
  timeout "${EVAL3_LIMIT:-270}" python3 $P ${G1B/--epochs/--phase eval --eval generation=stochastic --epochs} \
    --out "$W/g1bstoch" > "$W/g1bstoch.log" 2>&1
  echo "eval3 rc=$?"
  collect "$W" "$OUT/s8.tar.gz"
  exit 0
fi
if [ "$MODE" = start ]; then
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  setsid nohup python3 $P $G0 --reference-model $REF --out "$W/g0" > "$W/g0.log" 2>&1 < /dev/null &
  setsid nohup python3 $P $G1 --out "$W/g1" > "$W/g1.log" 2>&1 < /dev/null &
  start_aln "$W" s8 $ALN
  GENERATORS="obs full_targets full_targets_moments deterministic" TAG=_gpu_s10_s8 \
    setsid nohup bash benchmarks/device_rest14.sh "$W/rest" .realdata/hcp16 > "$W/rest.log" 2>&1 < /dev/null &
fi
JOBS="lorenz_protocol.py|selection_aln.py|real_rest.py"
wait_jobs "$JOBS" "${WAIT:-560}"
aln_compare "$W" s8
collect "$W" "$OUT/s8.tar.gz"
still_running "$JOBS"

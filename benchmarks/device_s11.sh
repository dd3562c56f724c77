#!/usr/bin/env bash
# Session 11's device runs (one H200), from the repository root, carrying .whl and .shared_data:
#   start  smoke of the commands on the CPU, then two detached G1 stacks (issue 13: where the +10 % in λ_max
#          comes from), waiting up to WAIT seconds (default 480)
#   start2 two more detached G1 stacks: σ 0.01 with train.noise 0.1 and 0.2 (more than the preset's 0.05)
#   wait   wait up to WAIT seconds more, then pack what is there
# G1 with the lorenz63 preset's protocol (5000 epochs, selection on 5 rollouts, α 0.1, stochastic rollouts),
# 20 seeds per group: job "noise", BOLD observation noise σ 0 and σ 0.01 (the latter the session-8 control);
# job "trainnoise0", σ 0.01 with the training windows' noise (train.noise, preset 0.05) off.
set -u
MODE=${1:-start}
source benchmarks/device_env.sh "pywt, nibabel, nilearn"
source benchmarks/device_jobs.sh
W=${S11_DIR:-/tmp/s11}
OUT=${OUT:-/tmp/s11_out}
mkdir -p "$W" "$OUT"
P=benchmarks/lorenz_protocol.py
G1="--parts g1 --epochs 5000 --seeds 20 --loss-states free --eval generation=stochastic"
JOBS="lorenz_protocol.py"
if [ "$MODE" = start ]; then
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  timeout 120 python3 $P --smoke --parts g1 --noise 0.0 0.01 --loss-states free \
    --train select_every=1 select_rollouts=2 noise=0 --eval generation=stochastic --device cpu \
    --out "$W/smoke" > "$W/smoke.log" 2>&1
  echo "smoke rc=$?"
  setsid nohup python3 $P $G1 --noise 0.0 0.01 --tag _s11_noise --out "$W/g1" > "$W/g1_noise.log" 2>&1 < /dev/null &
  setsid nohup python3 $P $G1 --noise 0.01 --train noise=0 --tag _s11_trainnoise0 --out "$W/g1" \
    > "$W/g1_trainnoise0.log" 2>&1 < /dev/null &
fi
if [ "$MODE" = start2 ]; then
  for nz in 0.1 0.2; do
    setsid nohup python3 $P $G1 --noise 0.01 --train noise=$nz --tag _s11_trainnoise$nz --out "$W/g1" \
      > "$W/g1_trainnoise$nz.log" 2>&1 < /dev/null &
  done
fi
wait_jobs "$JOBS" "${WAIT:-480}"
collect "$W" "$OUT/s11.tar.gz"
still_running "$JOBS"

#!/usr/bin/env bash
# Session 14's device runs (one H200), from the repository root, carrying .whl (pywavelets) and .shared_data
# (run as: `alpha` with WAIT=530, then `wait`; results/s14/):
#   alpha  detached: the lorenz63 preset as session 13 left it (10 000 epochs, train.select_rescore = 6) with the
#          reference code's own Lorenz forcing strength, α 0.15 (its settings/defaults.json), instead of the paper
#          text's α 0.1: G1 (σ 0.01 and 0.1) and G2 (2 250 and 5 000 training steps), 20 seeds. The α 0.1 twin is
#          `benchmarks/device_s13.sh confirm` (run in session 14's first two calls). Waits up to WAIT seconds.
#   lr     (run in session 15: `lr` with WAIT=530, then `wait` twice; results/s15/) detached: two stacks side by
#          side, the preset (α 0.1) with the learning rate decaying more slowly, to train.lr_end 3.16e-5 (the
#          first half of a 20 000-epoch schedule) and to 1e-4: λ_max fell with training length (+17 % at 2 000
#          epochs, +10 % at 5 000, +5 % at 10 000) while the picks stay early (median epoch 1 900 of 10 000), so
#          the rate at the picked epochs may be what matters. Side by side: 1 185 s of training and 125 s of
#          evaluation each.
#   wait   waits up to WAIT seconds more.
# Both then pack the logs, JSON and model files into $OUT/s14.tar.gz.
set -u
MODE=${1:-alpha}
source benchmarks/device_env.sh "pywt"
source benchmarks/device_jobs.sh
W=${S14_DIR:-/tmp/s14}
OUT=${OUT:-/tmp/s14_out}
mkdir -p "$W/g1" "$OUT"
if [ "$MODE" = alpha ]; then
  setsid nohup python3 benchmarks/lorenz_protocol.py --parts g1 g2 --noise 0.01 0.1 --seeds 20 --loss-states free \
    --eval generation=stochastic --device cuda --out "$W/g1" --epochs 10000 --alphas 0.15 \
    --train select_rescore=6 --tag _preset_e10000_rescore6_a015 > "$W/g1_alpha.log" 2>&1 < /dev/null &
fi
if [ "$MODE" = lr ]; then
  for lr in 3.16e-5 1e-4; do
    setsid nohup python3 benchmarks/lorenz_protocol.py --parts g1 g2 --noise 0.01 0.1 --seeds 20 --loss-states free \
      --eval generation=stochastic --device cuda --out "$W/g1" --epochs 10000 \
      --train select_rescore=6 lr_end=$lr --tag _preset_e10000_rescore6_lrend$lr > "$W/g1_lr$lr.log" 2>&1 < /dev/null &
  done
fi
wait_jobs lorenz_protocol.py "${WAIT:-540}"
grep -v "^epoch" "$W"/g1_*.log | tail -n 20
collect "$W" "$OUT/s14.tar.gz"
still_running lorenz_protocol.py

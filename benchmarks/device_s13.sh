#!/usr/bin/env bash
# Session 13's device runs (one H200), from the repository root, carrying .whl and .shared_data (issue 13):
#   start  detached: G1 (σ 0.01 and 0.1) and G2 (2250 and 5000 training steps), 20 seeds, the lorenz63 preset's
#          protocol, as two stacks: at the preset's 5000 epochs keeping every scored checkpoint (every 25 epochs),
#          and at 10 000 epochs keeping every second one (every 50). The kept checkpoints are for the offline study
#          of selection rules (benchmarks/selection_rules.py: which epoch would a rule pick, what λ_max and R do
#          those epochs have); the 10 000-epoch stack asks whether longer training brings λ_max within 5 %.
#          Waits up to WAIT seconds (default 540).
#   wait   waits up to WAIT seconds more.
#   cands, g2cands  see below (carrying .s13: the kept checkpoints and the models' sidecars of start).
#   confirm (run in session 14, then `wait`; results/s14/) detached: the same 80 fits with the lorenz63 preset as
#          it now is (10 000 epochs, train.select_rescore = 6), the end-to-end check of session 13's offline
#          result: 588 s of training and 145 s of evaluation alone on the GPU.
# start, confirm and wait then pack the logs and JSON into $OUT/s13.tar.gz and copy the checkpoint files beside it (each
# under 16 MiB). lorenz_protocol.py leaves train.select_rescore off unless asked: these runs had none.
set -u
MODE=${1:-start}
source benchmarks/device_env.sh "pywt"
source benchmarks/device_jobs.sh
W=${S13_DIR:-/tmp/s13}
OUT=${OUT:-/tmp/s13_out}
mkdir -p "$W/g1" "$OUT"
JOBS="lorenz_protocol.py"
LP="benchmarks/lorenz_protocol.py --parts g1 g2 --noise 0.01 0.1 --seeds 20 --loss-states free
 --eval generation=stochastic --device cuda --out $W/g1"
if [ "$MODE" = start ]; then
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  setsid nohup python3 $LP --epochs 5000 --snapshots 1 --tag _s13_e5000 > "$W/g1_e5000.log" 2>&1 < /dev/null &
  setsid nohup python3 $LP --epochs 10000 --snapshots 2 --tag _s13_e10000 > "$W/g1_e10000.log" 2>&1 < /dev/null &
fi
if [ "$MODE" = confirm ]; then
  setsid nohup python3 $LP --epochs 10000 --train select_rescore=6 --tag _preset_e10000_rescore6 \
    > "$W/g1_confirm.log" 2>&1 < /dev/null &
fi
# cands (the third call, as run): selection_rules.py candidates on the kept G1 checkpoints (carried in .s13): each
#        σ 0.01 fit's 6 best-scored checkpoints of both stacks, and the 4 best at σ 0.1 of the 10 000-epoch stack,
#        through the metric engine, as three processes on the GPU; writes into $OUT.
if [ "$MODE" = cands ]; then
  SR="benchmarks/selection_rules.py candidates"
  for e in 5000 10000; do
    setsid nohup python3 $SR .s13/lorenz_protocol_s13_e${e}_G1_snapshots.safetensors --noise 0.01 --top 6 \
      --models .s13/lorenz_protocol_s13_e${e}_models.safetensors --out "$OUT/cand_e${e}_0.01.json" \
      > "$OUT/cand_e$e.log" 2>&1 < /dev/null &
  done
  setsid nohup python3 $SR .s13/lorenz_protocol_s13_e10000_G1_snapshots.safetensors --noise 0.1 --top 4 \
    --models .s13/lorenz_protocol_s13_e10000_models.safetensors --out "$OUT/cand_e10000_0.1.json" \
    > "$OUT/cand_e10000_0.1.log" 2>&1 < /dev/null &
  wait_jobs "selection_rules.py" "${WAIT:-420}"
  tail -n 2 "$OUT"/cand_*.log
  exit 0
fi
# g2cands (the fourth call, as run, about 200 s): the same for the G2 fits of 5000 training steps of the 10 000-epoch
#        stack, 6 checkpoints each (R of the lowest-scored and of the rescored pick); writes into $OUT.
if [ "$MODE" = g2cands ]; then
  timeout "${WAIT:-200}" python3 benchmarks/selection_rules.py candidates \
    .s13/lorenz_protocol_s13_e10000_G2_snapshots.safetensors --g2-train 5000 --top 6 --chunk 40 \
    --models .s13/lorenz_protocol_s13_e10000_models.safetensors --out "$OUT/cand_e10000_g2_5000.json"
  exit 0
fi
wait_jobs "$JOBS" "${WAIT:-540}"
grep -v "^epoch" "$W"/g1_*.log | tail -n 40
collect "$W" "$OUT/s13.tar.gz" '*_snapshots.safetensors'
cp "$W"/g1/*_snapshots.safetensors "$OUT"/ 2>/dev/null
ls -l "$OUT"
still_running "$JOBS"

#!/usr/bin/env bash
# Issue 13, the G1 gap (session 6), on one GPU: two stacks of benchmarks/lorenz_protocol.py side by side.
#   A: G1 (σ 0.01 and 0.1) + G2 (2250 and 5000 training steps), 1000 epochs, 10 seeds,
#      train.loss_states "free" (dsr's default) and "reference" (the reference code's gradient): 80 fits;
#   B: G1 σ 0.01, 5000 epochs (the reference's settings/defaults.json), 10 seeds, α 0.1 (the paper) and
#      0.15 (the reference's default), loss_states free and reference: 40 fits;
#   C: A's G1 σ 0.01 free fits again with train.cuda_graph = false (eager steps, same seeds and batches):
#      a check of the CUDA-graph training path (session 5's tests/test_training_gpu.py::
#      test_cuda_graph_step_equals_eager_step failed on the x2 machine with an empty captured graph);
#   D: G1 (σ 0.01 and 0.1), 1000 epochs, free, the learning rate decaying to 1e-4 instead of 1e-6 (dsr's
#      lr_end; the CPU probes of session 6 say the schedule decides at 15 000 steps), α 0.1, 0.15 and 0.2
#      (the same probes favour α ≥ 0.15): 60 fits.
# Expected on one H200 (session 5: 80 fits × 1000 epochs trained in 77 s, evaluated in 56 s, prepared in
# 35 s; a graphed step takes ~1.2–1.5 ms whatever the stack size): A ≈ 3 min, B ≈ 7 min (250 000 steps),
# C ≈ 5 min (eager steps are slower), D ≈ 2 min; all four share the GPU, so a first call may return STILL_RUNNING:
# then call it again with "wait".
#
# Usage (repository root; carry .whl with the PyWavelets wheel and .shared_data, as the other device scripts):
#   bash benchmarks/device_g1.sh OUTDIR          # start both stacks detached, wait up to $WAIT s (540), collect
#   bash benchmarks/device_g1.sh OUTDIR wait     # after STILL_RUNNING: wait again and collect
#   bash benchmarks/device_g1.sh OUTDIR --smoke  # CPU, seconds: the same two commands on tiny settings
#   bash benchmarks/device_g1.sh OUTDIR --select # session 7: checkpoint selection, one stack, in the foreground
#   bash benchmarks/device_g1.sh OUTDIR --select-smoke  # the same on the CPU at tiny settings (seconds)
# Results in OUTDIR: lorenz_protocol_g1s6_e1000.json, lorenz_protocol_g1s6_e5000.json,
# lorenz_protocol_g1s6_e1000_eager.json, lorenz_protocol_g1s6_e1000_lrend1e-4.json (per-fit rows, floors,
# summary), their models (.safetensors + .json), the logs, and g1s6.tar.gz holding all of them.
# Since session 8 the lorenz63 preset selects checkpoints and generates with noise; the stacks here pin the
# settings their sessions ran (select_every=0 or 25 on one rollout, deterministic rollouts).
set -u
OUTDIR=${1:?usage: bash benchmarks/device_g1.sh OUTDIR [wait|--smoke|--select|--select-smoke]}
MODE=${2:-start}
source benchmarks/device_env.sh pywt
P=benchmarks/lorenz_protocol.py
LOGS=${G1S6_LOGS:-/tmp/g1s6}
A="--epochs 1000 --seeds 10 --loss-states free reference --train select_every=0 --eval generation=deterministic --tag _g1s6_e1000"
B="--epochs 5000 --seeds 10 --parts g1 --noise 0.01 --alphas 0.1 0.15 --loss-states free reference --train select_every=0 --eval generation=deterministic --tag _g1s6_e5000"
C="--epochs 1000 --seeds 10 --parts g1 --noise 0.01 --loss-states free --train cuda_graph=false select_every=0 --eval generation=deterministic --tag _g1s6_e1000_eager"
D="--epochs 1000 --seeds 10 --parts g1 --loss-states free --alphas 0.1 0.15 0.2 --train lr_end=1e-4 select_every=0 --eval generation=deterministic --tag _g1s6_e1000_lrend1e-4"

# Session 7 (issue 13): checkpoint selection (train.select_every = 25). One stack of 40 fits: G1 σ 0.01 and 0.1,
# α 0.1 (the paper) and 0.15 (the reference's default), 10 seeds, 1000 epochs, loss_states free. Every 25th epoch
# each fit is scored by D_stsp of a free-running BOLD generation (fused GTF kernel, α = 0, as long as the training
# part) against the training part; selection does not change training, so the selected and the last epoch's
# parameters of the same fits are both evaluated ("selected" / "last" rows: the ratio without a second run).
# Expected on one H200: prepare ~35 s, train ~75 s (+ 40 scorings, printed), evaluate 80 fits ~60 s, floors ~8 s;
# capped at SEL_LIMIT (295) s. Writes into OUTDIR, as each is done: lorenz_protocol_g1s7_select_train.json
# (selected epochs, score traces, times) right after training, then lorenz_protocol_g1s7_select.json (per-fit
# metrics, floors, summary), the models and g1s7_select.log. SEL_STEPS=N scores N generated steps instead.
SEL="--epochs 1000 --seeds 10 --parts g1 --noise 0.01 0.1 --alphas 0.1 0.15 --loss-states free --eval generation=deterministic --tag _g1s7_select"
SEL_TRAIN="select_every=25 select_rollouts=1 select_steps=${SEL_STEPS:-0}"
if [ "$MODE" = --select ] || [ "$MODE" = --select-smoke ]; then
  mkdir -p "$OUTDIR"
  EXTRA=""; [ "$MODE" = --select-smoke ] && EXTRA="--smoke --device cpu"
  [ "$MODE" = --select ] && nvidia-smi --query-gpu=name,memory.used --format=csv
  timeout "${SEL_LIMIT:-295}" python3 $P $SEL $EXTRA --train $SEL_TRAIN --out "$OUTDIR" 2>&1 | tee "$OUTDIR/g1s7_select.log"
  rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] && python3 benchmarks/selection_summary.py "$OUTDIR/lorenz_protocol_g1s7_select.json" | tee -a "$OUTDIR/g1s7_select.log"
  ls -l "$OUTDIR"
  [ "$rc" = 0 ] && echo SELECT_DONE || echo "SELECT_FAILED rc=$rc"
  exit "$rc"
fi

if [ "$MODE" = --smoke ]; then  # the same two commands, tiny, on the CPU
  set -e
  mkdir -p "$OUTDIR"
  python3 $P $A --smoke --device cpu --out "$OUTDIR"
  python3 $P $B --smoke --device cpu --out "$OUTDIR"
  python3 $P $C --smoke --device cpu --out "$OUTDIR"
  python3 $P $D --smoke --device cpu --out "$OUTDIR"
  echo SMOKE_OK "$OUTDIR"
  exit 0
fi

if [ "$MODE" = _run ]; then  # the two stacks (runs detached)
  nvidia-smi --query-gpu=name,memory.used --format=csv
  python3 $P $A --out $LOGS/res > $LOGS/e1000.log 2>&1 &
  python3 $P $B --out $LOGS/res > $LOGS/e5000.log 2>&1 &
  python3 $P $C --out $LOGS/res > $LOGS/e1000_eager.log 2>&1 &
  python3 $P $D --out $LOGS/res > $LOGS/e1000_lrend1e-4.log 2>&1 &
  wait
  echo done > $LOGS/finished
  exit 0
fi

if [ "$MODE" = start ]; then
  rm -rf $LOGS && mkdir -p $LOGS/res
  setsid nohup bash "$0" "$OUTDIR" _run > $LOGS/chain.log 2>&1 < /dev/null &
fi
end=$((SECONDS + ${WAIT:-540}))
while [ $SECONDS -lt $end ] && [ ! -f $LOGS/finished ]; do sleep 10; done
for f in $LOGS/*.log; do echo "== $f"; tail -n 12 "$f"; done
mkdir -p "$OUTDIR"
cp $LOGS/*.log $LOGS/res/* "$OUTDIR/" 2>/dev/null
tar -czf "$OUTDIR/g1s6.tar.gz" -C $LOGS . 2>/dev/null
[ -f $LOGS/finished ] && echo DONE || echo STILL_RUNNING

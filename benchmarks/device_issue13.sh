#!/usr/bin/env bash
# Issue 13 on one GPU: G1 (1000 epochs) + G2 (benchmarks/lorenz_protocol.py, one stack of 80 fits, trained on
# the GPU, then scored on the CPU in the background), then on the GPU the ALN comparison convSSM vs the SSM
# without the decoder, 50 subjects x 5 seeds, both train.loss_states in one stack per model
# (reference_results.py aln --loss-states free forced), then aln-compare.
# Expected on one H100/H200 (from sessions 3-4): Lorenz training ~1.5 min; ALN 500 + 500 fits ~4 + 3 min
# of training and ~2 min of evaluation; in all ~10-11 min, so the first call may return STILL_RUNNING.
#
# Usage (repository root; carry .whl with the PyWavelets wheel and .shared_data, as the other device scripts):
#   bash benchmarks/device_issue13.sh            # start everything in the background, wait up to $WAIT s (560)
#   bash benchmarks/device_issue13.sh wait       # if the first call returned STILL_RUNNING: wait and collect
#   bash benchmarks/device_issue13.sh --smoke    # CPU, seconds: the same commands on tiny settings
# Results: benchmarks/results/lorenz_protocol_i13.json, benchmarks/results/aln_i13/*.json, and a copy of
# those plus the logs under $OUT/issue13/. Knobs: LEPOCHS (1000), AEPOCHS (1000), SEEDS (10), ASEEDS (5).
set -u
source benchmarks/device_env.sh pywt
R=benchmarks/reference_results.py
LOGS=/tmp/i13

if [ "${1:-start}" = --smoke ]; then  # tiny CPU run of every command below
  T=$(mktemp -d)
  set -e
  python3 benchmarks/lorenz_protocol.py --smoke --device cpu --out "$T" --phase train --train select_every=0 --eval generation=deterministic
  python3 benchmarks/lorenz_protocol.py --smoke --device cpu --out "$T" --phase eval --train select_every=0 --eval generation=deterministic
  for v in conv noconv; do
    python3 $R aln --variant $v --subjects 2 --seeds-per-subject 2 --epochs 2 --batches 2 --rollouts 2 \
      --lyap-steps 100 --loss-states free forced --eval-device cpu --out "$T/aln" --tag _smoke
  done
  python3 $R aln-compare --out "$T/aln"
  echo SMOKE_OK "$T"
  exit 0
fi

if [ "${1:-start}" = _run ]; then  # the chain itself (runs detached)
  nvidia-smi --query-gpu=name,memory.used --format=csv
  L="benchmarks/lorenz_protocol.py --epochs ${LEPOCHS:-1000} --seeds ${SEEDS:-10} --train select_every=0 --eval generation=deterministic --tag _i13"
  python3 $L --phase train --device cuda > $LOGS/lorenz_train.log 2>&1
  python3 $L --phase eval --device cpu > $LOGS/lorenz_eval.log 2>&1 &  # CPU, while the GPU trains ALN
  for v in conv noconv; do
    python3 $R aln --variant $v --subjects 50 --seeds-per-subject "${ASEEDS:-5}" --epochs "${AEPOCHS:-1000}" \
      --loss-states free forced --device cuda --eval-device cuda --out benchmarks/results/aln_i13 --tag _i13 \
      > $LOGS/aln_$v.log 2>&1
  done
  python3 $R aln-compare --out benchmarks/results/aln_i13 > $LOGS/aln_compare.log 2>&1
  wait
  echo done > $LOGS/finished
  exit 0
fi

if [ "${1:-start}" = start ]; then
  rm -rf $LOGS && mkdir -p $LOGS
  setsid nohup bash "$0" _run > $LOGS/chain.log 2>&1 < /dev/null &
fi
end=$((SECONDS + ${WAIT:-560}))
while [ $SECONDS -lt $end ] && [ ! -f $LOGS/finished ]; do sleep 10; done
for f in $LOGS/*.log; do echo "== $f"; tail -n 14 "$f"; done
mkdir -p "${OUT:-/tmp/out}/issue13"
cp -r $LOGS/*.log benchmarks/results/lorenz_protocol_i13*.json benchmarks/results/lorenz_protocol_i13_models.* \
  benchmarks/results/aln_i13 "${OUT:-/tmp/out}/issue13/" 2>/dev/null
[ -f $LOGS/finished ] && echo DONE || echo STILL_RUNNING

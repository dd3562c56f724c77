#!/usr/bin/env bash
# ALN comparison (convSSM vs the SSM without convolution) on the 16 CPU cores of a lent machine:
# 5 chunks of 4 subjects x 2 variants = 10 single-threaded processes (small PLRNNs are latency-bound,
# so CPU processes beat the GPU until the fused kernel exists).
# Usage there: EPOCHS=300 WAIT=540 bash benchmarks/device_aln.sh start|wait
set -u
export DSR_SHARED_DATA=$PWD/.shared_data PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if ! python3 -c "import pywt" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD
if [ "${1:-start}" = start ]; then
  for v in conv noconv; do
    for first in 0 4 8 12 16; do
      setsid nohup python3 benchmarks/reference_results.py aln --variant $v --first $first --count 4 \
        --tag "_$first" --epochs "${EPOCHS:-300}" > /tmp/aln_${v}_$first.log 2>&1 < /dev/null &
    done
  done
fi
end=$((SECONDS + ${WAIT:-540}))
while [ $SECONDS -lt $end ] && pgrep -f "reference_results.py aln" > /dev/null; do sleep 10; done
tail -qn 1 /tmp/aln_*.log
mkdir -p "$OUT/res" && cp benchmarks/results/aln_*.json "$OUT/res/" 2>/dev/null
cat /tmp/aln_*.log > "$OUT/aln_logs.txt"
pgrep -f "reference_results.py aln" > /dev/null && echo STILL_RUNNING || echo DONE

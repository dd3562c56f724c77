#!/usr/bin/env bash
# Issue 2 reruns on a lent H100 (fused kernel): Lorenz α grid at 5000 training steps, the latent-only
# reference-like diagnostic, and ALN conv vs no-conv with 3 seeds per subject, all as background jobs.
# Usage there: bash benchmarks/device_issue2.sh start|wait   (carry .whl and .shared_data)
set -u
export DSR_SHARED_DATA=$PWD/.shared_data PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
python3 -c "import pywt" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile \
  --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
R=benchmarks/reference_results.py
mkdir -p /tmp/i2
if [ "${1:-start}" = start ]; then
  nvidia-smi --query-gpu=name,memory.used --format=csv
  setsid nohup python3 $R lorenz --device cuda --length 6667 --alphas 0.1 0.05 0.02 --seeds 5 \
    --epochs "${LEPOCHS:-1500}" --tag _gpu_T6667 --eval-workers 5 > /tmp/i2/lorenz_conv.log 2>&1 < /dev/null &
  setsid nohup python3 $R lorenz --variant latent --device cuda --length 100000 --alpha 0.15 --seeds 3 \
    --epochs "${REPOCHS:-1000}" --tag _gpu_ref --eval-workers 3 > /tmp/i2/lorenz_latent.log 2>&1 < /dev/null &
  for v in conv noconv; do
    setsid nohup python3 $R aln --variant $v --device cuda --seeds-per-subject 3 --epochs "${AEPOCHS:-1000}" \
      --tag _gpu3 --eval-workers 4 > /tmp/i2/aln_$v.log 2>&1 < /dev/null &
  done
  sleep 20
  python3 benchmarks/gpu_step.py --profile --sizes 16x50 --subjects 1 1024 --methods triton twin \
    --repeats 10 --out /tmp/i2/gpu_step_profile.json > /tmp/i2/profile.txt 2>&1
fi
end=$((SECONDS + ${WAIT:-500}))
while [ $SECONDS -lt $end ] && pgrep -f "reference_result[s].py" > /dev/null; do sleep 10; done
tail -qn 2 /tmp/i2/*.log
cp benchmarks/results/lorenz_*gpu*.json benchmarks/results/aln_*gpu3*.json /tmp/i2/ 2>/dev/null
tar czf "$OUT/issue2.tgz" -C /tmp i2 && ls -la "$OUT"
pgrep -f "reference_result[s].py" > /dev/null && echo STILL_RUNNING || echo DONE

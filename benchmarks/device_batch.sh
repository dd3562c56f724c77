#!/usr/bin/env bash
# Run a batch of benchmark commands as single-threaded background processes on a lent machine's CPUs,
# wait for them, and bring back one tarball of results and logs.
# Usage there: WAIT=560 bash benchmarks/device_batch.sh start JOBFILE   (one command per line)
#              WAIT=560 bash benchmarks/device_batch.sh wait
set -u
export DSR_SHARED_DATA=$PWD/.shared_data PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if ! python3 -c "import pywt" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD
mkdir -p /tmp/bench
if [ "${1:-wait}" = start ]; then
  i=0
  while IFS= read -r cmd; do
    [ -z "$cmd" ] && continue
    i=$((i + 1))
    setsid nohup bash -c "$cmd" > /tmp/bench/job$i.log 2>&1 < /dev/null &
  done < "$2"
fi
end=$((SECONDS + ${WAIT:-540}))
while [ $SECONDS -lt $end ] && pgrep -f "reference_result[s].py" > /dev/null; do sleep 10; done
for f in /tmp/bench/job*.log; do echo "$f: $(grep -E '^epoch' "$f" | tail -n 1)"; done
cp benchmarks/results/*.json /tmp/bench/ 2>/dev/null
tar czf "$OUT/bench.tgz" -C /tmp bench
pgrep -f "reference_result[s].py" > /dev/null && echo STILL_RUNNING || echo DONE

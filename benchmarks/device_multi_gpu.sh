#!/usr/bin/env bash
# On an nvidia-h200-x2 machine, from the repository root: install the carried wheels (PyWavelets, nibabel,
# nilearn and its dependencies, in .whl/) when absent, run benchmarks/multi_gpu.py, bring back its JSON.
# Usage there: bash benchmarks/device_multi_gpu.sh [multi_gpu.py options]
set -u
source benchmarks/device_env.sh "pywt, nibabel, nilearn"
python3 benchmarks/multi_gpu.py "$@"
rc=$?
cp benchmarks/results/multi_gpu.json "${OUT:-/tmp}/" 2>/dev/null
exit $rc

#!/usr/bin/env bash
# On a GPU machine, from the repository root: install the carried wheels (PyWavelets, nibabel, nilearn and its
# dependencies, in .whl/) when absent, run benchmarks/product_path.py, bring back its JSON.
# Usage there: bash benchmarks/device_product_path.sh [product_path.py options]
set -u
source benchmarks/device_env.sh "pywt, nibabel, nilearn"
python3 benchmarks/product_path.py "$@"
rc=$?
cp benchmarks/results/product_path.json "${OUT:-/tmp}/" 2>/dev/null
exit $rc

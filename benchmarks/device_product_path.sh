#!/usr/bin/env bash
# On a GPU machine, from the repository root: install the carried wheels (PyWavelets, nibabel, nilearn and its
# dependencies, in .whl/) when absent, run benchmarks/product_path.py, bring back its JSON.
# Usage there: bash benchmarks/device_product_path.sh [product_path.py options]
set -u
if ! python3 -c "import pywt, nibabel, nilearn" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
python3 benchmarks/product_path.py "$@"
rc=$?
cp benchmarks/results/product_path.json "${OUT:-/tmp}/" 2>/dev/null
exit $rc

#!/usr/bin/env bash
# On a GPU machine, from the repository root: install the carried wheels (PyWavelets, nibabel, nilearn and its
# dependencies, in .whl/) when absent, run benchmarks/product_path.py with its JSON written into $OUT (the
# participant level's numbers land there before the group level starts, so a command cut short by its time
# limit still brings them back).
# Usage there: bash benchmarks/device_product_path.sh [product_path.py options]
set -u
source benchmarks/device_env.sh "pywt, nibabel, nilearn"
dest="${OUT:-benchmarks/results}"
mkdir -p "$dest"
python3 benchmarks/product_path.py --out "$dest/product_path.json" "$@"

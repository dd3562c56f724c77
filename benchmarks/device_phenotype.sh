#!/usr/bin/env bash
# The phenotype benchmark's dynamics predictor at a fuller fitting budget on a lent GPU machine (issue 19):
#   bash benchmarks/device_phenotype.sh        (repository root; carry .whl, and out/phenotype_cache to skip
#                                               the cohort simulation)
# The CPU run committed in benchmarks/results/phenotype/ fits each convSSM for 30 epochs x 10 batches; this
# refits every subject for EPOCHS x 50 batches (default 200 x 50 = 10000 steps; all subjects of one TR in one
# stack on cuda) and rescores the ridge predictors (dynamics, data_spectral, fc) with the same folds and
# sites; the encoders are not rerun (--no-encoders). Results: $OUT/phenotype_gpu/{table.md,scores.tsv,summary.json}.
set -eu
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if ! python3 -c "import nibabel" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD
EPOCHS=${EPOCHS:-200}
python3 benchmarks/phenotype.py --fit-epochs "$EPOCHS" --fit-batches 50 --device cuda --no-encoders \
  --cache out/phenotype_cache --out "${OUT:-/tmp/out}/phenotype_gpu"

# Sourced by the benchmarks/device_*.sh scripts, from the repository root on a device machine:
#   source benchmarks/device_env.sh "pywt, nibabel, nilearn"
# exports unbuffered output and one compute thread, points DSR_SHARED_DATA at a carried .shared_data,
# installs the carried wheels (.whl/*.whl) into /tmp/site when one of the named modules does not import,
# and puts /tmp/site and the repository on PYTHONPATH.
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if [ -d "$PWD/.shared_data" ]; then export DSR_SHARED_DATA=$PWD/.shared_data; fi
if ! python3 -c "import ${1:-pywt, nibabel, nilearn}" 2>/dev/null && ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD

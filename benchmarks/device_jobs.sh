# Sourced by the benchmarks/device_s*.sh scripts: detached jobs on a device machine and what comes back.
#   wait_jobs PATTERN SECONDS   wait while a process matching PATTERN runs, at most SECONDS
#   collect DIR TARBALL [PAT…]  tail the logs of DIR, pack DIR (without *.pt, nor files matching PAT…) into
#                               TARBALL, list its folder
#   still_running PATTERN       print STILL_RUNNING or ALL_DONE (what the caller waits on next)
wait_jobs() {
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ] && pgrep -f "$1" > /dev/null; do sleep 5; done
}
collect() {
  tail -n 4 "$1"/*.log 2>/dev/null || true
  local dir=$1 tarball=$2 pat excludes=(--exclude='*.pt')
  shift 2
  for pat in "$@"; do excludes+=(--exclude="$pat"); done
  tar -czf "$tarball" -C "$dir" "${excludes[@]}" . 2>/dev/null
  ls -l "$(dirname "$tarball")"
}
still_running() {
  pgrep -f "$1" > /dev/null && echo STILL_RUNNING || echo ALL_DONE
}
# The ALN comparison of the reference results: the convSSM and the SSM without the decoder's convolution as
# two detached stacks, and their per-subject comparison once both have written their JSON.
#   start_aln DIR TAG ARGS...   selection_aln.py ARGS --variant conv|noconv into DIR/aln, tags _TAG_conv|noconv
#   aln_compare DIR TAG         DIR/aln_compare.log from both JSON files, when both exist
start_aln() {
  local dir=$1 tag=$2 v
  shift 2
  for v in conv noconv; do
    setsid nohup python3 benchmarks/selection_aln.py "$@" --variant $v --device cuda --out "$dir/aln" \
      --tag "_${tag}_$v" > "$dir/aln_$v.log" 2>&1 < /dev/null &
  done
}
aln_compare() {
  local conv="$1/aln/selection_aln_$2_conv.json" noconv="$1/aln/selection_aln_$2_noconv.json"
  if [ -f "$conv" ] && [ -f "$noconv" ]; then
    python3 benchmarks/selection_aln.py --compare "$conv" "$noconv" > "$1/aln_compare.log" 2>&1
  fi
}

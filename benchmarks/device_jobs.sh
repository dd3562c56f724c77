# Sourced by the benchmarks/device_s*.sh scripts: detached jobs on a device machine and what comes back.
#   wait_jobs PATTERN SECONDS   wait while a process matching PATTERN runs, at most SECONDS
#   collect DIR TARBALL         tail the logs of DIR, pack DIR (without *.pt) into TARBALL, list its folder
#   still_running PATTERN       print STILL_RUNNING or ALL_DONE (what the caller waits on next)
wait_jobs() {
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ] && pgrep -f "$1" > /dev/null; do sleep 5; done
}
collect() {
  tail -n 4 "$1"/*.log 2>/dev/null || true
  tar -czf "$2" -C "$1" --exclude='*.pt' . 2>/dev/null
  ls -l "$(dirname "$2")"
}
still_running() {
  pgrep -f "$1" > /dev/null && echo STILL_RUNNING || echo ALL_DONE
}

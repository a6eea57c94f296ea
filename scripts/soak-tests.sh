#!/usr/bin/env bash
# Run the whole suite (scripts/test.sh) N times in a row on a clean clone of
# this checkout's HEAD, optionally beside a CPU-spinning process, and count
# the passes. A test must hold on a busy machine; this is how to show it.
#
#   scripts/soak-tests.sh N [--busy]
#
#   N        how many runs (1-100)
#   --busy   run `sh -c 'while :; do :; done'` beside the suite (unpinned,
#            one per run, stopped by PID when the run ends, bounded by
#            `timeout` in any case)
#
# The clone and its build live in a temporary directory, removed at the end;
# the first run builds, the later ones reuse the build. Each run's output is
# kept in that directory until the end and the last lines of a failed run
# are printed. Exit status 0 only if every run passed.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d' >&2; exit 2; }
N=${1:-}
[[ $N =~ ^[0-9]+$ && $N -ge 1 && $N -le 100 ]] || usage
BUSY=0
[[ ${2:-} == --busy ]] && BUSY=1
[[ -z ${2:-} || ${2:-} == --busy ]] || usage
[[ $# -le 2 ]] || usage

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/tailgate-soak.XXXXXX)
HOG=
cleanup() {
  if [[ -n $HOG ]]; then kill "$HOG" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
git clone --quiet --no-hardlinks "$ROOT" "$TMP/tailgate"
echo "soak: $N run(s) of scripts/test.sh on a clean clone of $(git -C "$ROOT" rev-parse --short HEAD)$( ((BUSY)) && echo ', beside a CPU-spinning process')"

pass=0 fail=0
for i in $(seq 1 "$N"); do
  if ((BUSY)); then
    # Bounded: one hour at most, and stopped by PID below.
    timeout 3600 sh -c 'while :; do :; done' &
    HOG=$!
  fi
  start=$(date +%s)
  if (cd "$TMP/tailgate" && bash scripts/test.sh) >"$TMP/run$i.log" 2>&1; then
    pass=$((pass + 1))
    echo "soak: run $i passed ($(($(date +%s) - start)) s)"
  else
    fail=$((fail + 1))
    echo "soak: run $i FAILED ($(($(date +%s) - start)) s); each panic with its message (up to 40 lines, no backtrace), and the last lines:"
    grep -E -A40 "panicked" "$TMP/run$i.log" | grep -v "^ *[0-9]*: \|^ *at " | cut -c1-2000 | head -80 | sed 's/^/  /'
    grep -E "FAILED|^error" "$TMP/run$i.log" | head -10 | sed 's/^/  /'
    tail -5 "$TMP/run$i.log" | sed 's/^/  /'
  fi
  if [[ -n $HOG ]]; then
    kill "$HOG" 2>/dev/null || true
    wait "$HOG" 2>/dev/null || true
    HOG=
  fi
done
echo "soak: $pass of $N runs passed$( ((BUSY)) && echo ' (busy)')"
((fail == 0))

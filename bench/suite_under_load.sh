#!/usr/bin/env bash
# The whole suite, run as CI runs it, several times in a row while another process keeps both
# cores busy, then once idle (issue "Footprint and load": a flaky test fails everything, and CI
# may share its two cores). Each run starts from a fresh clone of one commit.
#
#   bench/suite_under_load.sh [COMMIT] [LOADED_RUNS]      (defaults: HEAD, 3)
#
# Appends one line per run to bench/results/suite-under-load.log in the calling checkout:
# commit, load, exit status, wall time. Stops at the first failure (its log is kept).
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(git -C "$repo" rev-parse "${1:-HEAD}")"
loaded_runs="${2:-3}"
work="$(mktemp -d /tmp/suite-under-load.XXXX)"
record="$repo/bench/results/suite-under-load.log"
mkdir -p "$(dirname "$record")"
hog=""
trap '[ -n "$hog" ] && kill "$hog" 2>/dev/null; true' EXIT

run_once() {  # $1: label (loaded|idle), $2: index
    local dir="$work/$1-$2"
    git clone -q "$repo" "$dir" && git -C "$dir" checkout -q "$commit"
    local start=$SECONDS
    (cd "$dir" && CI=true bash .ci/run) >"$dir.log" 2>&1
    local rc=$? elapsed=$((SECONDS - start))
    local summary
    summary="$(grep -E '[0-9]+ (passed|failed)' "$dir.log" | tail -1)"
    printf '%s %s %s-%s rc=%s %ss %s\n' "$(date -u +%FT%TZ)" "${commit:0:7}" "$1" "$2" \
        "$rc" "$elapsed" "$summary" | tee -a "$record"
    [ "$rc" -eq 0 ] && rm -rf "$dir"
    return "$rc"
}

# The hog: one busy worker per core, at the suite's own priority, for as long as the loaded runs.
stress-ng --cpu "$(nproc)" --quiet &
hog=$!
for i in $(seq 1 "$loaded_runs"); do
    run_once loaded "$i" || exit 1
done
kill "$hog"; wait "$hog" 2>/dev/null; hog=""
run_once idle 1 || exit 1
echo "logs: $work"

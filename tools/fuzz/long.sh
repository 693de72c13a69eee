#!/usr/bin/env bash
# The long fuzzing run: every target under libFuzzer (coverage-guided; needs a
# nightly toolchain and cargo-fuzz), side by side, for SECONDS each (default
# an hour), starting from the kept corpus. Prints each target's executions,
# rate and peak memory; a failing input is kept under
# tools/fuzz/libfuzzer/artifacts/TARGET/ and fails the run.
#
#   bash tools/fuzz/long.sh 3600
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds="${1:-3600}"
targets=(movement_file stored_event api_body)
logs="$(mktemp -d)"

cargo +nightly fuzz build --fuzz-dir tools/fuzz/libfuzzer -O
for target in "${targets[@]}"; do
    mkdir -p "tools/fuzz/libfuzzer/corpus/$target"
    nice -n 10 cargo +nightly fuzz run --fuzz-dir tools/fuzz/libfuzzer -O "$target" \
        "tools/fuzz/libfuzzer/corpus/$target" "tools/fuzz/corpus/$target" \
        -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$logs/$target.log" 2>&1 &
done

failed=0
wait_all() {
    local status=0
    for job in $(jobs -p); do
        wait "$job" || status=1
    done
    return "$status"
}
wait_all || failed=1

for target in "${targets[@]}"; do
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log")"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$target.log")"
    rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$logs/$target.log")"
    if grep -q "^Done" "$logs/$target.log"; then
        echo "$target: ${runs:-?} executions in ${seconds} s (${rate:-?}/s), peak ${rss:-?} MB: no failure"
    else
        echo "$target: FAILED; see $logs/$target.log"
        failed=1
    fi
done
exit "$failed"

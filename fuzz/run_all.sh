#!/usr/bin/env bash
# Runs every fuzz target (or those named) for 1,000,000 executions or 10 minutes, whichever
# comes first, one after another, and prints one table row per target: executions, seconds,
# crashes. Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`).
#   bash fuzz/run_all.sh [TARGET...]        (env RUNS, SECONDS_EACH to change the budget)
# Corpora grow in fuzz/corpus/TARGET (starting from fuzz/seeds/TARGET), crashes land in
# fuzz/artifacts/TARGET, logs in fuzz/logs. Minimise a crash with
#   cargo +nightly fuzz tmin TARGET fuzz/artifacts/TARGET/crash-…
# and check it in under fuzz/regressions/TARGET/ (run on stable by crates/fuzzing's tests).
set -uo pipefail
cd "$(dirname "$0")"
runs=${RUNS:-1000000}
secs=${SECONDS_EACH:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(sed -n 's/^name = "\(.*\)"/\1/p' Cargo.toml | grep -v '^autocaption-fuzz$'))
mkdir -p logs
cargo +nightly fuzz build -O >/dev/null 2>&1 || { echo "cargo +nightly fuzz build failed" >&2; exit 1; }
printf '| target | executions | seconds | crashes |\n|---|---|---|---|\n'
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null
    start=$(date +%s)
    cargo +nightly fuzz run -O "$t" "corpus/$t" -- -runs="$runs" -max_total_time="$secs" \
        -rss_limit_mb=4096 -malloc_limit_mb=4096 -timeout=20 -print_final_stats=1 \
        > "logs/$t.log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
    crashes=$(ls "artifacts/$t" | wc -l)
    [ $rc -eq 0 ] || echo "  $t stopped with status $rc (see fuzz/logs/$t.log)" >&2
    printf '| %s | %s | %s | %s |\n' "$t" "${execs:-?}" "$took" "$crashes"
done

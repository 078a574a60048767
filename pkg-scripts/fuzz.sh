#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser (fuzz/: cargo-fuzz on the nightly toolchain, libFuzzer).
#   pkg-scripts/fuzz.sh smoke [SECONDS]    every target: replay its seeds, then SECONDS (default 5)
#                                          of new inputs; part of the README's test command
#   pkg-scripts/fuzz.sh run TARGET RUNS    one long run of RUNS executions (docs/robustness.md's fuzzing table)
# Each input gets at most 1 GiB of memory and 10 s, so a decompression bomb, an allocation
# sized by a hostile header or a quadratic path counts as a crash. Seeds are committed under
# fuzz/seeds/<target>; what a run discovers goes to fuzz/corpus/<target> (git-ignored), crashes
# to fuzz/artifacts/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=(weights image cifar image_folder_zip engine_plan)
LIMITS=(-rss_limit_mb=1024 -malloc_limit_mb=1024 -timeout=10)
# No sanitizer: the code under test is safe Rust, and uninstrumented builds are several times
# faster to build and to run; libFuzzer still enforces the memory and time limits.
FUZZ=(cargo +nightly fuzz run --sanitizer none --release)

fuzz() {
  local target=$1
  shift
  mkdir -p "fuzz/corpus/$target"
  "${FUZZ[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- "${LIMITS[@]}" "$@"
}

case "${1:-}" in
  smoke)
    seconds=${2:-5}
    cargo +nightly fuzz build --sanitizer none --release
    for target in "${TARGETS[@]}"; do
      log=fuzz/target/smoke-$target.txt
      if ! fuzz "$target" -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz smoke: $target failed (the input is in fuzz/artifacts/$target)"
        exit 1
      fi
      echo "fuzz smoke: $target: $(grep -m1 '^stat::number_of_executed_units' "$log" | tr -s ' ' | cut -d' ' -f2) executions in ${seconds} s, no crash"
    done
    ;;
  run)
    [ $# = 3 ] || { echo "usage: $0 run TARGET RUNS"; exit 1; }
    fuzz "$2" -runs="$3" -print_final_stats=1
    ;;
  *)
    echo "usage: $0 smoke [SECONDS] | run TARGET RUNS (targets: ${TARGETS[*]})"
    exit 1
    ;;
esac

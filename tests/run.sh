#!/usr/bin/env bash
# The whole check, as CI runs it: install missing packages, build, run every
# test; then the same suite again under AddressSanitizer/UndefinedBehaviorSanitizer.
#
# Stages run in order and the script stops at the first failing one. To add a
# stage, write a `stage_NAME` function and append NAME to kStages.
#
# Env:
#   SAFESPOOL_SKIP_DEPS=1   do not check/install Debian packages
#   SAFESPOOL_SKIP_ASAN=1   skip the sanitizer build and its test run
#   SAFESPOOL_FUZZ=0        skip the short fuzz runs (they install clang and add a build)
#   SAFESPOOL_FUZZ_SECONDS  seconds per fuzz target (default 20)
#   SAFESPOOL_JOBS          parallel build/test jobs (default 2)
set -euo pipefail
# Note: stages run inside `if`, where `set -e` does not apply, so every step
# that can fail is chained with `|| return`.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly kRoot=$PWD
readonly kJobs=${SAFESPOOL_JOBS:-2}
readonly kStages=(deps build test asan fuzz)

log() { printf '\n==> %s\n' "$*"; }

# configure_and_build DIR [CMAKE_ARGS...]
configure_and_build() {
  local dir=$1
  shift
  cmake -S "$kRoot" -B "$kRoot/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" || return
  cmake --build "$kRoot/$dir" -j "$kJobs"
}

# run_ctest DIR: every unit and e2e test, output shown for failures only.
run_ctest() {
  (cd "$kRoot/$1" && ctest --output-on-failure -j "$kJobs")
}

stage_deps() {
  [[ "${SAFESPOOL_SKIP_DEPS:-0}" == 1 ]] && { echo "skipped (SAFESPOOL_SKIP_DEPS=1)"; return 0; }
  "$kRoot/scripts/install-deps.sh"
}

stage_build() { configure_and_build build; }

stage_test() { run_ctest build; }

stage_asan() {
  [[ "${SAFESPOOL_SKIP_ASAN:-0}" == 1 ]] && { echo "skipped (SAFESPOOL_SKIP_ASAN=1)"; return 0; }
  # halt_on_error: a sanitizer report fails the test that triggered it.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  configure_and_build build-asan -DSAFESPOOL_SANITIZE=ON || return
  run_ctest build-asan
}

# Short libFuzzer runs (clang, ASan+UBSan) over the golden packets, through
# tests/fuzz/run-fuzz.sh: libFuzzer needs clang, so this is a build of its own.
stage_fuzz() {
  [[ "${SAFESPOOL_FUZZ:-1}" == 1 ]] || { echo "skipped (SAFESPOOL_FUZZ=0)"; return 0; }
  [[ -f "$kRoot/tests/fuzz/run-fuzz.sh" ]] || { echo "skipped (no tests/fuzz/run-fuzz.sh)"; return 0; }
  if [[ "${SAFESPOOL_SKIP_DEPS:-0}" != 1 ]]; then
    "$kRoot/scripts/install-deps.sh" clang libclang-rt-14-dev || return
  fi
  bash "$kRoot/tests/fuzz/run-fuzz.sh" "${SAFESPOOL_FUZZ_SECONDS:-20}"
}

main() {
  local stage start
  for stage in "${kStages[@]}"; do
    log "stage $stage"
    start=$SECONDS
    if ! "stage_$stage"; then
      log "FAILED: stage $stage ($((SECONDS - start))s)"
      return 1
    fi
    echo "stage $stage ok ($((SECONDS - start))s)"
  done
  log "all stages passed"
}

main "$@"

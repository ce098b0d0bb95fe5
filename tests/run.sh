#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The whole check, as CI runs it: install missing packages, build, run every
# test; build and check the Debian package; run the tests of our own code again
# under AddressSanitizer/UndefinedBehaviorSanitizer, and those of the code
# that uses threads under ThreadSanitizer; fuzz briefly.
#
# Stages run in order and the script stops at the first failing one. To add a
# stage, write a `stage_NAME` function and append NAME to kStages.
#
# Env:
#   SAFESPOOL_SKIP_DEPS=1   do not check/install Debian packages
#   SAFESPOOL_SKIP_PACKAGE=1  skip building and checking the .deb
#   SAFESPOOL_SKIP_ASAN=1   skip the sanitizer build and its test run
#   SAFESPOOL_SKIP_TSAN=1   skip the ThreadSanitizer build and its test run
#   SAFESPOOL_FUZZ=0        skip the short fuzz runs (they install clang and add a build)
#   SAFESPOOL_FUZZ_SECONDS  seconds per fuzz target (default 20)
#   SAFESPOOL_JOBS          parallel build/test jobs (default 2)
set -euo pipefail
# Note: stages run inside `if`, where `set -e` does not apply, so every step
# that can fail is chained with `|| return`.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly kRoot=$PWD
readonly kJobs=${SAFESPOOL_JOBS:-2}
readonly kStages=(deps format build test package asan tsan fuzz)

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

# The tree is formatted as .clang-format says: a diff fails the stage and
# names the files (clang-format -i FILE... fixes them).
stage_format() {
  local files
  mapfile -t files < <(cd "$kRoot" && git ls-files 'src/*.cpp' 'src/*.hpp' 'include/*.hpp' \
    'tests/*.cpp' 'tests/*.hpp' 2>/dev/null || find src include tests -name '*.[ch]pp')
  ((${#files[@]} > 0)) || { echo "no sources found" >&2; return 1; }
  (cd "$kRoot" && clang-format --dry-run --Werror "${files[@]}")
}

# Installed under /usr, as the Debian package is (stage_package).
stage_build() { configure_and_build build -DCMAKE_INSTALL_PREFIX=/usr; }

stage_test() { run_ctest build; }

# The Debian package, made by CPack (see the end of CMakeLists.txt) from
# the tested build, which is configured for /usr (stage_build) because
# safespool has its guard's install path compiled in. scripts/check-deb.sh
# then looks into it and runs it. (packaging/debian builds the same files
# with Debian's hardening flags through dpkg-buildpackage.)
stage_package() {
  [[ "${SAFESPOOL_SKIP_PACKAGE:-0}" == 1 ]] && { echo "skipped (SAFESPOOL_SKIP_PACKAGE=1)"; return 0; }
  rm -rf "$kRoot/build/package"
  (cd "$kRoot/build" && cpack -G DEB -B "$kRoot/build/package") || return
  local debs=("$kRoot"/build/package/safespool_*.deb)
  ((${#debs[@]} == 1)) && [[ -f "${debs[0]}" ]] ||
    { echo "expected one safespool_*.deb in build/package" >&2; return 1; }
  bash "$kRoot/scripts/check-deb.sh" "${debs[0]}"
}

stage_asan() {
  [[ "${SAFESPOOL_SKIP_ASAN:-0}" == 1 ]] && { echo "skipped (SAFESPOOL_SKIP_ASAN=1)"; return 0; }
  # halt_on_error: a sanitizer report fails the test that triggered it.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  # -O1 -g1: a third less compile time than -O2 -g, with line numbers in
  # the reports still.
  configure_and_build build-asan -DSAFESPOOL_SANITIZE=ON \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" || return
  # Every test that runs our code, minus those whose subject is another
  # program or a text (units, man page, completion, NNCP, the benchmark
  # script), and shorter crash-kill and scan-kill runs: the sanitizers look
  # for memory errors, which a handful of kills exposes as well as a hundred.
  (cd "$kRoot/build-asan" &&
    CRASH_JOBS=60 CRASH_KILLS=25 SCAN_JOBS=60 SCAN_KILLS=20 ctest --output-on-failure -j "$kJobs" \
      -E '^e2e\.(systemd_units|manpage|completion|nncp_transport|nncp_daemon|bench_quick|json_schema)$')
}

# ThreadSanitizer on the tests of the code that runs threads: the hand-off
# (the relay thread, the stderr tail's thread, the supervisor), the guard
# and containment around it, and the decoders (GPGME's worker thread, the
# OpenPGP batch). Only those: the whole unit suite under TSan takes three
# minutes more here, which would push the whole check past 25 minutes on
# two cores (see the numbers in docs/design/handoff.md, "Threads").
readonly kTsanTests='^(Handoff|HandoffWatch|HandoffDeath|HandoffResult|Relay|Guard|GuardProtocol|Containment|Decode[A-Za-z]*|OpenPgpDamage|PolicyGpg|ScratchDir|Spawn|Digest)(Test)?\.'
stage_tsan() {
  [[ "${SAFESPOOL_SKIP_TSAN:-0}" == 1 ]] && { echo "skipped (SAFESPOOL_SKIP_TSAN=1)"; return 0; }
  # halt_on_error: a report fails the test that triggered it.
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
  cmake -S "$kRoot" -B "$kRoot/build-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAFESPOOL_TSAN=ON \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" || return
  cmake --build "$kRoot/build-tsan" -j "$kJobs" --target unit_tests || return
  (cd "$kRoot/build-tsan" && ctest --output-on-failure -j "$kJobs" -R "$kTsanTests")
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

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for a
# bounded time on a seed corpus of real packets. Usage: run-fuzz.sh [SECONDS]
set -euo pipefail
seconds=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build-fuzz
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DSAFESPOOL_FUZZ=ON -DSAFESPOOL_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target fuzz_packet fuzz_decode

corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for f in "$root"/tests/fixtures/golden/*.fspl; do
  cp "$f" "$corpus/"
  zstd -q -c "$f" > "$corpus/$(basename "$f").zst"
done
# A zstd frame may ask for a 2 GiB window (docs/design/decoding.md: zstd
# --long=31 packets decode), one malloc that the kernel backs only as data
# flows. libFuzzer calls any single malloc above -malloc_limit_mb (default:
# the RSS limit) an out-of-memory; the RSS limit itself stays at 2 GiB.
for t in fuzz_packet fuzz_decode; do
  echo "== $t for ${seconds}s"
  mkdir -p "$corpus/$t" && cp "$corpus"/*.fspl* "$corpus/$t/"
  "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=3072 \
    -max_len=65536 -print_final_stats=1 "$corpus/$t" 2>&1 | tail -n 12
done

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The benchmark harness (bench/run.sh) still works: a --quick run with one
# repetition completes and gives a result row for every case and tool.
# Timings are never checked here; docs/benchmarks.md has the real numbers.
# shellcheck source=lib.sh
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"

BENCH=$E2E_LIB_DIR/../../bench/run.sh

if is_fspl_mode; then
  # The benchmark compares the two tools and uses SafeSpool-only options
  # (--gnupg-home, queue-status): nothing to check against the reference.
  e2e_skipped=$((e2e_skipped + 1))
  e2e_finish
fi

section "bench/run.sh --quick --reps 1"
[[ -x "$BENCH" ]] && pass || fail "$BENCH is not executable"
start=$SECONDS
GEN_PACKETS=${TOOLS:+$TOOLS/gen_packets} SAFESPOOL=$SAFESPOOL FSPL=$FSPL timeout -k 5 240 "$BENCH" --quick --reps 1 \
  --tmpdir "$T" --out "$T/bench.tsv" >"$T/bench.out" 2>"$T/bench.err"
rc=$?
echo "bench/run.sh --quick --reps 1: exit status $rc in $((SECONDS - start)) s"
if ((rc == 0)); then
  pass
else
  fail "bench/run.sh exited with status $rc"
  sed -n '1,40s/^/    /p' "$T/bench.err" >&2
  grep -A1 ERROR "$T/bench.out" | sed 's/^/    /' >&2
fi

section "a result row for every case and tool"
expected=(
  throughput.zstd:safespool throughput.zstd:fspl throughput.zstd:limit
  throughput.gpg:safespool throughput.gpg:fspl throughput.gpg:limit
  scan.zstd:safespool scan.zstd:fspl
  scan.gpg:safespool scan.gpg:fspl
  process.zstd:safespool process.zstd:fspl process.zstd:floor
  process.plain:safespool process.plain:fspl process.plain:floor
  scale.cold:safespool scale.cold:fspl
  scale.ls:safespool scale.ls:fspl
  scale.status:safespool
  scale.process1:safespool scale.process1:fspl
)
expect_eq "TSV header" \
  "case tool items reps median_s min_s max_s peak_rss_kib ratio_fspl ratio_limit ratio_floor target target_met status samples_s" \
  "$(head -n1 "$T/bench.tsv" 2>/dev/null | tr '\t' ' ')"
for want in "${expected[@]}"; do
  case_name=${want%%:*} tool=${want#*:}
  # reps|median_s|peak_rss_kib|status (fields 4, 5, 8, 14; some may be empty)
  row=$(awk -F'\t' -v c="$case_name" -v t="$tool" \
    '$1 == c && $2 == t { print $4 "|" $5 "|" $8 "|" $14 }' "$T/bench.tsv" 2>/dev/null)
  if [[ -z "$row" ]]; then
    fail "no result row for $case_name / $tool"
    continue
  fi
  IFS='|' read -r reps median rss status <<<"$row"
  expect_eq "$want status" ok "$status"
  expect_eq "$want reps" 1 "$reps"
  expect_match "$want median is a number of seconds" '[0-9]+\.[0-9]+' "$median"
  expect_match "$want peak RSS in KiB" '[0-9]+' "$rss"
done
expect_eq "number of result rows" "${#expected[@]}" "$(($(wc -l <"$T/bench.tsv") - 1))"

section "the readable table"
for want in "ss/fspl" "ss/limit" "ss/floor" "Targets" "throughput.gpg" "scale.process1"; do
  grep -qF -- "$want" "$T/bench.out" && pass || fail "table lacks '$want'"
done

e2e_finish

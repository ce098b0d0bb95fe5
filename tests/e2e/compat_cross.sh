#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Packets cross between the tools in both directions:
#  - packets fspl makes (prepare with and without payload, prepare-nop,
#    prepare-fail; plain and compressed with the zstd CLI), delivered out of
#    order, are listed, inspected and processed by safespool, in order, with
#    the exact payload bytes; then fspl carries on with the same queue;
#  - packets safespool makes are processed by fspl the same way;
#  - one sender seqfile can be shared by both tools;
#  - stdin-process accepts the other tool's packets.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
make_consumers
cd "$T" || exit 1
DEC='zstd -dcfq' # decompresses zstd, passes plain packets through unchanged
head -c 300000 /dev/urandom >big.bin
printf 'small payload\n' >small.txt
sum16() { sha256sum "$1" | cut -c1-16; }
readonly kEmpty=e3b0c44298fc1c14 # sha256 of no bytes

# make_set TOOL DIR: five packets from one sender seqfile, some zstd-compressed.
make_set() {
  local tool=$1 dir=$2
  mkdir -p "$dir"
  FSPL_SET_KIND=big "$tool" prepare -s "$dir/seq" -i big.bin -- one 'two words' >"$dir/1" &&
    "$tool" prepare-nop -s "$dir/seq" >"$dir/2" &&
    "$tool" prepare -s "$dir/seq" -i - <small.txt | zstd -q -c >"$dir/3" &&
    "$tool" prepare -s "$dir/seq" -- p3 | zstd -q -c >"$dir/4" &&
    "$tool" prepare-fail -s "$dir/seq" >"$dir/5"
}

# expected log of `record --allow-job-params` over packets 1..4 of a set
cat >expected.log <<EOF2
seq=1 sum=$(sum16 big.bin) args=fixed one two words
seq=3 sum=$(sum16 small.txt) args=fixed
seq=4 sum=$kEmpty args=fixed p3
EOF2

# exercise MAKER_LABEL PROCESSOR_FN OTHER_FN MAKER_BINARY
exercise() {
  local label=$1 proc=$2 other=$3 maker=$4 q=q_$1
  section "packets made by $label, processed by $proc"
  make_set "$maker" "pk_$label" || { fail "$label could not make packets"; return; }
  expect_ok "$label.init" "$proc" queue-init -q "$q"
  for n in 3 1 5 2 4; do deliver "$q" "pk_$label/$n"; done

  run "$label.ls.$proc" "$proc" queue-ls -q "$q" -d "$DEC"
  run "$label.ls.$other" "$other" queue-ls -q "$q" -d "$DEC"
  expect_eq "$proc queue-ls lists all 5, in seq order" "1 2 3 4 5" \
    "$(awk 'NR>1{printf "%s%s", sep, $1; sep=" "}' "$T/$label.ls.$proc.out")"
  expect_same "queue-ls output, $proc vs $other" "$T/$label.ls.$other.out" "$T/$label.ls.$proc.out"

  for j in 1 2 3 4 5; do
    expect_ok "$label.info$j.$proc" "$proc" queue-info -q "$q" -j "$j" -d "$DEC"
    run "$label.info$j.$other" "$other" queue-info -q "$q" -j "$j" -d "$DEC"
    expect_same "queue-info -j $j, $proc vs $other" "$T/$label.info$j.$other.out" "$T/$label.info$j.$proc.out"
    zstd -dcfq <"pk_$label/$j" >"pk_$label/$j.plain"
    expect_ok "$label.stdininfo$j" "$proc" stdin-info <"pk_$label/$j.plain"
    run "$label.stdininfo$j.$other" "$other" stdin-info <"pk_$label/$j.plain"
    expect_same "stdin-info of packet $j, $proc vs $other" \
      "$T/$label.stdininfo$j.$other.out" "$T/$label.stdininfo$j.out"
  done
  expect_ok "$label.payload1" "$proc" queue-payload -q "$q" -j 1 -d "$DEC"
  expect_same "queue-payload -j 1 is the payload" big.bin "$T/$label.payload1.out"
  expect_ok "$label.payload3" "$proc" stdin-payload <"pk_$label/3.plain"
  expect_same "stdin-payload of compressed packet 3 is the payload" small.txt "$T/$label.payload3.out"

  # Jobs 1-4 run in order; the Fail packet (5) stops the run with an error.
  : >"$LOG"
  expect_fail "$label.process.$proc" "$proc" queue-process -q "$q" -d "$DEC" \
    --allow-job-params "$T/bin/record" -- fixed
  expect_same "$proc ran jobs 1-4 in order with their payloads" expected.log "$LOG"
  expect_eq "$proc: nextseq stays at the Fail packet" 5 "$(cat "$q/nextseq")"
  expect_eq "$proc: only the Fail packet is left" 1 "$(job_count "$q")"

  # The other tool picks up the same queue where this one stopped.
  expect_ok "$label.process.$other" "$other" queue-process -q "$q" -d "$DEC" \
    --on-error delete "$T/bin/record"
  expect_eq "$other continues: nextseq after the Fail packet" 6 "$(cat "$q/nextseq")"
  expect_eq "$other continues: queue empty" 0 "$(job_count "$q")"
}

exercise fspl ss fs "$FSPL"
exercise safespool fs ss "$SAFESPOOL"

section "one sender seqfile shared by both tools"
expect_ok share1 fs prepare-nop -s shared.seq
expect_ok share2 ss prepare-nop -s shared.seq
expect_ok share3 fs prepare-nop -s shared.seq
expect_eq "seqs 1,2,3 across tools" "1 2 3" \
  "$(for n in 1 2 3; do fs stdin-info <"$T/share$n.out" | sed -n 's/^FSPL_SEQ=//p'; done | xargs)"
expect_eq "seqfile after three packets" 4 "$(cat shared.seq)"
expect_ok share.getnext ss prepare-get-next -s shared.seq
expect_eq "safespool prepare-get-next reads fspl's seqfile" 4 "$(cat "$T/share.getnext.out")"

section "stdin-process with the other tool's packets"
: >"$LOG"
fs prepare -s - -i small.txt -- a >from_fspl.pkt
ss prepare -s - -i small.txt -- b >from_ss.pkt
expect_ok stdinproc1 ss stdin-process --allow-job-params "$T/bin/record" <from_fspl.pkt
expect_ok stdinproc2 fs stdin-process --allow-job-params "$T/bin/record" <from_ss.pkt
printf 'seq=1 sum=%s args=a\nseq=1 sum=%s args=b\n' "$(sum16 small.txt)" "$(sum16 small.txt)" >expected2.log
expect_same "stdin-process in both directions" expected2.log "$LOG"

e2e_finish

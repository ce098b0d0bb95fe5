#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Queue and seqfile administration, the same under both tools:
#  - queue-init: layout (nextseq = "1\n", nextseq.lock, jobs/), --append-only
#    (no nextseq files), refusing an existing directory;
#  - queue-write: names files fspl-<UUID v4>.fspl, bytes unchanged, no
#    temporary file left, works on append-only queues;
#  - gen-filename / gen-uuid formats;
#  - prepare-get-next / prepare-set-next and the sender seqfile format, read
#    and written by either tool; `-s -` means seq 1 and no file.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
cd "$T" || exit 1
readonly kUuid='[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}'

for tool in fs ss; do
  section "queue-init [$tool]"
  expect_ok "init.$tool" $tool queue-init -q "q.$tool"
  expect_eq "queue layout [$tool]" "jobs nextseq nextseq.lock" "$(ls "q.$tool" | xargs)"
  expect_eq "nextseq is '1\\n' [$tool]" 310a "$(xxd -p "q.$tool/nextseq")"
  expect_eq "nextseq.lock is empty [$tool]" 0 "$(stat -c %s "q.$tool/nextseq.lock")"
  expect_fail "init.again.$tool" $tool queue-init -q "q.$tool"
  expect_ok "init.ao.$tool" $tool queue-init -q "ao.$tool" --append-only
  expect_eq "append-only layout [$tool]" "jobs" "$(ls "ao.$tool" | xargs)"
  expect_fail "init.noparent.$tool" $tool queue-init -q "missing/parent/q.$tool"

  section "queue-write [$tool]"
  head -c 100000 /dev/urandom >"blob.$tool"
  expect_ok "write.$tool" $tool queue-write -q "q.$tool" <"blob.$tool"
  expect_ok "write.ao.$tool" $tool queue-write -q "ao.$tool" <"blob.$tool"
  for q in "q.$tool" "ao.$tool"; do
    names=$(ls -A "$q/jobs")
    expect_match "queue-write file name in $q" "fspl-$kUuid\\.fspl" "$names"
    expect_same "queue-write keeps the bytes in $q" "blob.$tool" "$q/jobs/$names"
  done
  expect_fail "write.missing.$tool" $tool queue-write -q nonexistent <"blob.$tool"

  section "gen-filename, gen-uuid [$tool]"
  expect_ok "genfn.$tool" $tool gen-filename
  expect_match "gen-filename format [$tool]" "fspl-$kUuid\\.fspl" "$(cat "$T/genfn.$tool.out")"
  expect_ok "genuuid.$tool" $tool gen-uuid
  expect_match "gen-uuid format [$tool]" "$kUuid" "$(cat "$T/genuuid.$tool.out")"
  $tool gen-uuid >"$T/uuid2.$tool"
  [[ "$(cat "$T/uuid2.$tool")" != "$(cat "$T/genuuid.$tool.out")" ]] && pass ||
    fail "gen-uuid repeats itself [$tool]"

  section "sender seqfile [$tool]"
  expect_ok "pgn.new.$tool" $tool prepare-get-next -s "seq.$tool"
  expect_eq "prepare-get-next creates the seqfile at 1 [$tool]" "1 1" \
    "$(cat "$T/pgn.new.$tool.out") $(cat "seq.$tool")"
  [[ -e "seq.$tool.lock" ]] && pass || fail "no seq.$tool.lock next to the seqfile [$tool]"
  $tool prepare -s "seq.$tool" >/dev/null
  expect_eq "prepare increments the seqfile [$tool]" 2 "$(cat "seq.$tool")"
  expect_ok "psn.$tool" $tool prepare-set-next -s "seq.$tool" 41
  expect_eq "prepare-set-next writes '41\\n' [$tool]" 34310a "$(xxd -p "seq.$tool")"
  $tool prepare-nop -s "seq.$tool" >p41
  expect_eq "packet takes the set seq [$tool]" "FSPL_SEQ=41" "$(fs stdin-info <p41 | sed -n 1p)"
  expect_ok "pgn.$tool" $tool prepare-get-next -s "seq.$tool"
  expect_eq "prepare-get-next after a packet [$tool]" 42 "$(cat "$T/pgn.$tool.out")"
  expect_ok "psn.new.$tool" $tool prepare-set-next -s "newseq.$tool" 9
  expect_eq "prepare-set-next creates a seqfile [$tool]" 9 "$(cat "newseq.$tool")"
  mkdir "dash.$tool" && (cd "dash.$tool" && $tool prepare -s - >../pdash.$tool && $tool prepare-fail -s - >/dev/null)
  expect_eq "-s - writes no file [$tool]" "" "$(ls -A "dash.$tool")"
  expect_eq "-s - gives seq 1 [$tool]" "FSPL_SEQ=1" "$(fs stdin-info <"pdash.$tool" | sed -n 1p)"
  printf 'garbage\n' >"bad.$tool"
  expect_fail "prepare.badseq.$tool" $tool prepare -s "bad.$tool"
  expect_fail "pgn.badseq.$tool" $tool prepare-get-next -s "bad.$tool"
  expect_fail "queue-set-next on a missing queue [$tool]" $tool queue-set-next -q nonexistent 3
  expect_fail "queue-get-next on a missing queue [$tool]" $tool queue-get-next -q nonexistent
  expect_fail "queue-get-next on an append-only queue [$tool]" $tool queue-get-next -q "ao.$tool"
done

section "seqfiles cross over"
expect_eq "both tools wrote the same seqfile" "$(cat seq.fs)" "$(cat seq.ss)"
fs queue-set-next -q q.ss 77
expect_ok cross.getnext ss queue-get-next -q q.ss
expect_eq "safespool reads fspl's nextseq" 77 "$(cat "$T/cross.getnext.out")"
ss queue-set-next -q q.fs 78
expect_eq "fspl reads safespool's nextseq" 78 "$(fs queue-get-next -q q.fs)"
echo 78 >want.nextseq
expect_same "nextseq file written by safespool" want.nextseq q.fs/nextseq

e2e_finish

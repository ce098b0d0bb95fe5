#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# What the real fspl does with the packets SafeSpool makes for its own
# features (docs/compatibility.md): never run a consumer on part of a
# stream.
#  - a part of a split job alone: a Fail packet, the job fails; with
#    --on-error delete the part is deleted and the queue moves on, still
#    without running anything;
#  - all parts of a job: several files with one seq, an error;
#  - a superseding packet beside the packet it replaces: two files with
#    one seq, an error; alone: a Fail packet;
#  - a receipt put in a queue: a Fail packet;
#  - fspl's info commands read all of them (the extra metadata key is
#    ignored) and show a Fail packet of the job's seq;
#  - and SafeSpool, like fspl 1.2.4, leaves no process of a --decoder
#    pipeline behind once a job file is done with.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"

if is_fspl_mode; then
  echo "SKIP: needs safespool to make the packets"
  exit 0
fi
cd "$T" || exit 1
mkdir -p parts
cat >consumer <<'SH'
#!/bin/sh
echo "ran seq $FSPL_SEQ" >>"$E2E_T/ran.log"
cat >/dev/null
SH
chmod +x consumer
export E2E_T=$T
head -c 100000 /dev/urandom >payload
ss prepare -s - --zstd -i payload --split 40K --output-dir parts >/dev/null || fail "prepare --split"
mapfile -t parts < <(ls parts/*)
expect_eq "three parts" 3 "${#parts[@]}"
printf 'original' | ss prepare -s - -i - >original.fspl || fail "prepare"
printf 'replacement' | ss prepare --supersedes 1 --supersedes-hash "$(sha256sum original.fspl | cut -c1-64)" \
  -i - >replacement.fspl || fail "prepare --supersedes"
mkdir -p rc
ss queue-init -q rq
printf 'x' | ss prepare -s - -i - >rq/jobs/fspl-1.fspl
ss queue-process -q rq --receipts-dir rc ./consumer 2>/dev/null || fail "receipt run"
receipt=$(ls rc/fspl-receipt-1-* 2>/dev/null | head -n 1)
[[ -n "$receipt" ]] && pass || fail "no receipt made"
: >ran.log

# case NAME ONERROR WANT_RC FILES...: fspl queue-process on a queue of FILES.
case_() {
  local name=$1 onerror=$2 want=$3
  shift 3
  rm -rf "q-$name" && fs queue-init -q "q-$name"
  for f in "$@"; do cp "$f" "q-$name/jobs/fspl-$(basename "$f" .fspl).fspl"; done
  expect_rc "$want" "fspl-$name" fs queue-process -q "q-$name" --on-error "$onerror" "$T/consumer"
}

section "fspl never runs a consumer on a part"
case_ one-part retry 1 "${parts[1]}"
expect_match "one part: fails as a Fail packet" '.*exit status Failure.*' "$(cat "$T/fspl-one-part.err")"
case_ one-part-delete delete 0 "${parts[1]}"
expect_eq "with --on-error delete: the part is deleted, the queue moves on" "2 0" \
  "$(cat q-one-part-delete/nextseq) $(job_count q-one-part-delete)"
case_ all-parts retry 1 "${parts[@]}"
expect_match "all parts: one seq, several files" '.*already seen.*' "$(cat "$T/fspl-all-parts.err")"
case_ all-parts-delete delete 1 "${parts[@]}"

section "fspl never runs a superseding packet"
case_ beside retry 1 original.fspl replacement.fspl
case_ beside-delete delete 1 original.fspl replacement.fspl
case_ alone retry 1 replacement.fspl
expect_match "alone: a Fail packet" '.*exit status Failure.*' "$(cat "$T/fspl-alone.err")"

section "fspl never runs a receipt"
case_ receipt retry 1 "$receipt"
expect_eq "the consumer never ran" "" "$(cat ran.log)"

section "fspl reads their headers: a Fail packet of the job's seq"
fs queue-init -q iq && cp "${parts[0]}" iq/jobs/fspl-part.fspl
expect_eq "queue-info of a part" "FSPL_SEQ=1" "$(fs queue-info -q iq -j 1 | head -n 1)"
expect_eq "stdin-info of a superseding packet" "FSPL_SEQ=1" "$(fs stdin-info <replacement.fspl | head -n 1)"
expect_eq "stdin-payload of a part: a piece of the zstd stream" 28b52ffd \
  "$(fs stdin-payload <"${parts[0]}" | head -c 4 | xxd -p)"

# gone PID: the process is dead within 5 s (a zombie nobody reaps counts).
gone() {
  local i
  for ((i = 0; i < 100; i++)); do
    [[ ! -e /proc/$1 || $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]] && return 0
    sleep 0.05
  done
  return 1
}

section "SafeSpool, like fspl 1.2.4: a --decoder pipeline leaves nothing behind"
ss queue-init -q dq
printf 'x' | ss prepare -s - -i - >dq/jobs/fspl-1.fspl
run decoder ss queue-process -q dq -d 'cat; sleep 30 & echo $! >"$E2E_T/decoder-child.pid"' true
expect_eq "the job ran" 0 "$RC"
child=$(cat decoder-child.pid 2>/dev/null)
if [[ -n "$child" ]] && gone "$child"; then pass; else
  fail "the decoder's child $child survived the job"
  [[ -n "$child" ]] && kill "$child" 2>/dev/null
fi

e2e_finish

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# A job split across media (prepare --split), with the real gpg and zstd:
# compressed, signed by the sender and encrypted to the receiver, cut into
# parts carried on two "sticks" imported in turn;
#  - with a part missing, nothing runs: queue-status and queue-ls name the
#    missing parts, the pass says what it waits for, the ledger is empty;
#  - a copy of a part is a twin; a damaged copy is set aside;
#  - once all parts are in, one consumer gets the whole payload, once, under
#    --require-signer; one ledger record, the parts deleted together, a part
#    imported again later is "already processed";
#  - a part changed after it was checked in the queue, or a split job signed
#    by another key, never reaches the consumer's EOF.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"

if is_fspl_mode; then
  echo "SKIP: needs safespool (prepare --split), not fspl"
  exit 0
fi
export GNUPGHOME=$T/gnupg
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill gpg-agent 2>/dev/null; e2e_cleanup' EXIT
for who in sender intruder receiver; do
  gpg --batch --passphrase '' --quick-gen-key "$who@example.org" future-default default never 2>/dev/null ||
    fail "cannot make key $who"
done
fpr() { gpg --with-colons --list-keys "<$1@example.org>" | awk -F: '/^fpr/ {print $10; exit}'; }
SENDER=$(fpr sender)
RECEIVER=$(fpr receiver)
make_consumers
: >"$LOG"
cd "$T" || exit 1
head -c 1500000 /dev/urandom >payload
want=$(sha256sum <payload | cut -c1-16)
mkdir -p out stick1 stick2 stick3
process() { ss queue-process -q "$T/q" --require-signer "$SENDER" "$T/bin/record"; }

section "sender: one job in parts of at most 400K"
run prep ss prepare -s seq --zstd 1 --encrypt-to "$RECEIVER" --sign-with "$SENDER" \
  --split 400K --output-dir out -i payload -- x
expect_eq "prepare: exit status" 0 "$RC"
mapfile -t parts <prep.out
expect_eq "four parts, named as a set" 4 "$(grep -c -- '-part-[1-4]-of-4\.fspl$' prep.out)"
big=0
for p in "${parts[@]}"; do (($(stat -c %s "$p") <= 409600)) || big=1; done
expect_eq "each part at most 400 KiB" 0 "$big"
expect_eq "one sequence number consumed" 2 "$(ss prepare-get-next -s seq)"
cp "${parts[0]}" "${parts[1]}" stick1/
cp "${parts[2]}" "${parts[3]}" stick2/
cp "${parts[1]}" stick3/ # a part carried twice

section "stick 1: parts 1 and 2; parts 3 and 4 missing"
ss queue-init -q "$T/q"
run import1 ss queue-import -q "$T/q" stick1
expect_eq "import 1" "imported 2, already queued 0, already processed 0, left for an operator 0, failed 0, ignored 0" \
  "$(cat import1.out)"
run status1 ss queue-status -q "$T/q"
expect_eq "queue-status: waiting (exit 2)" 2 "$RC"
expect_match "queue-status names the missing parts" '.*job 1: parts 3, 4 of 4 missing.*' "$(tr '\n' ' ' <status1.out)"
run ls1 ss queue-ls -q "$T/q"
expect_eq "queue-ls names them too" "job 1: parts 3, 4 of 4 missing" "$(tail -n 1 ls1.out)"
run pass1 process
expect_eq "pass: exit 0, waiting" 0 "$RC"
expect_match "the pass says what it waits for" '.*waiting: job 1: parts 3, 4 of 4 missing.*' "$(tr '\n' ' ' <pass1.err)"
expect_eq "nothing ran" "" "$(cat "$LOG")"
expect_eq "the ledger is empty" "" "$(ss queue-ledger -q "$T/q" --json | jq -c '.records[]' 2>/dev/null)"

section "twins and damaged copies of a part"
cp "${parts[0]}" "$T/q/jobs/fspl-twin.fspl"
cp "${parts[1]}" bad.fspl
printf '\x55' | dd of=bad.fspl bs=1 seek=200000 conv=notrunc 2>/dev/null
cp bad.fspl "$T/q/jobs/fspl-damaged.fspl"

section "stick 2: parts 3 and 4; the job runs once, whole, verified"
run import2 ss queue-import -q "$T/q" stick2
expect_eq "import 2" "imported 2, already queued 0, already processed 0, left for an operator 0, failed 0, ignored 0" \
  "$(cat import2.out)"
run pass2 process
expect_eq "pass: exit status" 0 "$RC"
show_err pass2
expect_eq "one consumer, the whole payload" "seq=1 sum=$want args=" "$(cat "$LOG")"
expect_eq "the twin and the good parts are gone; the damaged copy stays" "fspl-damaged.fspl" "$(ls q/jobs)"
ledger=$(ss queue-ledger -q "$T/q" --json | jq -r '.records[] | "\(.seq) \(.result) \(.signer)"' | tr '\n' ' ')
expect_eq "one job in the ledger, its signer" "1 started null 1 success $SENDER " "$ledger"
run import3 ss queue-import -q "$T/q" stick3
expect_eq "a part carried again is already processed" \
  "imported 0, already queued 0, already processed 1, left for an operator 0, failed 0, ignored 0" "$(cat import3.out)"
run pass3 ss queue-process -q "$T/q" --delete-stale "$T/bin/record"
expect_eq "the damaged copy, now stale, removed on request" "" "$(ls q/jobs)"

section "a changed part: the job fails before its bytes reach the consumer"
# The consumer notes that it started, then reads to the end.
cat >started <<'SH'
#!/bin/sh
echo "started $FSPL_SEQ" >>"$LOG"
cat >/dev/null
echo "ended $FSPL_SEQ" >>"$LOG"
SH
chmod +x started
rm -rf out && mkdir out
ss prepare -s seq --zstd --encrypt-to "$RECEIVER" --sign-with "$SENDER" --split 400K --output-dir out \
  -i payload >/dev/null || fail "prepare 2"
ss queue-import -q "$T/q" out >/dev/null
# part N's file in jobs/, from queue-ls --json
part() { ss queue-ls -q "$T/q" --json | jq -r ".jobs[] | select(.part.index == $1) | .filename"; }
# damage FILE: flips a byte near its end.
damage() {
  local size
  size=$(stat -c %s "$1")
  printf '\x55' | dd of="$1" bs=1 seek=$((size - 10)) conv=notrunc 2>/dev/null
}
# The first part: its head is read for the job's header, the rest only
# checked; the check comes before the consumer starts. Without a policy:
# under one, a stream that does not check out is rejected as untrusted.
cp "$T/q/jobs/$(part 1)" part1.good
damage "$T/q/jobs/$(part 1)"
: >"$LOG"
run pass4 ss queue-process -q "$T/q" "$T/started"
expect_eq "first part: the job failed (exit 65)" 65 "$RC"
expect_match "the part is named" ".*part 1 of 4.*does not match its SHA-256.*" "$(tr '\n' ' ' <pass4.err)"
expect_eq "first part: the consumer never started" "" "$(cat "$LOG")"
cp part1.good "$T/q/jobs/$(part 1)"
damage "$T/q/jobs/$(part 3)"
run pass5 ss queue-process -q "$T/q" "$T/started"
expect_eq "third part: the job failed (exit 65)" 65 "$RC"
expect_eq "third part: the consumer started, never saw the end" "started 2" "$(cat "$LOG")"
rm -f "$T"/q/jobs/*
: >"$LOG"

section "a split job signed by another key is rejected before the consumer starts"
ss prepare -s seq --zstd --encrypt-to "$RECEIVER" --sign-with "$(fpr intruder)" --split 400K \
  --output-dir out -i payload >/dev/null || fail "prepare 3"
ss queue-set-next -q "$T/q" 3
ss queue-import -q "$T/q" out >/dev/null
rm -f started
run pass6 process
expect_eq "pass: blocked (exit 3)" 3 "$RC"
expect_match "rejected as untrusted" ".*not trusted.*" "$(tr '\n' ' ' <pass6.err)"
expect_eq "the consumer never saw the end" "" "$(cat "$LOG")"

e2e_finish

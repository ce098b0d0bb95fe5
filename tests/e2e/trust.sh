#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# What a signer policy promises and what the queue writes down, tried the
# way an attacker with the USB stick would, with the real gpg and zstd:
# untrusted packets never count as done however the consumer exits, are
# refused before their consumer starts where they say who signed them,
# never delete, outrank or block a genuine packet; the ledger, not a
# record or a cache, decides what may be deleted.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"

export GNUPGHOME=$T/gnupg
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill gpg-agent 2>/dev/null; e2e_cleanup' EXIT
for who in sender intruder receiver; do
  gpg --batch --passphrase '' --quick-gen-key "$who@example.org" future-default default never \
    2>/dev/null || fail "cannot make key $who"
done
fpr() { gpg --with-colons --list-keys "<$1@example.org>" | awk -F: '/^fpr/ {print $10; exit}'; }
SENDER=$(fpr sender)
RECEIVER=$(fpr receiver)
INTRUDER=$(fpr intruder)
make_consumers
head -c 300000 /dev/urandom >"$T/payload"
want=$(sha256sum <"$T/payload" | cut -c1-16)
# A consumer that notes that it started, then does what $E2E_DO says.
cat >"$T/bin/starter" <<'SH'
#!/bin/sh
echo "started seq=$FSPL_SEQ" >>"$LOG"
eval "$E2E_DO"
SH
chmod +x "$T/bin/starter"

# packet SEQ OUT ENCODE...: a packet with the payload and sequence SEQ.
packet() {
  local seq=$1 out=$2
  shift 2
  rm -f "$T/s" "$T/s.lock"
  ss prepare-set-next -s "$T/s" "$seq"
  ss prepare -s "$T/s" "$@" -i "$T/payload" >"$out" || fail "prepare $out"
}
fresh() {
  rm -rf "$T/q"
  ss queue-init -q "$T/q"
  : >"$LOG"
}
policy=(--require-signer "$SENDER")

section "a consumer that stops early never makes an untrusted packet succeed"
# bzip2 inside the encryption hides the one-pass signature from the early
# look: only the end of the stream can tell.
ss prepare -s - -i "$T/payload" >"$T/p1"
gpg --batch -q -u "$INTRUDER" -r "$RECEIVER" --compress-algo bzip2 -s -e -o "$T/late-intruder" "$T/p1"
gpg --batch -q -r "$RECEIVER" --compress-algo bzip2 -e -o "$T/late-unsigned" "$T/p1"
gpg --batch -q -u "$SENDER" -r "$RECEIVER" --compress-algo bzip2 -s -e -o "$T/late-good" "$T/p1"
for kind in late-intruder late-unsigned; do
  for early in true 'head -c 100 >/dev/null' "head -c $(stat -c %s "$T/payload") >/dev/null"; do
    fresh
    cp "$T/$kind" "$T/q/jobs/fspl-1.fspl"
    E2E_DO=$early ss queue-process -q "$T/q" "${policy[@]}" "$T/bin/starter" 2>"$T/early.err"
    rc=$?
    expect_eq "$kind, consumer '$early': rejected" "3 1 1" \
      "$rc $(cat "$T/q/nextseq") $(job_count "$T/q")"
    expect_match "$kind, consumer '$early': the ledger says rejected" ".*	rejected	.*" \
      "$(cat "$T/q/.safespool-ledger")"
    E2E_DO=$early ss stdin-process "${policy[@]}" "$T/bin/starter" <"$T/$kind" 2>/dev/null
    expect_eq "$kind, consumer '$early': stdin-process fails" 65 "$?"
  done
done
for early in true 'head -c 100 >/dev/null'; do
  fresh
  cp "$T/late-good" "$T/q/jobs/fspl-1.fspl"
  E2E_DO=$early ss queue-process -q "$T/q" "${policy[@]}" "$T/bin/starter" || fail "trusted, '$early'"
  expect_eq "trusted, consumer '$early': done" "2 0" "$(cat "$T/q/nextseq") $(job_count "$T/q")"
done

section "refused before the first byte where the packet says who signed it"
packet 1 "$T/intruder" --zstd --encrypt-to "$RECEIVER" --sign-with "$INTRUDER"
packet 1 "$T/unsigned" --zstd --encrypt-to "$RECEIVER"
packet 1 "$T/signed-intruder" --sign-with "$INTRUDER"
ss prepare -s - -i "$T/payload" | gpg --batch -q --store -z 6 >"$T/stored"
for kind in intruder unsigned signed-intruder stored; do
  fresh
  cp "$T/$kind" "$T/q/jobs/fspl-1.fspl"
  E2E_DO='cat >/dev/null' ss queue-process -q "$T/q" "${policy[@]}" "$T/bin/starter" 2>"$T/$kind.err"
  rc=$?
  expect_eq "$kind: blocked, not run" 3 "$rc"
  expect_eq "$kind: the consumer never started" "" "$(cat "$LOG")"
  expect_eq "$kind: kept, nextseq 1" "fspl-1.fspl 1" "$(ls "$T/q/jobs") $(cat "$T/q/nextseq")"
  expect_match "$kind: said why" ".*not trusted: .*" "$(tr '\n' ' ' <"$T/$kind.err")"
  expect_match "$kind: in the ledger" ".*	rejected	.*" "$(cat "$T/q/.safespool-ledger")"
done

section "a compressed-only OpenPGP message runs without a policy"
fresh
cp "$T/stored" "$T/q/jobs/fspl-1.fspl"
ss queue-process -q "$T/q" "$T/bin/record" || fail "gpg --store packet without a policy"
expect_eq "stored: ran with its payload" "seq=1 sum=$want args=" "$(cat "$LOG")"

section "an unsigned copy never deletes, outranks or blocks the signed original"
packet 1 "$T/signed" --sign-with "$SENDER"
gpg --batch -q -d "$T/signed" 2>/dev/null >"$T/signed-inner"  # the same decoded stream, unsigned
for on_error in retry delete; do
  fresh
  cp "$T/signed-inner" "$T/q/jobs/fspl-0-copy.fspl"  # sorts first
  cp "$T/signed" "$T/q/jobs/fspl-1-genuine.fspl"
  ss queue-process -q "$T/q" "${policy[@]}" --on-error "$on_error" "$T/bin/record" \
    2>"$T/twin.err"
  expect_eq "unsigned copy, --on-error $on_error: the genuine packet ran" "seq=1 sum=$want args=" \
    "$(cat "$LOG")"
  expect_eq "unsigned copy, --on-error $on_error: nextseq 2" 2 "$(cat "$T/q/nextseq")"
done
fresh
printf 'a different payload' | ss prepare -s - -i - >"$T/q/jobs/fspl-0-impostor.fspl"
cp "$T/signed" "$T/q/jobs/fspl-1-genuine.fspl"
ss queue-process -q "$T/q" "${policy[@]}" "$T/bin/record" 2>/dev/null
expect_eq "a different unsigned packet with seq 1: the genuine one ran" "seq=1 sum=$want args=" \
  "$(cat "$LOG")"

section "a header-level error in an unverified packet is its rejection"
python3 - "$T/nul.fspl" <<'PY'
import struct, sys, zlib
def b(s): return bytes([0xdc, 0, len(s)]) + bytes(s)
meta = (b"\x83\xa3seq\x01\xa5ctime\x92\x00\x00\xa8cmd_type\x81\xa7Command\x82"
        b"\xa6params\x90\xa3env\x91\x92" + b(b"K") + b(b"a\x00b"))
pre = b"*FILESPOOLER" + struct.pack(">HQI", 1, len(meta), zlib.crc32(meta))
open(sys.argv[1], "wb").write(pre + struct.pack(">I", zlib.crc32(pre)) + meta)
PY
# bzip2 again: the early look cannot tell, so the bad header comes first.
gpg --batch -q -e -r "$RECEIVER" --compress-algo bzip2 -o "$T/nul.gpg" "$T/nul.fspl"
for on_error in retry delete; do
  fresh
  cp "$T/nul.gpg" "$T/q/jobs/fspl-1.fspl"
  for pass in 1 2; do
    ss queue-process -q "$T/q" "${policy[@]}" --on-error "$on_error" "$T/bin/record" 2>/dev/null
    rc=$?
    [[ $rc != 65 ]] && pass || fail "NUL in env, --on-error $on_error, pass $pass: exit 65"
  done
  [[ $on_error == delete ]] && expect_eq "NUL in env: deleted, nextseq 1" "0 1" \
    "$(job_count "$T/q") $(cat "$T/q/nextseq")"
done

section "--verify-first: a bomb is refused before it is spooled; --max-payload bounds it"
fresh
head -c 400M /dev/zero | ss prepare -s - -i - | zstd -q -19 -c |
  gpg --batch -q -e -r "$RECEIVER" --compress-algo none >"$T/q/jobs/fspl-1.fspl"
ss queue-process -q "$T/q" "${policy[@]}" --verify-first "$T/bin/record" 2>"$T/bomb.err"
expect_eq "unsigned encrypted bomb: blocked" 3 "$?"
expect_eq "unsigned encrypted bomb: nothing ran" "" "$(cat "$LOG")"
expect_match "unsigned encrypted bomb: refused before spooling" ".*announces none.*" \
  "$(tr '\n' ' ' <"$T/bomb.err")"
fresh
packet 1 "$T/good" --zstd --encrypt-to "$RECEIVER" --sign-with "$SENDER"
cp "$T/good" "$T/q/jobs/fspl-1.fspl"
ss queue-process -q "$T/q" "${policy[@]}" --verify-first --max-payload 64K "$T/bin/record" \
  2>"$T/max.err"
expect_eq "over --max-payload: not run" "" "$(cat "$LOG")"
expect_match "over --max-payload: said why" ".*larger than 65536 bytes.*" "$(tr '\n' ' ' <"$T/max.err")"
expect_eq "over --max-payload: kept, nextseq 1" "1 1" "$(job_count "$T/q") $(cat "$T/q/nextseq")"

section "--verify-first stops on SIGTERM, even inside a stalled decoder"
fresh
cp "$T/p1" "$T/q/jobs/fspl-1.fspl"
# The decoder hands over the packet, then stalls for a minute before its
# end: without the signal, --verify-first would wait for it.
rm -f "$T/decoding"
"$SAFESPOOL" queue-process -q "$T/q" --verify-first -d "touch '$T/decoding'; cat; sleep 60" \
  "$T/bin/record" 2>"$T/term.err" &
pid=$!
bg_started "$pid"
wait_for_file "$T/decoding" 20 || fail "the decoder did not start"
sleep 0.3  # into the spooling
kill -TERM "$pid"
timeout 10 tail --pid="$pid" -f /dev/null
expect_eq "stopped long before the decoder's end" "" "$(kill -0 "$pid" 2>/dev/null && echo running)"
wait "$pid"
expect_eq "--verify-first on SIGTERM: exit 130" 130 "$?"
bg_done "$pid"
expect_eq "--verify-first on SIGTERM: nothing ran, nothing moved" "1 1" \
  "$(job_count "$T/q") $(cat "$T/q/nextseq")$(cat "$LOG")"

section "the header index never makes a present job invisible"
fresh
packet 2 "$T/p2"
cp "$T/p1" "$T/q/jobs/fspl-upload.fspl"
ss queue-process -q "$T/q" --never-delete "$T/bin/record" || fail "seq 1"
sleep 3.1  # the index entry is no longer racy (whole seconds, 2 s window)
ss queue-ls -q "$T/q" >/dev/null
cat "$T/p2" >"$T/q/jobs/fspl-upload.fspl"  # rewritten in place: same name, same inode
: >"$LOG"
ss queue-process -q "$T/q" "$T/bin/record" 2>"$T/inplace.err" || fail "in place: exit $?"
expect_eq "rewritten in place: seq 2 ran" "seq=2 sum=$want args=" "$(cat "$LOG")"

section "a completion record never deletes a job that did not complete"
fresh
cp "$T/p1" "$T/q/jobs/fspl-1.fspl"
cat >"$T/bin/once" <<'SH'
#!/bin/sh
cat >/dev/null
[ ! -e "$E2E_T/ran" ] || exit 1
touch "$E2E_T/ran"
SH
chmod +x "$T/bin/once"
rm -f "$T/ran"
# Find which rename moves nextseq in a copy of the queue (renameat2 where
# it is an exchange, rename elsewhere), then kill the processor exactly
# there.
cp -a "$T/q" "$T/q-dry"
strace -f -qq -e signal=none -e trace=rename,renameat2 -o "$T/renames" \
  "$SAFESPOOL" queue-process -q "$T/q-dry" true
call=$(grep -m1 -oE '(rename|renameat2)\(.*nextseq"' "$T/renames" | cut -d'(' -f1)
n=$(grep -E " $call\(" "$T/renames" | grep -n 'nextseq"' | head -1 | cut -d: -f1)
[[ -n $n ]] || fail "no rename of nextseq seen"
strace -f -qq -e signal=none -o /dev/null -e "trace=$call" -e "inject=$call:signal=SIGKILL:when=$n" \
  "$SAFESPOOL" queue-process -q "$T/q" "$T/bin/once" 2>/dev/null
expect_eq "killed at the rename: job 1 ran, nextseq still 1" "yes 1" \
  "$([[ -e $T/ran ]] && echo yes) $(cat "$T/q/nextseq")"
ss queue-process -q "$T/q" "$T/bin/once" 2>/dev/null
expect_eq "the rerun failed" 1 "$?"
ss queue-set-next -q "$T/q" 2
ss queue-process -q "$T/q" "$T/bin/record" 2>"$T/set-next.err"
expect_eq "skipped after its failed rerun: the file is kept" 1 "$(job_count "$T/q")"

section "queue-import removes a source only when the ledger holds its hash"
fresh
mkdir -p "$T/usb"
ss prepare-set-next -s "$T/restored" 3
ss prepare -s "$T/restored" -i "$T/payload" >"$T/usb/fspl-never-ran.fspl"
cp "$T/p1" "$T/q/jobs/fspl-1.fspl"
ss queue-process -q "$T/q" "$T/bin/record" || fail "seq 1"
ss queue-set-next -q "$T/q" 5
cp "$T/p1" "$T/usb/fspl-ran.fspl"
ss queue-import -q "$T/q" "$T/usb" >"$T/import.out" 2>"$T/import.err"
expect_eq "the packet that ran: removed from the stick" no \
  "$([[ -e $T/usb/fspl-ran.fspl ]] && echo yes || echo no)"
expect_eq "the packet that never ran: kept on the stick" yes \
  "$([[ -e $T/usb/fspl-never-ran.fspl ]] && echo yes || echo no)"
expect_match "and said why" ".*fspl-never-ran.fspl.*no record that it ran.*" \
  "$(tr '\n' ' ' <"$T/import.err")"

section "queue-ledger shows what ran, as text and JSON"
ss queue-ledger -q "$T/q" >"$T/ledger.txt" || fail "queue-ledger"
expect_match "text: the processed packet" ".*success .*fspl-1.fspl.*" "$(tr '\n' ' ' <"$T/ledger.txt")"
ss queue-ledger -q "$T/q" --json >"$T/ledger.json" || fail "queue-ledger --json"
python3 - "$E2E_LIB_DIR/../../docs/schemas/queue-ledger.schema.json" "$T/ledger.json" <<'PY' ||
import json, sys, jsonschema
jsonschema.validate(json.load(open(sys.argv[2])), json.load(open(sys.argv[1])))
PY
  fail "queue-ledger --json does not match its schema"

section "two processors never trip over each other's status; a dead writer's temp file goes"
fresh
for i in 1 2; do
  (end=$((SECONDS + 3)); while ((SECONDS < end)); do
    "$SAFESPOOL" queue-process -q "$T/q" --metrics-file "$T/q.prom" true 2>>"$T/race.$i"; done) &
  bg_started $!
done
wait
expect_eq "no warnings from two processors at once" "" "$(cat "$T/race.1" "$T/race.2")"
mkfifo "$T/slow-stdin"
("$SAFESPOOL" queue-write -q "$T/q" <"$T/slow-stdin") &
writer=$!
exec 7>"$T/slow-stdin"
printf 'partial' >&7
for ((i = 0; i < 200; ++i)); do # until it has made its temporary file (10 s at most)
  compgen -G "$T/q/jobs/tmp-*.tmp" >/dev/null && break
  sleep 0.05
done
kill -KILL "$writer"
wait "$writer" 2>/dev/null
exec 7>&-
temp=$(cd "$T/q/jobs" && ls tmp-*.tmp 2>/dev/null)
[[ -n $temp ]] || fail "the killed queue-write left no temporary file to test with"
ss queue-status -q "$T/q" >"$T/temp.status"
expect_match "status reports the abandoned temporary file" ".*abandoned temporary file: jobs/$temp.*" \
  "$(tr '\n' ' ' <"$T/temp.status")"
touch -d '-2 minutes' "$T/q/jobs/$temp"
ss queue-process -q "$T/q" true 2>/dev/null
expect_eq "queue-process removed it" "" "$(cd "$T/q/jobs" && ls tmp-*.tmp 2>/dev/null)"

section "prepare checks every option before it takes a sequence number"
rm -f "$T/s" "$T/s.lock"
ss prepare-set-next -s "$T/s" 7
echo x | "$SAFESPOOL" prepare -s "$T/s" --zstd 23 -i - >/dev/null 2>&1
expect_eq "--zstd 23: exit" 64 "$?"
expect_eq "--zstd 23: sequence not consumed" 7 "$(ss prepare-get-next -s "$T/s")"

section "the last sequence number runs"
fresh
ss queue-set-next -q "$T/q" 18446744073709551615
python3 - "$T/q/jobs/fspl-max.fspl" "$T/payload" <<'PY'
import struct, sys, zlib
meta = (b"\x83\xa3seq\xcf" + struct.pack(">Q", 2**64 - 1) + b"\xa5ctime\x92\x00\x00"
        b"\xa8cmd_type\x81\xa7Command\x82\xa6params\x90\xa3env\x90")
pre = b"*FILESPOOLER" + struct.pack(">HQI", 1, len(meta), zlib.crc32(meta))
out = pre + struct.pack(">I", zlib.crc32(pre)) + meta + open(sys.argv[2], "rb").read()
open(sys.argv[1], "wb").write(out)
PY
ss queue-process -q "$T/q" "$T/bin/record" 2>"$T/maxseq.err"
expect_eq "seq 2^64-1 ran" "seq=18446744073709551615 sum=$want args=" "$(cat "$LOG")"
ss queue-status -q "$T/q" >"$T/max.status"
expect_eq "then the queue says it has ended" 3 "$?"
expect_match "exhausted" ".*blocked \(exhausted\).*" "$(tr '\n' ' ' <"$T/max.status")"

section "an undecryptable packet blocks the queue, named with its key"
fresh
packet 1 "$T/for-receiver" --encrypt-to "$RECEIVER"
cp "$T/for-receiver" "$T/q/jobs/fspl-1.fspl"
GNUPGHOME=$T/empty-home
mkdir -m 700 "$GNUPGHOME"
ss queue-process -q "$T/q" "$T/bin/record" 2>"$T/nokey.err"
expect_eq "no secret key: blocked" 3 "$?"
ss queue-status -q "$T/q" >"$T/nokey.status"
expect_eq "status: blocked" 3 "$?"
recipient=$(gpg --homedir "$T/gnupg" --list-packets "$T/for-receiver" 2>/dev/null |
  sed -n 's/.*keyid \([0-9A-F]\{16\}\).*/\1/p' | head -1)
expect_match "status names the key it needs" ".*encrypted to $recipient.*" \
  "$(tr '\n' ' ' <"$T/nokey.status")"
gpgconf --kill gpg-agent 2>/dev/null
GNUPGHOME=$T/gnupg

e2e_finish

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Receipts back to the sender, with the real gpg: prepare --outbox keeps a
# byte-identical copy of what it writes; queue-process --receipts-dir
# writes a receipt per finished job, signed by the receiver and encrypted to
# the sender; outbox-status reads them back (acked, failed, pending, since
# when; --json), and under --require-signer ignores receipts the receiver
# did not sign; outbox-prune deletes acked packets only; a gap the receiver
# waited on for longer than --receipt-wait-after comes back as a waiting
# receipt, once; a receipt key that cannot be used stops queue-process
# before any job runs.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"

if is_fspl_mode; then
  echo "SKIP: needs safespool (receipts), not fspl"
  exit 0
fi
export GNUPGHOME=$T/gnupg
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill gpg-agent 2>/dev/null; e2e_cleanup' EXIT
for who in sender receiver; do
  gpg --batch --passphrase '' --quick-gen-key "$who@example.org" future-default default never 2>/dev/null ||
    fail "cannot make key $who"
done
fpr() { gpg --with-colons --list-keys "<$1@example.org>" | awk -F: '/^fpr/ {print $10; exit}'; }
SENDER=$(fpr sender)
RECEIVER=$(fpr receiver)
cd "$T" || exit 1
mkdir -p outbox stick receipts
cat >consumer <<'SH'
#!/bin/sh
cat >/dev/null
[ "$FSPL_SEQ" != 2 ] && exit 0
echo "the consumer's own words" >>"$SAFESPOOL_RECEIPT_NOTE"
echo "seq 2 cannot be received" >&2
exit 4
SH
chmod +x consumer
receipts_opts=(--receipts-dir receipts --sign-with "$RECEIVER" --encrypt-to "$SENDER")
status() { ss outbox-status --outbox outbox --receipts receipts --require-signer "$RECEIVER" "$@"; }

section "sender: packets on the stick, copies in the outbox"
for n in 1 2 3 4; do
  printf 'payload %s' "$n" | ss prepare -s seq --zstd --outbox outbox -i - >"stick/fspl-$n.fspl" ||
    fail "prepare $n"
done
for n in 1 2 3 4; do
  expect_same "outbox copy $n is byte-identical" "stick/fspl-$n.fspl" "$(ls outbox/fspl-"$n"-*.fspl)"
done
run none status
expect_eq "before any receipt: all pending" "pending pending pending pending" \
  "$(awk '{print $1}' none.out | tr '\n' ' ' | sed 's/ $//')"

section "receiver: 1 and 2 run (2 fails), 4 waits for 3"
ss queue-init -q "$T/q"
cp stick/fspl-1.fspl stick/fspl-2.fspl stick/fspl-4.fspl "$T/q/jobs/"
run bad ss queue-process -q "$T/q" --receipts-dir receipts --sign-with nobody@example.org ./consumer
expect_eq "an unusable receipt key: exit 78 before any job" "78 0" "$RC $(ls receipts | wc -l)"
expect_eq "nothing ran" 1 "$(ss queue-get-next -q "$T/q")"
run pass1 ss queue-process -q "$T/q" "${receipts_opts[@]}" ./consumer
expect_eq "pass 1: job 2 failed (exit 1)" 1 "$RC"
expect_eq "two receipts" 2 "$(ls receipts | wc -l)"
first=$(ls receipts/* | head -n 1)
expect_eq "encrypted (to one key, the sender's)" 1 \
  "$(gpg --batch --list-packets "$first" 2>/dev/null | grep -c '^:pubkey enc packet:')"
expect_eq "signed by the receiver" "SAFESPOOL_SIGNER=$RECEIVER SAFESPOOL_SIGNER_TRUSTED=yes" \
  "$(ss stdin-info --require-signer "$RECEIVER" <"$first" | grep '^SAFESPOOL_SIGNER' | tr '\n' ' ' | sed 's/ $//')"

section "sender: the receipts come back"
run st1 status
expect_eq "outbox-status: exit 1 (a packet failed)" 1 "$RC"
expect_eq "states" "acked failed pending pending" "$(awk '{print $1}' st1.out | tr '\n' ' ' | sed 's/ $//')"
expect_match "failed line" '^failed +seq 2 +since [0-9T:-]+Z +fspl-2-.*failure, exit 4: exit status 4$' \
  "$(sed -n 2p st1.out)"
status --json >st1.json
expect_eq "JSON: the failure's note" "the consumer's own words" \
  "$(jq -r '.packets[1].receipt.note' st1.json | head -n 1)"
expect_eq "JSON: who received it" "$T/q" "$(jq -r '.packets[0].receipt.queue' st1.json)"
expect_eq "JSON: the end of the consumer's stderr" "seq 2 cannot be received" \
  "$(jq -r '.packets[1].receipt.stderr_tail' st1.json)"

section "--require-signer: a receipt the receiver did not sign is not used"
printf '{"version": 1, "queue": "x", "seq": 3, "sha256": "%s", "result": "success", "time": 1}' \
  "$(sha256sum outbox/fspl-3-*.fspl | cut -c1-64)" >forged.json
python3 - "$T/forged.json" "$T/receipts/fspl-receipt-3-success-forged.fspl" <<'PY'
import struct, sys, zlib
def s(t): b = t.encode(); return bytes([0xa0 | len(b)]) + b
meta = (b"\x84" + s("seq") + b"\x03" + s("ctime") + b"\x92\x01\x00" + s("cmd_type") + s("Fail")
        + s("safespool") + b"\x82" + s("v") + b"\x01" + s("receipt") + b"\x01")
pre = b"*FILESPOOLER" + struct.pack(">HQI", 1, len(meta), zlib.crc32(meta))
open(sys.argv[2], "wb").write(pre + struct.pack(">I", zlib.crc32(pre)) + meta + open(sys.argv[1], "rb").read())
PY
run st2 status
expect_eq "the forged receipt is ignored: 3 stays pending" "pending" "$(awk '$3 == 3 {print $1}' st2.out)"
expect_match "and named on stderr" '.*fspl-receipt-3-success-forged.fspl.*not trusted.*' "$(tr '\n' ' ' <st2.err)"
run st3 ss outbox-status --outbox outbox --receipts receipts
expect_eq "without the policy it would count" "acked" "$(awk '$3 == 3 {print $1}' st3.out)"
rm receipts/fspl-receipt-3-success-forged.fspl

section "a gap waited on for long: a waiting receipt, once"
ss queue-set-next -q "$T/q" 3
sleep 2 # the oldest waiting packet (4) arrived more than 1 s ago
run pass2 ss queue-process -q "$T/q" "${receipts_opts[@]}" --receipt-wait-after 1s ./consumer
expect_eq "pass 2: exit 0, waiting" 0 "$RC"
expect_eq "one waiting receipt" 1 "$(ls receipts | grep -c '^fspl-receipt-3-waiting-')"
run pass3 ss queue-process -q "$T/q" "${receipts_opts[@]}" --receipt-wait-after 1s ./consumer
expect_eq "not twice while it is there" 1 "$(ls receipts | grep -c '^fspl-receipt-3-waiting-')"
run st4 status
expect_match "outbox-status names the gap" ".*waits for 3 since .*" "$(tr '\n' ' ' <st4.out)"

section "3 arrives: everything settles; prune deletes acked packets only"
cp stick/fspl-3.fspl "$T/q/jobs/"
run pass4 ss queue-process -q "$T/q" "${receipts_opts[@]}" ./consumer
expect_eq "pass 4: exit status" 0 "$RC"
run st5 status
expect_eq "states" "acked failed acked acked" "$(awk '{print $1}' st5.out | tr '\n' ' ' | sed 's/ $//')"
expect_eq "the waiting receipt is answered" "" "$(grep 'waits for' st5.out)"
run prune ss outbox-prune --outbox outbox --receipts receipts --require-signer "$RECEIVER" --json
expect_eq "prune: exit 1 (a packet failed and stays)" 1 "$RC"
expect_eq "pruned" 3 "$(jq '.pruned | length' prune.out)"
expect_eq "only the failed packet is left" "fspl-2" "$(ls outbox | cut -d- -f1-2)"

e2e_finish

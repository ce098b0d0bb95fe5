# SPDX-License-Identifier: GPL-3.0-or-later
# Sender encoding and the receiver's signer policy, with real gpg and zstd:
# round trips both ways, and every kind of untrusted packet rejected with
# the consumer never seeing EOF and the packet kept (or handled per
# --on-error); --verify-first starts the consumer only after verification.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"

export GNUPGHOME=$T/gnupg
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill gpg-agent 2>/dev/null; e2e_cleanup' EXIT
for who in sender intruder receiver; do
  gpg --batch --passphrase '' --quick-gen-key "$who@example.org" default default never 2>/dev/null ||
    fail "cannot make key $who"
done
fpr() { gpg --with-colons --list-keys "<$1@example.org>" | awk -F: '/^fpr/ {print $10; exit}'; }
SENDER=$(fpr sender)
RECEIVER=$(fpr receiver)
printf '%s\n' "# trusted senders" "$SENDER" > "$T/trusted"

# lib.sh's `record` consumer reads everything and logs "seq=N sum=H args="
# only once it has seen EOF; RUNLOG is that log.
make_consumers
RUNLOG=$LOG
: > "$RUNLOG"
head -c 300000 /dev/urandom > "$T/payload"
want=$(sha256sum < "$T/payload" | cut -c1-16)

section "round trip: safespool encodes, the gpg and zstd CLIs decode"
ss prepare -s - --zstd --encrypt-to "$RECEIVER" --sign-with "$SENDER" -i "$T/payload" > "$T/p.gpg" || fail "prepare"
gpg --batch --status-fd 3 -d "$T/p.gpg" 3> "$T/status" 2>/dev/null | zstd -dc > "$T/p.plain" || fail "gpg | zstd"
expect_match "gpg sees the sender's signature" ".*VALIDSIG $SENDER.*" "$(tr '\n' ' ' < "$T/status")"
expect_eq "payload through the CLIs" "$want" "$(ss stdin-payload < "$T/p.plain" | sha256sum | cut -c1-16)"
expect_eq "fspl reads it with a decoder" "$want" \
  "$(mkdir -p "$T/fq/jobs" && cp "$T/p.gpg" "$T/fq/jobs/fspl-1.fspl" && fs queue-payload -q "$T/fq" -j 1 -d 'gpg -q -d 2>/dev/null | zstdcat' | sha256sum | cut -c1-16)"

section "round trip: the CLIs encode, safespool decodes and verifies"
ss queue-init -q "$T/q"
ss prepare -s "$T/seq" -i "$T/payload" | zstd -q -c |
  gpg --batch -q --trust-model always -e -r "$RECEIVER" -u "$SENDER" -s > "$T/q/jobs/fspl-1.fspl"
ss queue-process -q "$T/q" --trusted-signers "$T/trusted" "$T/bin/record" || fail "trusted packet did not run"
expect_eq "trusted packet ran with its payload" "seq=1 sum=$want args=" "$(cat "$RUNLOG")"

section "rejected: untrusted signer, unsigned, plain, tampered, truncated"
: > "$RUNLOG"
# Every one of them claims seq 2, the next to run.
seq2() { rm -f "$T/s2" "$T/s2.lock"; ss prepare-set-next -s "$T/s2" 2; echo "$T/s2"; }
ss prepare -s "$(seq2)" --zstd --encrypt-to "$RECEIVER" --sign-with "$(fpr intruder)" -i "$T/payload" > "$T/untrusted"
ss prepare -s "$(seq2)" --encrypt-to "$RECEIVER" -i "$T/payload" > "$T/unsigned"
ss prepare -s "$(seq2)" -i "$T/payload" > "$T/plain"
ss prepare -s "$(seq2)" --zstd --encrypt-to "$RECEIVER" --sign-with "$SENDER" -i "$T/payload" > "$T/good2"
cp "$T/good2" "$T/tampered"
printf '\x55' | dd of="$T/tampered" bs=1 seek=200000 conv=notrunc 2>/dev/null
head -c 250000 "$T/good2" > "$T/truncated"
for kind in untrusted unsigned plain tampered truncated; do
  rm -f "$T/q/jobs/"*
  cp "$T/$kind" "$T/q/jobs/fspl-2.fspl"
  OUT=$("$SAFESPOOL" queue-process -q "$T/q" --require-signer "$SENDER" "$T/bin/record" 2>&1); rc=$?
  [[ $kind == untrusted ]] && untrusted_log=$OUT
  expect_eq "$kind: not run to the end" "" "$(cat "$RUNLOG")"
  [[ $rc -ne 0 ]] || fail "$kind: exit status 0"
  expect_eq "$kind: packet kept" "fspl-2.fspl" "$(ls "$T/q/jobs")"
  expect_eq "$kind: sequence not advanced" 2 "$(cat "$T/q/nextseq")"
done
intruder=$(fpr intruder)
expect_match "log names the untrusted signer's key id" ".*not trusted: signed by key id ${intruder: -16}.*" "$untrusted_log"

section "queue-ls and queue-info show the signer under a policy"
rm -f "$T/q/jobs/"*
cp "$T/untrusted" "$T/q/jobs/fspl-2.fspl"
cp "$T/good2" "$T/q/jobs/fspl-2b.fspl"
ls_out=$(ss queue-ls -q "$T/q" --require-signer "$SENDER")
expect_match "queue-ls: untrusted signer shown" ".*fspl-2.fspl  signer $(fpr intruder) \(NOT trusted\).*" "$(tr '\n' ' ' <<< "$ls_out")"
expect_match "queue-ls: trusted signer shown" ".*fspl-2b.fspl  signer $SENDER \(trusted\).*" "$(tr '\n' ' ' <<< "$ls_out")"
rm -f "$T/q/jobs/fspl-2b.fspl"
info=$(ss queue-info -q "$T/q" -j 2 --require-signer "$SENDER")
expect_eq "queue-info: signer lines" "SAFESPOOL_SIGNER=$(fpr intruder) SAFESPOOL_SIGNER_TRUSTED=no" "$(grep ^SAFESPOOL_ <<< "$info" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "queue-info without a policy: no signer lines" 0 "$(ss queue-info -q "$T/q" -j 2 | grep -c ^SAFESPOOL_)"

section "--on-error delete drops an untrusted packet; its seq waits for the signer's"
rm -f "$T/q/jobs/"*
cp "$T/untrusted" "$T/q/jobs/fspl-2.fspl"
ss queue-process -q "$T/q" --require-signer "$SENDER" --on-error delete "$T/bin/record" || fail "on-error delete"
expect_eq "untrusted deleted" "" "$(ls "$T/q/jobs")"
expect_eq "sequence not advanced" 2 "$(cat "$T/q/nextseq")"
expect_eq "consumer never finished" "" "$(cat "$RUNLOG")"
ss queue-set-next -q "$T/q" 3

section "--verify-first: the consumer starts only after a good signature"
cat > "$T/starter" <<'SH'
#!/bin/sh
echo started >> "$LOG"
cat > /dev/null
SH
chmod +x "$T/starter"
ss prepare -s "$T/seq" --zstd --encrypt-to "$RECEIVER" --sign-with "$(fpr intruder)" -i "$T/payload" > "$T/q/jobs/fspl-3.fspl"
"$SAFESPOOL" queue-process -q "$T/q" --require-signer "$SENDER" --verify-first "$T/starter" 2>/dev/null
expect_eq "untrusted: consumer never started" "" "$(cat "$RUNLOG")"
rm -f "$T/q/jobs/"*
ss prepare-set-next -s "$T/seq2" 3
ss prepare -s "$T/seq2" --zstd --encrypt-to "$RECEIVER" --sign-with "$SENDER" -i "$T/payload" > "$T/q/jobs/fspl-3.fspl"
ss queue-process -q "$T/q" --require-signer "$SENDER" --verify-first "$T/bin/record" || fail "verify-first trusted"
expect_eq "trusted: ran with the payload" "seq=3 sum=$want args=" "$(cat "$RUNLOG")"
expect_eq "no temporary file left" "" "$(ls -A "$T/q/jobs")"

section "keys are checked before the sequence number is consumed"
ss prepare-set-next -s "$T/seq3" 7
echo x | "$SAFESPOOL" prepare -s "$T/seq3" --encrypt-to nobody@example.org -i - > /dev/null 2>&1; rc=$?
expect_eq "unknown recipient exit" 78 "$rc"
expect_eq "sequence not consumed" 7 "$(ss prepare-get-next -s "$T/seq3")"

e2e_finish

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# examples/demo.sh runs to its end with the built binary and shows what it
# says it shows: packets made with prepare --zstd --encrypt-to --sign-with,
# listed and run without -d, the queue waiting on a gap, the payload
# delivered whole on a pipe already at pipe-max-size, and a forged packet
# refused by the signer policy, leaving the queue blocked.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kDemo=$E2E_LIB_DIR/../../examples/demo.sh

if is_fspl_mode; then
  echo "SKIP: the demo shows SafeSpool's own features"
  exit 0
fi
run demo env SAFESPOOL_DEMO_BIN="$SAFESPOOL" SAFESPOOL_SKIP_DEPS=1 timeout -k 5 120 bash "$kDemo"
expect_eq "demo: exit status" 0 "$RC"
((RC == 0)) || show_err demo
out=$(tr '\n' ' ' <"$T/demo.out")
err=$(tr '\n' ' ' <"$T/demo.err")
max=$(cat /proc/sys/fs/pipe-max-size)
expect_eq "no -d anywhere" 0 "$(grep -cE 'safespool (queue-[a-z]+|stdin-[a-z]+) .*(-d |--decoder)' "$kDemo")"
expect_match "packets are OpenPGP on the way" ".*the first bytes of p2: an OpenPGP message\\): +(8[4-9a-f]|c[0-9a-f]) .*" "$out"
expect_match "waiting on a gap" ".*queue queue: waiting .*waiting for 1; have 2-3 .*\\(exit status 2\\).*" "$out"
expect_match "signers in the listing" ".* 3 +[^ ]+ +fspl-[^ ]+ +signer [0-9A-F]{40} \\(trusted\\) 4 +[^ ]+ +fspl-[^ ]+ +signer [0-9A-F]{40} \\(NOT trusted\\).*" "$out"
sum=$(sed -n 's/.*payload checksum on the sender side: *//p' "$T/demo.out")
expect_match "job 2: pre-sized pipe, the whole payload" \
  ".*job 2 backup: stdin was a pipe of $max bytes \\(pipe-max-size $max\\), [0-9]+ payload bytes already waiting; read 3000000 bytes, sha256 $sum.*" "$out"
expect_match "the forged packet is refused" ".*queue-process .*not trusted: signed by key id [0-9A-F]{16}.*" "$err"
expect_match "the queue is blocked" ".*queue queue: blocked .*blocked \\(rejected\\).*SAFESPOOL CRITICAL - .*" "$out"
e2e_finish

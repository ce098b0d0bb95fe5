#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# NNCP as the transport (examples/nncp): a real two-node round trip by
# sneakernet, no daemon, no network (tests/e2e/nncp_daemon.sh goes online).
#  - two throwaway NNCP nodes from examples/nncp/nncp-pair (nncp-cfgnew, each
#    config built from the other's public keys, every command with -cfg); the
#    receiver's exec handler "safespool-write" runs
#    "$SAFESPOOL queue-write -q QUEUE" (absolute paths, as NNCP runs handlers
#    without a shell or PATH);
#  - the sender sends 3 packets with examples/nncp/safespool-nncp-send,
#    seq 2 compressed with the zstd CLI; trip 1 carries seqs 3 and 2 on a
#    "USB stick" (nncp-xfer -tx -mkdir / -rx, nncp-toss -seen): queue-process
#    runs nothing (seq 1 missing);
#  - trip 2 carries seq 1, while the queue directory is missing: the handler
#    fails, NNCP keeps the packet, and the next toss delivers it;
#  - a copy of trip 1's stick is imported again: NNCP skips it as seen and the
#    queue gets no duplicate;
#  - queue-process then runs seqs 1, 2, 3 in order, each exactly once, with
#    the payloads intact, and leaves the queue empty.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kPair=$E2E_LIB_DIR/../../examples/nncp/nncp-pair

for tool in nncp-cfgnew nncp-exec nncp-xfer nncp-toss zstd; do
  if ! command -v "$tool" >/dev/null; then
    # scripts/install-deps.sh installs nncp and zstd.
    echo "SKIP: $tool not installed (apt-get install nncp zstd)"
    exit 0
  fi
done
SAFESPOOL=$(readlink -f "$SAFESPOOL") # the handler needs an absolute path
export SAFESPOOL
cd "$T" || exit 1
export E2E_T=$T
mkdir -p bin usb
# The consumer: one line per job, with its payload's checksum.
cat >bin/consumer <<'SH'
#!/bin/sh
sum=$(sha256sum | cut -c1-16)
echo "seq=$FSPL_SEQ sum=$sum" >>"$E2E_T/consumer.log"
SH
chmod +x bin/consumer

# nncp TOOL ARGS...: an NNCP command, bounded in time, output in $T/nncp.log.
nncp() {
  echo "+ $*" >>"$T/nncp.log"
  # Flags before positional arguments: -quiet right after the command.
  timeout -k 5 "$E2E_TIMEOUT" "$1" -quiet "${@:2}" >>"$T/nncp.log" 2>&1
}
# pair ARGS...: examples/nncp/nncp-pair, the same way.
pair() {
  echo "+ nncp-pair $*" >>"$T/nncp.log"
  timeout -k 5 "$E2E_TIMEOUT" "$kPair" "$@" >>"$T/nncp.log" 2>&1
}
show_nncp_log() { sed 's/^/    nncp: /' "$T/nncp.log" | tail -n 20 >&2; }

section "two NNCP nodes"
pair init "$T" && pass || fail "nncp-pair init failed"
expect_eq "queue created, next 1" 1 "$("$SAFESPOOL" queue-get-next -q "$T/queue" 2>&1)"

# send N [--zstd]: packet N (payload "payload N" + a random tail) to the
# receiver, through the example script.
send() {
  local n=$1
  shift
  { echo "payload $n"; head -c $((n * 20000)) /dev/urandom; } >"sender/payload$n"
  sha256sum <"sender/payload$n" | cut -c1-16 >"sender/sum$n"
  pair send "$T" "$@" "sender/payload$n"
  local rc=$?
  expect_eq "send packet $n: exit status" 0 "$rc"
}
# export_to DIR: the sender writes its outgoing packets to the stick DIR.
export_to() { pair export "$T" "$1" || fail "nncp-pair export $1"; }
# import_from DIR: the receiver reads the stick DIR, then tosses (runs handlers).
import_from() { pair import "$T" "$1" || fail "nncp-pair import $1"; }
# fspl (SAFESPOOL=fspl, the reference self-check) needs a decoder for zstd.
decoder=()
is_fspl_mode && decoder=(-d 'zstd -dcf')
process() {
  run "process$1" timeout -k 5 "$E2E_TIMEOUT" "$SAFESPOOL" queue-process -q "$T/queue" \
    "${decoder[@]}" "$T/bin/consumer"
  expect_eq "queue-process ($1): exit status" 0 "$RC"
}
expected_line() { echo "seq=$1 sum=$(cat "sender/sum$1")"; }

section "the sender prepares three packets (seq 2 compressed with zstd)"
# Trip 1 is to carry seqs 3 and 2 only, but nncp-xfer exports everything that
# is queued for the node: set packet 1 aside (with its cached header) until
# trip 2.
tx=$T/sender/spool/$("$kPair" id "$T" receiver)/tx
send 1
mkdir -p "$T/held/hdr"
held=0
for f in "$tx"/*; do
  [[ -f "$f" ]] || continue
  mv "$f" "$T/held/" && held=$((held + 1))
  [[ -f "$tx/hdr/${f##*/}" ]] && mv "$tx/hdr/${f##*/}" "$T/held/hdr/"
done
expect_eq "outgoing NNCP packets after sending seq 1" 1 "$held"
send 2 --zstd
send 3
expect_eq "sender's next sequence number" 4 "$("$SAFESPOOL" prepare-get-next -s "$T/sender/seq")"
ls "$T"/sender/safespool-nncp.* >/dev/null 2>&1 && fail "safespool-nncp-send left a packet file behind" || pass

section "trip 1: seqs 2 and 3 by USB stick"
export_to usb/trip1
count=$(find usb/trip1 -type f | wc -l)
expect_eq "packets on the stick, trip 1" 2 "$count"
cp -a usb/trip1 usb/trip1.copy # the same stick, plugged in again later
import_from usb/trip1
expect_eq "jobs in the queue after trip 1" 2 "$(job_count "$T/queue")"
# What arrived is what was sent: one zstd frame (seq 2), one plain packet.
magics=$(for f in "$T"/queue/jobs/fspl-*.fspl; do head -c 4 "$f" | xxd -p; done | sort | tr '\n' ' ')
expect_eq "job files after trip 1: first bytes (zstd frame, plain packet)" "28b52ffd 2a46494c " "$magics"
process trip1
expect_eq "nothing runs before seq 1 arrives" "" "$(cat "$T/consumer.log" 2>/dev/null)"
expect_eq "queue next after trip 1" 1 "$("$SAFESPOOL" queue-get-next -q "$T/queue")"

section "trip 2: seq 1, first toss fails (queue missing), second delivers"
# Packet 1 back into the sender's outgoing spool.
mkdir -p "$tx/hdr"
cp -a "$T/held/hdr/." "$tx/hdr/" && rm -r "$T/held/hdr" && mv "$T/held"/* "$tx/" ||
  fail "could not put packet 1 back into $tx"
export_to usb/trip2
expect_eq "packets on the stick, trip 2" 1 "$(find usb/trip2 -type f | wc -l)"
mv "$T/queue" "$T/queue.away"
nncp nncp-xfer -cfg "$T/receiver/nncp.hjson" -rx usb/trip2 || fail "nncp-xfer -rx usb/trip2"
nncp nncp-toss -cfg "$T/receiver/nncp.hjson" -seen &&
  fail "nncp-toss succeeded although the handler could not write to the queue" || pass
handler_err=$(grep -m1 '^Err: exit status' "$T/receiver/spool/log")
expect_match "NNCP log: the handler failed" 'Err: exit status [1-9][0-9]*' "$handler_err"
if safespool_only; then
  expect_eq "NNCP log: queue-write's exit status (66: no queue)" "Err: exit status 66" "$handler_err"
fi
rx_kept=$(find receiver/spool -path '*/rx/*' -type f ! -path '*/seen/*' ! -path '*/hdr/*' | wc -l)
expect_eq "NNCP keeps the packet whose handler failed" 1 "$rx_kept"
mv "$T/queue.away" "$T/queue"
nncp nncp-toss -cfg "$T/receiver/nncp.hjson" -seen || fail "nncp-toss retry"
expect_eq "jobs in the queue after trip 2" 3 "$(job_count "$T/queue")"

section "the first stick again: skipped as seen"
import_from usb/trip1.copy
expect_eq "NNCP log: packets skipped as already seen" 2 \
  "$(grep -c '^Who: xfer-rx-seen$' "$T/receiver/spool/log")"
expect_eq "jobs in the queue after re-import" 3 "$(job_count "$T/queue")"

section "queue-process runs 1, 2, 3 once each"
process trip2
expect_eq "consumer log" "$(expected_line 1)
$(expected_line 2)
$(expected_line 3)" "$(cat "$T/consumer.log" 2>/dev/null)"
expect_eq "queue empty afterwards" 0 "$(job_count "$T/queue")"
expect_eq "queue next afterwards" 4 "$("$SAFESPOOL" queue-get-next -q "$T/queue")"
# Another toss and another run change nothing.
nncp nncp-toss -cfg "$T/receiver/nncp.hjson" -seen || fail "final nncp-toss"
process again
expect_eq "consumer ran each job once" 3 "$(wc -l <"$T/consumer.log")"

# shellcheck disable=SC2154  # e2e_failures: lib.sh
((e2e_failures == 0)) || show_nncp_log
e2e_finish

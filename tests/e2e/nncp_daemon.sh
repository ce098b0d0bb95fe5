#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# NNCP online (examples/nncp/nncp-pair call): packets cross a real TCP
# connection from nncp-call to the receiver's nncp-daemon on 127.0.0.1.
#  - two throwaway nodes (nncp-pair init); seq 1 is sent at niceness B
#    (bulk), seqs 2 (zstd) and 3 at the default P;
#  - call 1 with "-nice P" carries only seqs 2 and 3: queue-process runs
#    nothing (seq 1 missing);
#  - a call the receiver refuses (it no longer knows the sender's noise key)
#    fails, leaves seq 1 in the sender's spool, and stops the daemon;
#  - SIGTERM during a call stops the call and the daemon at once;
#  - call 2 carries seq 1; queue-process runs 1, 2, 3 in order with the
#    payloads intact, and the sender's outgoing spool is empty.
# After every call, whatever its outcome, no nncp-daemon (or nncp-call) of
# this test may be left running. The daemon binds 127.0.0.1:0: the port is
# the kernel's choice, never a fixed one.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kPair=$E2E_LIB_DIR/../../examples/nncp/nncp-pair

for tool in nncp-cfgnew nncp-exec nncp-daemon nncp-call nncp-toss zstd; do
  if ! command -v "$tool" >/dev/null; then
    # scripts/install-deps.sh installs nncp and zstd.
    echo "SKIP: $tool not installed (apt-get install nncp zstd)"
    exit 0
  fi
done
SAFESPOOL=$(readlink -f "$SAFESPOOL")
export SAFESPOOL
make_consumers
cd "$T" || exit 1

# ours NODE: PIDs of running processes with NODE's config ($T/NODE/nncp.hjson)
# as an argument: NNCP commands of this test's pair, nothing else. Builtins
# only: a fork per process would make the scan slow.
ours() {
  local p args
  for p in /proc/[0-9]*; do
    mapfile -d '' args 2>/dev/null <"$p/cmdline" || continue
    [[ " ${args[*]} " == *" $T/$1/nncp.hjson "* ]] && echo "${p#/proc/}"
  done
}
# expect_stopped WHAT: no daemon or call of this pair runs any more; a
# leftover is a failure, and is ended here (by its PID) so it cannot
# outlive the test.
expect_stopped() {
  local left pid
  left=$(ours receiver; ours sender)
  if [[ -z "$left" ]]; then
    pass
  else
    fail "$1: NNCP processes still running: $(tr '\n' ' ' <<<"$left")"
    for pid in $left; do kill -KILL "$pid" 2>/dev/null; done
  fi
}

# pair NAME ARGS...: runs nncp-pair with a time limit.
pair() {
  local name=$1
  shift
  run "$name" timeout -k 5 "$E2E_TIMEOUT" "$kPair" "$@"
}
# call NAME [NNCP-CALL-OPTION...]: one online call (status in RC); the
# daemon must have listened on 127.0.0.1 and be gone afterwards.
call() {
  local name=$1
  shift
  pair "$name" call "$T" "$@"
  expect_match "$name: nncp-daemon on 127.0.0.1, on the port the kernel chose" \
    'nncp-pair: nncp-daemon \(pid [0-9]+\) listening on 127\.0\.0\.1:[1-9][0-9]*' \
    "$(grep -m1 'listening on' "$T/$name.err")"
  expect_stopped "$name"
}
# tx_count: packets waiting in the sender's outgoing spool for the receiver.
tx_count() { find "$tx" -maxdepth 1 -type f | wc -l; }

decoder=()
is_fspl_mode && decoder=(-d 'zstd -dcf')
process() {
  run "process_$1" timeout -k 5 "$E2E_TIMEOUT" "$SAFESPOOL" queue-process -q "$T/queue" \
    "${decoder[@]}" "$T/bin/record"
  expect_eq "queue-process ($1): exit status" 0 "$RC"
}

section "two NNCP nodes, three packets (seq 1 bulk, seq 2 zstd)"
pair init init "$T"
expect_eq "nncp-pair init: exit status" 0 "$RC"
((RC == 0)) || show_err init
tx=$T/sender/spool/$("$kPair" id "$T" receiver)/tx
expect_eq "queue created, next 1" 1 "$("$SAFESPOOL" queue-get-next -q "$T/queue" 2>&1)"
for n in 1 2 3; do
  { echo "payload $n"; head -c $((n * 30000)) /dev/urandom; } >"payload$n"
  echo "seq=$n sum=$(sha256sum <"payload$n" | cut -c1-16) args=" >>expected.log
done
send_opts=([1]="--nice B" [2]="--zstd" [3]="")
for n in 1 2 3; do
  # shellcheck disable=SC2086  # the options are words
  pair "send$n" send "$T" ${send_opts[n]} "payload$n"
  expect_eq "send seq $n: exit status" 0 "$RC"
  ((RC == 0)) || show_err "send$n"
done
expect_eq "packets queued by the sender" 3 "$(tx_count)"

section "call 1 (-nice P): seqs 2 and 3"
call call1 -nice P
expect_eq "call 1: exit status" 0 "$RC"
((RC == 0)) || show_err call1
expect_eq "jobs after call 1" 2 "$(job_count "$T/queue")"
expect_eq "the bulk packet waits in the sender's spool" 1 "$(tx_count)"
process call1
expect_eq "nothing runs before seq 1 arrives" "" "$(cat "$LOG" 2>/dev/null)"

section "a call the receiver refuses: failure, daemon stopped, packet kept"
cp receiver/nncp.hjson receiver/nncp.hjson.good
# The receiver forgets the sender's noise key: it no longer accepts its calls.
sed -i '/^    sender: {$/,/^    }$/{/noisepub/d}' receiver/nncp.hjson
expect_eq "noise keys left in the receiver's config" 2 "$(grep -c noisepub receiver/nncp.hjson)"
call refused
((RC != 0)) && pass || fail "refused call: exit status 0"
expect_match "refused call: the error names nncp-call" '.*nncp-call failed.*' "$(tr '\n' ' ' <"$T/refused.err")"
expect_eq "the packet stays in the sender's spool" 1 "$(tx_count)"
expect_eq "jobs after the refused call" 2 "$(job_count "$T/queue")"
mv receiver/nncp.hjson.good receiver/nncp.hjson

section "SIGTERM during a call: call and daemon stopped at once"
# -rx: nothing is sent; the call idles until its 30 s deadline unless stopped.
# Not under timeout(1): it would pass the signal to the whole process group.
"$kPair" call "$T" -rx -onlinedeadline 30 >"$T/sigterm.out" 2>"$T/sigterm.err" &
call_bg=$!
bg_started "$call_bg"
for ((tries = E2E_TIMEOUT * 20; tries > 0; tries--)); do
  [[ -n "$(ours sender)" ]] && break
  kill -0 "$call_bg" 2>/dev/null || break
  sleep 0.05
done
[[ -n "$(ours sender)" ]] && pass || fail "nncp-call did not start"
grep -q 'listening on 127.0.0.1:' "$T/sigterm.err" && pass || fail "no daemon reported before the call"
kill -TERM "$call_bg"
for ((tries = E2E_TIMEOUT * 20; tries > 0; tries--)); do
  kill -0 "$call_bg" 2>/dev/null || break
  sleep 0.05
done
((tries > 0)) && pass || { fail "nncp-pair call still runs ${E2E_TIMEOUT} s after SIGTERM"; kill -KILL "$call_bg"; }
wait "$call_bg"
RC=$?
bg_done "$call_bg"
expect_eq "nncp-pair call after SIGTERM: exit status" 143 "$RC"
# Without the trap, SIGTERM would end the script alone and leave both running.
expect_match "the daemon's stop is reported" '.*nncp-daemon \(pid [0-9]+\) stopped.*' \
  "$(tr '\n' ' ' <"$T/sigterm.err")"
expect_stopped sigterm

section "call 2: seq 1; queue-process runs 1, 2, 3 once each"
call call2
expect_eq "call 2: exit status" 0 "$RC"
((RC == 0)) || show_err call2
expect_eq "sender's spool empty after call 2" 0 "$(tx_count)"
expect_eq "jobs after call 2" 3 "$(job_count "$T/queue")"
process call2
expect_eq "consumer log" "$(cat expected.log)" "$(cat "$LOG" 2>/dev/null)"
expect_eq "queue empty afterwards" 0 "$(job_count "$T/queue")"
expect_eq "queue next afterwards" 4 "$("$SAFESPOOL" queue-get-next -q "$T/queue")"

# shellcheck disable=SC2154  # e2e_failures: lib.sh
if ((e2e_failures > 0)); then
  for node in sender receiver; do
    grep -E '^(Who|Msg|Err):' "$T/$node/spool/log" | tail -n 12 | sed "s/^/    $node log: /" >&2
  done
fi
e2e_finish

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# A zfs receive that fails halfway, resumed over sneakernet (examples/zfs):
# send.sh keeps a copy of each packet in an outbox; receive.sh -r receives
# with zfs-receive-resumable and writes receipts; a stand-in zfs(8) stores
# the streams, fails a receive halfway on demand keeping the partial state,
# reports a receive_resume_token and accepts `zfs send -t`;
#  - the failure receipt carries the token; outbox-status calls the packet
#    failed; resume.sh turns the token into a packet made with prepare
#    --supersedes, once;
#  - the receiver runs it in place of the failed packet: the stream it keeps
#    is the whole snapshot, the failed packet is superseded in the ledger and
#    deleted, and the queue goes on with the next increment;
#  - the receipts settle the outbox: every packet acked, and outbox-prune
#    empties it.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kExample=$E2E_LIB_DIR/../../examples/zfs

if is_fspl_mode; then
  echo "SKIP: needs safespool (receipts, prepare --supersedes), not fspl"
  exit 0
fi
command -v jq >/dev/null || { fail "jq not installed (scripts/install-deps.sh)"; e2e_finish; }
cd "$T" || exit 1
export E2E_T=$T SAFESPOOL
mkdir -p bin streams state outbox receipts stick1 stick2 stick3

# The stand-in zfs(8). A sent stream starts with a line "STREAM SNAP", a
# resumed one with "RESUME SNAP OFFSET"; the receiver keeps, per snapshot,
# what it got, and a receive failing halfway (recv.fail holds the bytes it
# gets to) keeps its partial state and a token, as zfs receive -s does.
cat >bin/zfs <<'SH'
#!/usr/bin/env bash
s=$E2E_T/state
case $1 in
send)
  echo "$*" >>"$E2E_T/send.args"
  shift
  if [[ $1 == -t ]]; then
    IFS=- read -r _ snap off <<<"$2"
    printf 'RESUME %s %s\n' "$snap" "$off"
    exec tail -c +$((off + 1)) "$E2E_T/streams/$snap"
  fi
  snapshot=${*: -1}
  printf 'STREAM %s\n' "${snapshot#*@}"
  exec cat "$E2E_T/streams/${snapshot#*@}"
  ;;
receive)
  echo "$*" >>"$E2E_T/receive.args"
  read -r kind snap off
  if [[ $kind == STREAM && -e $s/partial ]]; then
    cat >/dev/null
    echo "cannot receive: destination contains partially-complete state" >&2
    exit 1
  fi
  if [[ $kind == STREAM && -e $E2E_T/recv.fail ]]; then
    head -c "$(cat "$E2E_T/recv.fail")" >"$s/partial.data"
    echo "$snap" >"$s/partial"
    cat >/dev/null
    echo "cannot receive new filesystem stream: checksum mismatch" >&2
    exit 1
  fi
  if [[ $kind == RESUME ]]; then
    [[ -e $s/partial && $(cat "$s/partial") == "$snap" &&
      $(stat -c %s "$s/partial.data") == "$off" ]] || { echo "cannot resume $snap" >&2; exit 1; }
    cat "$s/partial.data" - >"$s/$snap" && rm "$s/partial" "$s/partial.data"
  else
    cat >"$s/$snap"
  fi
  echo "$kind $snap" >>"$E2E_T/receive.log"
  ;;
get)
  if [[ -e $s/partial ]]; then
    echo "1-$(cat "$s/partial")-$(stat -c %s "$s/partial.data")"
  else
    echo -
  fi
  ;;
*) exit 2 ;;
esac
SH
chmod +x bin/zfs
export ZFS=$T/bin/zfs ZFS_SEND_CMD="$T/bin/zfs send" SAFESPOOL_OPTS="--stall-timeout 30"
head -c 2000000 /dev/urandom >streams/s1
head -c 300000 /dev/urandom >streams/s2
ss queue-init -q "$T/queue" || fail "queue-init"

# receive NAME STICK: receive.sh with receipts; its status in RC.
receive() {
  run "$1" timeout -k 5 "$E2E_TIMEOUT" "$kExample/receive.sh" -q "$T/queue" -r "$T/receipts" "$2" backup/fs
}
status_json() { ss outbox-status --outbox outbox --receipts receipts --json; }

section "a full stream fails halfway on the receiver"
run send1 timeout -k 5 "$E2E_TIMEOUT" "$kExample/send.sh" -s seq --outbox outbox tank/fs@s1 stick1
expect_eq "send: exit status" 0 "$RC"
expect_eq "send: a copy in the outbox" 1 "$(ls outbox | grep -c '^fspl-')"
echo 700000 >recv.fail
receive fail1 stick1
expect_eq "receive: the job failed (exit 1)" 1 "$RC"
expect_eq "zfs receive -s was used" "receive -s -u -F backup/fs" "$(head -n 1 receive.args)"
expect_eq "partial state kept" 700000 "$(stat -c %s state/partial.data)"
expect_eq "a failure receipt" 1 "$(ls receipts | grep -c '^fspl-receipt-1-failure-')"
expect_eq "outbox-status: failed, with the token in the receipt" \
  "failed 1-s1-700000" \
  "$(status_json | jq -r '.packets[0] | .state + " " + (.receipt.note | capture("token=(?<t>.*)\n").t)')"
run status1 ss outbox-status --outbox outbox --receipts receipts
expect_eq "outbox-status exit status (a failed packet)" 1 "$RC"
expect_match "outbox-status line" '^failed +seq 1 .*fspl-.*failure, exit 1.*' "$(cat status1.out)"

section "the sender makes a packet that replaces it, from the token"
rm recv.fail
run resume1 timeout -k 5 "$E2E_TIMEOUT" "$kExample/resume.sh" --outbox outbox --receipts receipts stick2
expect_eq "resume.sh: exit status" 0 "$RC"
show_err resume1
expect_match "resume.sh says so" 'seq 1: resumed from its token in stick2/fspl-.*\.fspl' "$(cat resume1.out)"
expect_eq "one replacement on the stick" 1 "$(ls stick2 | grep -c '^fspl-')"
expect_eq "made from the token: only the rest of the stream" "send -t 1-s1-700000" "$(tail -n 1 send.args)"
run resume2 timeout -k 5 "$E2E_TIMEOUT" "$kExample/resume.sh" --outbox outbox --receipts receipts stick3
expect_eq "resume.sh again: nothing new" "0 0" "$RC $(ls stick3 | wc -l)"

section "the receiver runs the replacement in place of the failed packet"
receive resumed stick2
expect_eq "receive: exit status" 0 "$RC"
show_err resumed
expect_eq "what zfs received" "RESUME s1" "$(cat receive.log)"
expect_same "the snapshot's whole stream was received" streams/s1 state/s1
expect_eq "no partial state left" "" "$(ls state | grep partial)"
ledger=$(ss queue-ledger -q "$T/queue" --json | jq -r '.records[] | "\(.seq) \(.result)"' | tr '\n' ' ')
expect_eq "ledger" "1 started 1 failure 1 started 1 superseded 1 success " "$ledger"
expect_eq "both packets are gone from the queue" 0 "$(job_count "$T/queue")"
expect_eq "next" 2 "$(ss queue-get-next -q "$T/queue")"

section "the next increment, and the receipts settle the outbox"
run send2 timeout -k 5 "$E2E_TIMEOUT" "$kExample/send.sh" -s seq --outbox outbox --from tank/fs@s1 tank/fs@s2 stick3
expect_eq "send 2: exit status" 0 "$RC"
receive inc2 stick3
expect_eq "receive 2: exit status" 0 "$RC"
expect_same "increment received" streams/s2 state/s2
expect_eq "outbox-status: all acked" "acked acked acked" \
  "$(status_json | jq -r '[.packets[].state] | join(" ")')"
expect_eq "the failed packet's last receipt says superseded" "superseded" \
  "$(status_json | jq -r '.packets[] | select(.receipt.result == "superseded") | .receipt.result')"
run prune ss outbox-prune --outbox outbox --receipts receipts
expect_eq "outbox-prune: exit status" 0 "$RC"
expect_eq "outbox-prune deleted all three" 3 "$(grep -c '^deleted ' prune.out)"
expect_eq "outbox empty but for resume.sh's log" "resumed.log" "$(ls outbox)"

e2e_finish

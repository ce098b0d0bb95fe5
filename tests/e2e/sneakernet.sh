# SPDX-License-Identifier: GPL-3.0-or-later
# Sneakernet reality and seeing the queue: twins, conflicts, stale packets,
# queue-import from a "USB stick", one stream fanned out to two queues,
# queue-status (text, JSON, exit status), metrics, and --watch.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"

# cap CMD...: runs CMD, leaving its exit status, stdout and stderr in RC, OUT, ERR.
cap() { OUT=$("$@" 2>"$T/cap.err"); RC=$?; ERR=$(cat "$T/cap.err"); }
mk() { # mk SEQFILE NAME PAYLOAD [zstd]: a packet file in $T/usb
  if [[ "${4:-}" == zstd ]]; then
    printf '%s' "$3" | ss prepare -s "$1" -i - | zstd -q -c > "$T/usb/$2"
  else
    printf '%s' "$3" | ss prepare -s "$1" -i - > "$T/usb/$2"
  fi
}
cat > "$T/consumer" <<'SH'
#!/bin/sh
printf '%s:%s\n' "$FSPL_SEQ" "$(cat)" >> "$RUNLOG"
SH
chmod +x "$T/consumer"

section "one sender, two receivers; delivered late, twice and out of order"
mkdir -p "$T/usb"
mk "$T/seq" fspl-1.fspl one
mk "$T/seq" fspl-2.fspl two zstd
mk "$T/seq" fspl-3.fspl three
mk "$T/seq" fspl-4.fspl four zstd
for r in a b; do ss queue-init -q "$T/$r" || fail "queue-init $r"; done
# Receiver a gets 3 and 4 first; b gets everything at once via import.
ss queue-import -q "$T/a" --copy "$T/usb/fspl-3.fspl" "$T/usb/fspl-4.fspl" >/dev/null
ss queue-import -q "$T/b" --copy "$T/usb" > "$T/import.out"
expect_eq "import summary" "imported 4, already queued 0, already processed 0, left for an operator 0, failed 0, ignored 0" "$(cat "$T/import.out")"

section "queue-status while waiting for a gap"
ss queue-status -q "$T/a" > "$T/st.txt"; rc=$?
expect_eq "status exit (waiting)" 2 "$rc"
expect_match "waiting line" '.*waiting for 1; have 3-4.*' "$(tr '\n' ' ' < "$T/st.txt")"
ss queue-status -q "$T/a" --json > "$T/st.json"
expect_eq "json state" waiting "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' < "$T/st.json")"
expect_eq "json gaps" "[{'from': 1, 'to': 2}]" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["gaps"])' < "$T/st.json")"

section "the rest arrives, plus a second copy of 3 (zstd-compressed this time)"
zstd -q -c "$T/usb/fspl-3.fspl" > "$T/usb/fspl-3-again.fspl"
ss queue-import -q "$T/a" --copy "$T/usb" > "$T/import2.out"
# The zstd copy of 3 is the same packet in other bytes: it is imported, and
# the processor collapses the twins (only identical bytes count as queued).
expect_eq "second import" "imported 3, already queued 2, already processed 0, left for an operator 0, failed 0, ignored 0" "$(cat "$T/import2.out")"
export RUNLOG=$T/a.log
ss queue-process -q "$T/a" --metrics-file "$T/a.prom" "$T/consumer" || fail "queue-process a"
expect_eq "a ran in order" "1:one 2:two 3:three 4:four" "$(tr '\n' ' ' < "$RUNLOG" | sed 's/ $//')"
expect_eq "a nextseq" 5 "$(cat "$T/a/nextseq")"
expect_eq "a jobs left" "" "$(ls "$T/a/jobs")"
expect_match "metrics: jobs processed" '.*safespool_jobs_processed\{queue="[^"]*"\} 4.*' "$(tr '\n' ' ' < "$T/a.prom")"
expect_match "metrics: depth 0" '.*safespool_queue_depth\{queue="[^"]*"\} 0.*' "$(tr '\n' ' ' < "$T/a.prom")"
export RUNLOG=$T/b.log
ss queue-process -q "$T/b" "$T/consumer" || fail "queue-process b"
expect_eq "b ran in order" "1:one 2:two 3:three 4:four" "$(tr '\n' ' ' < "$RUNLOG" | sed 's/ $//')"

section "a twin in jobs/ does not stall the queue; a conflict does"
mk "$T/seq" fspl-5.fspl five
cp "$T/usb/fspl-5.fspl" "$T/a/jobs/fspl-5.fspl"
cp "$T/usb/fspl-5.fspl" "$T/a/jobs/fspl-5-twin.fspl"
export RUNLOG=$T/a.log
ss queue-process -q "$T/a" "$T/consumer" || fail "twins stalled the queue"
expect_eq "twin ran once" 1 "$(grep -c '^5:' "$RUNLOG")"
expect_eq "twin removed" "" "$(ls "$T/a/jobs")"
mk "$T/seq" fspl-6.fspl six
cp "$T/usb/fspl-6.fspl" "$T/a/jobs/fspl-6.fspl"
# A different packet claiming seq 6, from another sender's seqfile.
ss prepare-set-next -s "$T/seq6" 6
printf 'conflict' | ss prepare -s "$T/seq6" -i - > "$T/a/jobs/fspl-6-conflict.fspl"
cap ss queue-process -q "$T/a" "$T/consumer"
expect_eq "conflict exit (blocked)" 3 "$RC"
expect_match "conflict names both files" '.*fspl-6.*fspl-6.*' "$ERR"
rm "$T/a/jobs/fspl-6-conflict.fspl"

section "stale packets: reported, removed on request"
cp "$T/usb/fspl-1.fspl" "$T/a/jobs/fspl-1-late.fspl"
ss queue-status -q "$T/a" > "$T/st2.txt"
expect_match "stale reported" '.*stale \(seq below next\): 1 jobs/fspl-1-late.fspl.*' "$(tr '\n' ' ' < "$T/st2.txt")"
ss queue-process -q "$T/a" --delete-stale "$T/consumer" || fail "delete-stale run"
expect_eq "stale removed, 6 ran" "" "$(ls "$T/a/jobs")"
expect_eq "stale never re-ran" 1 "$(grep -c '^1:' "$RUNLOG")"

section "a failing job stops the queue"
ss prepare-fail -s "$T/seq" > "$T/a/jobs/fspl-7.fspl"
cap ss queue-process -q "$T/a" "$T/consumer"
expect_eq "failing job exit" 1 "$RC"
cap ss queue-status -q "$T/a"
expect_eq "status exit (failing)" 1 "$RC"
expect_match "failing line" '.*failing: job 7 .*Fail packet.*' "$(tr '\n' ' ' <<< "$OUT")"
ss queue-process -q "$T/a" --on-error delete -n 1 "$T/consumer"
cap ss queue-status -q "$T/a"
expect_eq "status exit (healthy)" 0 "$RC"

section "--watch processes packets as they land and stops cleanly on SIGTERM"
ss queue-init -q "$T/w"
export RUNLOG=$T/w.log
: > "$RUNLOG"
"$SAFESPOOL" queue-process -q "$T/w" --watch "$T/consumer" 2> "$T/watch.err" &
wpid=$!
e2e_bg_pids+=("$wpid")
sleep 0.5
printf 'w1' | ss prepare -s "$T/wseq" -i - | ss queue-write -q "$T/w"
printf 'w2' | ss prepare -s "$T/wseq" -i - | zstd -q | ss queue-write -q "$T/w"
for _ in $(seq 1 50); do [[ $(wc -l < "$RUNLOG") -ge 2 ]] && break; sleep 0.1; done
expect_eq "watch ran both" "1:w1 2:w2" "$(tr '\n' ' ' < "$RUNLOG" | sed 's/ $//')"
kill -TERM "$wpid"
wait "$wpid"; rc=$?
expect_eq "watch exit on SIGTERM" 0 "$rc"

e2e_finish

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# examples/cron/safespool-cron, run as cron would, tick after tick: quiet
# while all is well, one report (output, which cron mails) when the state
# changes — a failing job, a blocked queue, a consumer that cannot start —
# and quiet again while it stays so; one line when it is fine again; a busy
# lock changes nothing. The last state is kept beside the queue.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kCron=$E2E_LIB_DIR/../../examples/cron/safespool-cron

if is_fspl_mode; then
  echo "SKIP: the wrapper reads queue-status --check, SafeSpool's own"
  exit 0
fi
make_consumers
cd "$T" || exit 1
export SAFESPOOL SAFESPOOL_LOCK_WAIT=0
q=$T/q
ss queue-init -q "$q" || fail "queue-init"
n=0
# tick NAME COMMAND...: one cron run; its output (what cron would mail) in
# $T/NAME.all, exit status in RC.
tick() {
  local name=$1
  shift
  run "$name" timeout -k 5 60 "$kCron" "$q" "$@"
  cat "$T/$name.out" "$T/$name.err" >"$T/$name.all"
}
mail_of() { tr '\n' ' ' <"$T/$1.all"; }
add_job() { printf 'job %s' "$1" | ss prepare -s "$T/seq" -i - | ss queue-write -q "$q"; }

section "quiet while all is well"
add_job 1
tick ok-1 "$T/bin/record"
expect_eq "ok: exit status" 0 "$RC"
expect_eq "ok: nothing to mail" "" "$(cat "$T/ok-1.all")"
expect_match "ok: the job ran" "seq=1 .*" "$(cat "$LOG")"

section "a failing job: one mail, then quiet"
add_job 2
tick fail-1 "$T/bin/failing"
expect_eq "failing: exit status" 1 "$RC"
expect_match "failing: the mail" \
  "safespool: queue $q: SAFESPOOL CRITICAL - queue $q: failing: job 2 .*exit status 3.*queue-status.*queue-set-next -q $q 3.*" \
  "$(mail_of fail-1)"
tick fail-2 "$T/bin/failing"
expect_eq "still failing: nothing to mail" "" "$(cat "$T/fail-2.all")"
expect_eq "still failing: exit status" 0 "$RC"
hold_lock "$q/nextseq.lock"
tick busy "$T/bin/record"
release_lock
expect_eq "busy lock: nothing to mail" "" "$(cat "$T/busy.all")"
tick fixed "$T/bin/record"
expect_match "fixed: says so" "safespool: queue $q is fine again \\(was: SAFESPOOL CRITICAL - .*failing: job 2 .*\\)" \
  "$(cat "$T/fixed.all")"
tick fixed-2 "$T/bin/record"
expect_eq "fine: quiet again" "" "$(cat "$T/fixed-2.all")"

section "blocked, and another reason"
ss prepare-set-next -s "$T/seq" 4 # seq 3 is never made
add_job 4
printf 'garbage' >"$q/jobs/fspl-garbage.fspl"
tick blocked-1 "$T/bin/record"
expect_match "blocked: the mail" \
  "safespool: queue $q: SAFESPOOL CRITICAL - queue $q: blocked \\(unreadable\\): .*fspl-garbage.fspl.*" \
  "$(mail_of blocked-1)"
tick blocked-2 "$T/bin/record"
expect_eq "still blocked: nothing to mail" "" "$(cat "$T/blocked-2.all")"
mv "$q/jobs/fspl-garbage.fspl" "$q/jobs/fspl-other.fspl"
tick blocked-3 "$T/bin/record"
expect_match "another file: a new mail" ".*blocked \\(unreadable\\): .*fspl-other.fspl.*\\(before: .*fspl-garbage.fspl.*" \
  "$(mail_of blocked-3)"
rm "$q/jobs/fspl-other.fspl"
ss queue-set-next -q "$q" 4

section "the consumer cannot start"
tick nocmd "$T/bin/no-such-consumer"
expect_match "cannot start: the mail" \
  "safespool: queue $q: queue-process failed with exit status 69: the consumer command cannot be started .*" \
  "$(mail_of nocmd)"
tick nocmd-2 "$T/bin/no-such-consumer"
expect_eq "still cannot start: nothing to mail" "" "$(cat "$T/nocmd-2.all")"
tick recovered "$T/bin/record"
expect_match "recovered" "safespool: queue $q is fine again .*" "$(cat "$T/recovered.all")"
expect_eq "the state is kept beside the queue" OK "$(cat "$q/.safespool-cron-state")"

e2e_finish

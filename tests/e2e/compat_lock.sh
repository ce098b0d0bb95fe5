#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The two tools exclude each other on one queue through flock(2) on
# queuedir/nextseq.lock (and on SEQFILE.lock on the sender):
#  - while another process holds the lock, queue-process, queue-get-next and
#    queue-set-next of both tools fail at once, run nothing and change nothing;
#    safespool exits 75 (EX_TEMPFAIL), and queue-process says nothing unless
#    stderr is a terminal (overlapping cron runs are normal);
#  - while safespool processes a queue, fspl cannot, and vice versa;
#  - prepare on a locked sender seqfile fails in both;
#  - commands that need no lock (queue-ls, queue-info, queue-write) still work.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
make_consumers
cd "$T" || exit 1

fs queue-init -q q
for n in 1 2; do fs prepare -s seq -i /etc/hostname | fs queue-write -q q; done

section "lock held by a third process"
hold_lock q/nextseq.lock
: >"$LOG"
start=$SECONDS
for tool in fs ss; do
  expect_fail "$tool.process.locked" "$tool" queue-process -q q "$T/bin/record"
  expect_fail "$tool.getnext.locked" "$tool" queue-get-next -q q
  expect_fail "$tool.setnext.locked" "$tool" queue-set-next -q q 5
done
((SECONDS - start < 10)) && pass || fail "a locked queue made the tools wait ($((SECONDS - start))s)"
if safespool_only; then
  expect_rc 75 "safespool queue-process on a locked queue exits 75" ss queue-process -q q "$T/bin/record"
  expect_rc 75 "safespool queue-set-next on a locked queue exits 75" ss queue-set-next -q q 5
  # From cron (no terminal) a busy queue is expected and says nothing;
  # -l debug still tells why.
  ss queue-process -q q "$T/bin/record" </dev/null >busy.out 2>busy.err
  expect_eq "a busy queue-process without a terminal is silent" "" "$(cat busy.out busy.err)"
  ss -l debug queue-process -q q "$T/bin/record" 2>busy.err
  expect_match "with -l debug it says the queue is locked" ".*is locked by another process.*" "$(cat busy.err)"
fi
expect_eq "no job ran while locked" "" "$(cat "$LOG")"
expect_eq "nextseq unchanged while locked" 1 "$(cat q/nextseq)"
expect_eq "jobs still queued" 2 "$(job_count q)"
expect_ok ls.locked ss queue-ls -q q
expect_ok info.locked ss queue-info -q q -j 1
fs prepare -s seq >extra.pkt
expect_ok write.locked ss queue-write -q q <extra.pkt
release_lock
expect_ok getnext.free ss queue-get-next -q q
expect_eq "queue-get-next after release" 1 "$(cat "$T/getnext.free.out")"

section "sender seqfile locked"
fs prepare-nop -s sender.seq >/dev/null
hold_lock sender.seq.lock
expect_fail prepare.locked.fs fs prepare -s sender.seq
expect_fail prepare.locked.ss ss prepare -s sender.seq
expect_fail preparenop.locked.ss ss prepare-nop -s sender.seq
if safespool_only; then
  expect_rc 75 "safespool prepare on a locked seqfile exits 75" ss prepare -s sender.seq
fi
expect_eq "sender seqfile unchanged" 2 "$(cat sender.seq)"
release_lock

# busy_while TOOL OTHER: TOOL processes job 1 with a slow consumer; meanwhile
# OTHER must not get the queue.
busy_while() {
  local tool=$1 other=$2 bin
  bin=$([[ $tool == fs ]] && echo "$FSPL" || echo "$SAFESPOOL")
  section "queue busy in $tool, $other tries"
  rm -f "$T"/started.*
  E2E_SLOW=3 timeout 20 "$bin" queue-process -q q -n 1 "$T/bin/slow" >/dev/null 2>&1 &
  local pid=$!
  bg_started "$pid"
  if ! wait_for_file "$T/started.$(cat q/nextseq)" 10; then
    fail "$tool did not start the slow job"
    return
  fi
  expect_fail "$other.process.busy.$tool" "$other" queue-process -q q "$T/bin/record"
  if [[ $other == ss ]] && safespool_only; then
    expect_rc 75 "safespool exits 75 while fspl processes" ss queue-process -q q "$T/bin/record"
  fi
  flock -n q/nextseq.lock true && fail "$tool does not hold nextseq.lock while processing" || pass
  wait "$pid"
  expect_eq "$tool finished its job" 0 "$?"
  bg_done "$pid"
}
: >"$LOG"
busy_while fs ss
busy_while ss fs
expect_eq "the refused runs ran nothing" "" "$(cat "$LOG")"
expect_eq "two jobs done, nextseq" 3 "$(cat q/nextseq)"

e2e_finish

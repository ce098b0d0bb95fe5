#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Exit statuses. Both tools exit 0 exactly where fspl's manual says success and
# non-zero where it says failure; safespool's distinct codes (docs/exit-codes.md)
# are checked when the binary under test is not fspl itself:
#   1 job failed (--on-error retry) or Fail packet, 64 usage, 65 bad packet,
#   66 missing queue/job, 69 command cannot be started, 78 append-only queue,
#   130 interrupted (75, lock held, is in compat_lock.sh).
# Also: option values are case-insensitive in both tools.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
make_consumers
cd "$T" || exit 1

# fresh_queue NAME PACKET_KIND...: a queue with one packet per kind, seq 1..n.
# kinds: ok (command with payload), nop, fail
# Each combination is made once with fspl and then copied.
fresh_queue() {
  local q=$1 kind template
  shift
  template="$T/template.${*:-empty}"
  template=${template// /_}
  if [[ ! -d "$template" ]]; then
    "$FSPL" queue-init -q "$template"
    for kind in "$@"; do
      case $kind in
        ok) "$FSPL" prepare -s "$template.seq" -i /etc/hostname ;;
        nop) "$FSPL" prepare-nop -s "$template.seq" ;;
        fail) "$FSPL" prepare-fail -s "$template.seq" ;;
      esac | "$FSPL" queue-write -q "$template"
    done
  fi
  rm -rf "$q"
  cp -a "$template" "$q"
}

# both_ok NAME ARGS...: both tools exit 0 on identical fresh queues, where
# "QUEUE" in ARGS stands for the queue; SETUP is a fresh_queue kind list.
SETUP=()
both() {
  local want=$1 name=$2 tool
  shift 2
  for tool in fs ss; do
    fresh_queue "q.$tool" "${SETUP[@]}"
    local args=("${@//QUEUE/q.$tool}")
    if [[ $want == ok ]]; then
      expect_ok "$name [$tool]" "$tool" "${args[@]}"
    else
      expect_fail "$name [$tool]" "$tool" "${args[@]}"
    fi
  done
}

section "success (exit 0) per the manual"
SETUP=()
both ok "queue-process on an empty queue" queue-process -q QUEUE "$T/bin/record"
both ok "queue-ls on an empty queue" queue-ls -q QUEUE
SETUP=(ok ok ok)
both ok "maxjobs reached" queue-process -q QUEUE -n 1 "$T/bin/record"
expect_eq "maxjobs: 2 jobs left" 2 "$(job_count q.ss)"
SETUP=(ok fail ok)
both ok "--on-error delete past a failing command" queue-process -q QUEUE --on-error delete "$T/bin/failing"
expect_eq "--on-error delete: queue empty" 0 "$(job_count q.ss)"
both ok "--on-error leave past a Fail packet" queue-process -q QUEUE --on-error leave "$T/bin/record"
expect_eq "--on-error leave: Fail packet left, nextseq 4" "1 4" "$(job_count q.ss) $(cat q.ss/nextseq)"
SETUP=(ok)
for tool in fs ss; do
  fresh_queue "q.$tool" ok
  printf 'not a packet' >"q.$tool/jobs/fspl-junk.fspl"
  : >"q.$tool/jobs/fspl-empty.fspl"
  # The job ran; with the next one missing and unreadable files present,
  # SafeSpool stops blocked (3) where fspl says 0: one of them may be the
  # next packet, and only an operator can tell.
  want=0
  [[ $tool == ss ]] && ! is_fspl_mode && want=3
  expect_rc "$want" "unparsable files present: queue-process [$tool]" "$tool" queue-process -q "q.$tool" "$T/bin/record"
  expect_ok "unparsable files present: queue-ls [$tool]" "$tool" queue-ls -q "q.$tool"
  expect_eq "unparsable files are left alone [$tool]" 2 "$(job_count "q.$tool")"
done
SETUP=(ok nop)
both ok "job sequence gap: stops, no error" queue-process -q QUEUE "$T/bin/record"

section "failure (non-zero) per the manual"
SETUP=(ok fail ok)
both fail "--on-error retry (default) with a Fail packet" queue-process -q QUEUE "$T/bin/record"
expect_eq "retry: Fail packet kept, nextseq not advanced" "2 2" "$(job_count q.ss) $(cat q.ss/nextseq)"
SETUP=(ok)
both fail "--on-error retry with a failing command" queue-process -q QUEUE --on-error retry "$T/bin/failing"
expect_eq "retry: job kept, nextseq 1" "1 1" "$(job_count q.ss) $(cat q.ss/nextseq)"
both fail "queue-info on a missing job" queue-info -q QUEUE -j 999
both fail "queue-payload on a missing job" queue-payload -q QUEUE -j 999
both fail "command that cannot be started" queue-process -q QUEUE /nonexistent/command
expect_eq "unstartable command: job kept, nextseq 1" "1 1" "$(job_count q.ss) $(cat q.ss/nextseq)"
for tool in fs ss; do
  fresh_queue "q.$tool" ok
  # A different packet with the same seq. (An identical copy is a case
  # safespool may accept: fspl's error there is a known defect, not a contract.)
  "$FSPL" prepare -s - -i /etc/passwd >"q.$tool/jobs/fspl-duplicate.fspl"
  expect_fail "duplicate seq: queue-process [$tool]" "$tool" queue-process -q "q.$tool" "$T/bin/record"
  expect_fail "duplicate seq: queue-info -j [$tool]" "$tool" queue-info -q "q.$tool" -j 1
  expect_ok "duplicate seq: queue-ls is fine [$tool]" "$tool" queue-ls -q "q.$tool"
  expect_ok "duplicate seq: --order-by timestamp is fine [$tool]" \
    "$tool" queue-process -q "q.$tool" --order-by timestamp "$T/bin/record"
done
for tool in fs ss; do
  expect_fail "queue-ls on a missing queue [$tool]" "$tool" queue-ls -q nonexistent
  expect_fail "queue-process on a missing queue [$tool]" "$tool" queue-process -q nonexistent "$T/bin/record"
  expect_fail "stdin-info on garbage [$tool]" "$tool" stdin-info < <(printf 'garbage garbage garbage garbage')
  expect_fail "unknown subcommand [$tool]" "$tool" queue-frobnicate
  expect_fail "bad --on-error value [$tool]" "$tool" queue-process -q q.ss --on-error bogus "$T/bin/record"
  expect_fail "bad --order-by value [$tool]" "$tool" queue-process -q q.ss --order-by bogus "$T/bin/record"
  expect_fail "bad --output-to value [$tool]" "$tool" queue-process -q q.ss --output-to bogus "$T/bin/record"
  expect_fail "non-numeric -j [$tool]" "$tool" queue-info -q q.ss -j one
  expect_fail "missing -q [$tool]" "$tool" queue-ls
  rm -rf "ao.$tool"
  "$tool" queue-init -q "ao.$tool" --append-only
  fs prepare -s - | fs queue-write -q "ao.$tool"
  expect_fail "queue-process on an append-only queue [$tool]" "$tool" queue-process -q "ao.$tool" "$T/bin/record"
  expect_ok "queue-ls on an append-only queue [$tool]" "$tool" queue-ls -q "ao.$tool"
  expect_fail "stdin-process of a Fail packet [$tool]" "$tool" stdin-process "$T/bin/record" < <(fs prepare-fail -s -)
  expect_fail "stdin-process with a failing command [$tool]" "$tool" stdin-process "$T/bin/failing" < <(fs prepare -s -)
  expect_ok "stdin-process of a NOP packet [$tool]" "$tool" stdin-process /nonexistent/command < <(fs prepare-nop -s -)
done

section "case-insensitive option values"
SETUP=(ok fail ok)
both ok "--on-error delete (lower case)" queue-process -q QUEUE --on-error delete "$T/bin/record"
both ok "--on-error LEAVE (upper case)" queue-process -q QUEUE --on-error LEAVE "$T/bin/record"
both fail "--on-error Retry" queue-process -q QUEUE --on-error Retry "$T/bin/record"
both ok "--order-by TIMESTAMP --on-error Delete" queue-process -q QUEUE --order-by TIMESTAMP --on-error Delete "$T/bin/record"
SETUP=(ok)
both ok "--order-by sequence --output-to SAVEBOTH" queue-process -q QUEUE --order-by sequence --output-to SAVEBOTH "$T/bin/record"
both ok "--output-to passboth" queue-process -q QUEUE --output-to passboth "$T/bin/record"

if safespool_only; then
  section "safespool's distinct exit codes"
  fresh_queue q ok fail
  expect_rc 1 "Fail packet under --on-error retry: 1" ss queue-process -q q "$T/bin/record"
  fresh_queue q ok
  expect_rc 1 "failing command under --on-error retry: 1" ss queue-process -q q "$T/bin/failing"
  expect_rc 1 "stdin-process with a failing command: 1" ss stdin-process "$T/bin/failing" < <(fs prepare -s -)
  expect_rc 64 "--on-error bogus: 64" ss queue-process -q q --on-error bogus "$T/bin/record"
  expect_rc 64 "--order-by bogus: 64" ss queue-process -q q --order-by bogus "$T/bin/record"
  expect_rc 64 "unknown subcommand: 64" ss queue-frobnicate
  expect_rc 64 "missing -q: 64" ss queue-ls
  expect_rc 64 "non-numeric -j: 64" ss queue-info -q q -j one
  expect_rc 65 "stdin-info on garbage: 65" ss stdin-info < <(printf 'garbage garbage garbage garbage')
  expect_rc 66 "queue-info -j 999: 66" ss queue-info -q q -j 999
  expect_rc 66 "queue-ls on a missing queue: 66" ss queue-ls -q nonexistent
  expect_rc 66 "queue-process on a missing queue: 66" ss queue-process -q nonexistent "$T/bin/record"
  expect_rc 69 "command not found: 69" ss queue-process -q q /nonexistent/command
  expect_eq "command not found: job kept, nextseq 1" "1 1" "$(job_count q) $(cat q/nextseq)"
  rm -rf ao && ss queue-init -q ao --append-only
  expect_rc 78 "queue-process on an append-only queue: 78" ss queue-process -q ao "$T/bin/record"

  section "safespool is not stuck by a FIFO in jobs/"
  fresh_queue q ok
  mkfifo q/jobs/fspl-fifo.fspl
  expect_ok "queue-ls with a FIFO in jobs/" ss queue-ls -q q
  expect_rc 3 "queue-process with a FIFO in jobs/: runs the job, then stops blocked" ss queue-process -q q "$T/bin/record"
  expect_eq "FIFO: the real job ran, the FIFO is left alone" "1 2" "$(job_count q) $(cat q/nextseq)"

  section "interrupted run: 130, job kept, seq not advanced"
  for sig in TERM INT HUP; do
    fresh_queue q ok ok
    rm -f "$T"/started.*
    # A background job of a script starts with SIGINT ignored; env restores
    # the default dispositions, as a cron job or a terminal would have them.
    E2E_SLOW=30 setsid env --default-signal=INT,TERM,HUP "$SAFESPOOL" queue-process -q q "$T/bin/slow" >/dev/null 2>&1 &
    pid=$!
    bg_started "$pid"
    if wait_for_file "$T/started.1" 10; then
      kill -s "$sig" "$pid"
      start=$SECONDS
      wait "$pid"
      rc=$?
      bg_done "$pid"
      expect_eq "SIG$sig: exit status" 130 "$rc"
      ((SECONDS - start < 10)) && pass || fail "SIG$sig: took $((SECONDS - start))s to stop"
      expect_eq "SIG$sig: both jobs kept, nextseq 1" "2 1" "$(job_count q) $(cat q/nextseq)"
      flock -n q/nextseq.lock true && pass || fail "SIG$sig: lock still held after exit"
    else
      fail "SIG$sig: slow job did not start"
      kill "$pid"
      wait "$pid"
      bg_done "$pid"
    fi
  done
fi

e2e_finish

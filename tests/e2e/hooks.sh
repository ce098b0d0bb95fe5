#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# queue-process hooks with the shipped examples, for real:
#  - examples/hooks/healthchecks pings a local HTTP server (started here on
#    127.0.0.1, logging every request): URL/start by hand, URL after a job
#    succeeds, URL/fail with the reason in the body after one fails and
#    when the queue is blocked;
#  - a blocked hook fires once per change of blocking reason, not on every
#    pass;
#  - examples/hooks/mail hands a mail to the sendmail it finds (a stand-in
#    on PATH that keeps what it gets);
#  - what a hook sees: SAFESPOOL_EVENT, _QUEUE, _SEQ, _EXIT_STATUS, _REASON
#    and the job's FSPL_* variables;
#  - a failing or hanging hook (killed after --hook-timeout) changes
#    neither the job's result nor the exit status.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kHooks=$E2E_LIB_DIR/../../examples/hooks

if is_fspl_mode; then
  echo "SKIP: hooks are SafeSpool's own"
  exit 0
fi
make_consumers
cd "$T" || exit 1
mkdir -p hookbin

section "a local healthchecks stand-in"
cat >server.py <<'PY'
import http.server, sys, threading
log = open(sys.argv[1], "a", buffering=1)
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        log.write(f"{self.command} {self.path} {body!r}\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")
    do_GET = do_POST = do_HEAD = answer
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[2], "w") as f:
    f.write(str(server.server_address[1]))
threading.Timer(120, server.shutdown).start()  # bounded, whatever happens
server.serve_forever()
PY
timeout 130 python3 server.py "$T/requests.log" "$T/port.tmp" &
server_pid=$!
bg_started "$server_pid"
for _ in $(seq 1 100); do [[ -s port.tmp ]] && break; sleep 0.05; done
port=$(cat port.tmp 2>/dev/null)
[[ -n "$port" ]] && pass || fail "the HTTP server did not start"
export SAFESPOOL_HC_URL="http://127.0.0.1:$port/check-uuid"
hc=$kHooks/healthchecks
requests() { cut -d' ' -f1,2 "$T/requests.log" 2>/dev/null | tr '\n' ';'; }

# A hook that records what it sees.
cat >hookbin/record-env <<'SH'
#!/bin/sh
{
  echo "event=$SAFESPOOL_EVENT queue=$SAFESPOOL_QUEUE seq=$SAFESPOOL_SEQ exit=$SAFESPOOL_EXIT_STATUS fspl_seq=${FSPL_SEQ:-} param=${FSPL_PARAM_1:-}"
  echo "reason=$SAFESPOOL_REASON"
  [ -z "$SAFESPOOL_STDERR_TAIL" ] || printf 'tail=%s\n' "$SAFESPOOL_STDERR_TAIL"
} >>"$E2E_T/hook-env.log"
SH
chmod +x hookbin/record-env
# A consumer that says why it fails on its stderr.
cat >hookbin/complaining <<'SH'
#!/bin/sh
cat >/dev/null
echo "cannot receive: out of space" >&2
echo "pool/backup left as it was" >&2
exit 3
SH
chmod +x hookbin/complaining
hooks=(--hook-success "$hc" --hook-failure "$hc" --hook-blocked "$hc"
  --hook-success "$T/hookbin/record-env" --hook-failure "$T/hookbin/record-env"
  --hook-blocked "$T/hookbin/record-env")

section "healthchecks: start, success, fail"
expect_ok hc-start "$hc" start
ss queue-init -q "$T/q"
printf 'one' | ss prepare -s "$T/seq" -i - -- p1 | ss queue-write -q "$T/q"
expect_ok run-1 "$SAFESPOOL" queue-process -q "$T/q" "${hooks[@]}" "$T/bin/record"
expect_eq "start, then success" "GET /check-uuid/start;POST /check-uuid;" "$(requests)"
expect_eq "what the success hook saw" \
  "event=success queue=$T/q seq=1 exit=0 fspl_seq=1 param=p1
reason=" "$(cat hook-env.log)"
printf 'two' | ss prepare -s "$T/seq" -i - | ss queue-write -q "$T/q"
expect_rc 1 run-2 "$SAFESPOOL" queue-process -q "$T/q" "${hooks[@]}" "$T/hookbin/complaining"
expect_eq "then fail" "GET /check-uuid/start;POST /check-uuid;POST /check-uuid/fail;" "$(requests)"
expect_match "the fail ping says why, with the end of the consumer's stderr" \
  ".*POST /check-uuid/fail [\"']queue $T/q: failure, job 2, exit status 3\\\\n.*cannot receive: out of space.*" \
  "$(tail -n 1 requests.log)"
expect_match "what the failure hook saw" ".*event=failure queue=$T/q seq=2 exit=3 fspl_seq=2 .*" \
  "$(tr '\n' ' ' <hook-env.log)"
expect_match "the failure hook saw the end of the consumer's stderr" \
  ".*tail=cannot receive: out of space pool/backup left as it was.*" "$(tr '\n' ' ' <hook-env.log)"

section "blocked: once per change of reason"
ss queue-set-next -q "$T/q" 3
: >hook-env.log
: >requests.log
printf 'four' | ss prepare -s "$T/seq" -i - >"$T/p4" # seq 3 never comes...
ss prepare-set-next -s "$T/seq" 4
printf 'four' | ss prepare -s "$T/seq" -i - | ss queue-write -q "$T/q"
printf 'garbage' >"$T/q/jobs/fspl-garbage.fspl" # ...and this may be it
expect_rc 3 blocked-1 "$SAFESPOOL" queue-process -q "$T/q" "${hooks[@]}" "$T/bin/record"
expect_rc 3 blocked-2 "$SAFESPOOL" queue-process -q "$T/q" "${hooks[@]}" "$T/bin/record"
expect_eq "one fail ping for two blocked passes" "POST /check-uuid/fail;" "$(requests)"
expect_match "the blocked hook: event and reason" \
  "event=blocked queue=$T/q seq=3 exit= fspl_seq= param= reason=unreadable: .*fspl-garbage.fspl.*" \
  "$(tr '\n' ' ' <hook-env.log | sed 's/ $//')"
rm "$T/q/jobs/fspl-garbage.fspl"
expect_ok waiting "$SAFESPOOL" queue-process -q "$T/q" "${hooks[@]}" "$T/bin/record"
printf 'garbage again' >"$T/q/jobs/fspl-garbage2.fspl"
expect_rc 3 blocked-3 "$SAFESPOOL" queue-process -q "$T/q" "${hooks[@]}" "$T/bin/record"
expect_eq "blocked again after it cleared: a new ping" "POST /check-uuid/fail;POST /check-uuid/fail;" "$(requests)"
rm "$T/q/jobs/fspl-garbage2.fspl"
ss queue-set-next -q "$T/q" 4

section "mail, through the sendmail on PATH"
cat >hookbin/sendmail <<'SH'
#!/bin/sh
echo "args: $*" >>"$E2E_T/mail.out"
cat >>"$E2E_T/mail.out"
SH
chmod +x hookbin/sendmail
printf 'five' | ss prepare -s "$T/seq" -i - | ss queue-write -q "$T/q"
PATH=$T/hookbin:$PATH SAFESPOOL_MAIL_TO=ops@example.org \
  expect_rc 1 mail-run "$SAFESPOOL" queue-process -q "$T/q" --hook-failure "$kHooks/mail" "$T/bin/failing"
mail=$(cat mail.out 2>/dev/null)
expect_match "sendmail -oi -t, To, Subject" \
  "args: -oi -t To: ops@example.org Subject: safespool: queue $T/q: failure, job 4 .*" "$(tr '\n' ' ' <<<"$mail")"
expect_match "the mail says why and how to skip" \
  ".*Reason: +.*exit status 3.* safespool queue-set-next -q $T/q 5 .*FSPL_SEQ=4.*" "$(tr '\n' ' ' <<<"$mail")"

section "a failing or hanging hook changes nothing"
cat >hookbin/bad <<'SH'
#!/bin/sh
exit 9
SH
cat >hookbin/hang <<'SH'
#!/bin/sh
exec sleep 100
SH
chmod +x hookbin/bad hookbin/hang
ss queue-set-next -q "$T/q" 5
: >"$LOG"
expect_ok hang-run "$SAFESPOOL" queue-process -q "$T/q" --hook-timeout 1 \
  --hook-success "$T/hookbin/bad" --hook-success "$T/hookbin/hang" \
  --hook-success "$T/hookbin/no-such-hook" --hook-success "$T/hookbin/record-env" "$T/bin/record"
expect_match "the job ran" "seq=5 .*" "$(cat "$LOG")"
err=$(tr '\n' ' ' <"$T/hang-run.err")
expect_match "failing hook logged" ".*success hook $T/hookbin/bad failed: exit status 9.*" "$err"
expect_match "hanging hook killed and logged" ".*success hook $T/hookbin/hang did not finish within 1 s: killed.*" "$err"
expect_match "missing hook logged" ".*success hook $T/hookbin/no-such-hook could not run.*" "$err"
expect_match "the hook after them still ran" ".*event=success .* seq=5 .*" "$(tr '\n' ' ' <hook-env.log)"
expect_rc 64 bad-timeout "$SAFESPOOL" queue-process -q "$T/q" --hook-timeout 0 "$T/bin/record"
expect_rc 64 long-timeout "$SAFESPOOL" queue-process -q "$T/q" --hook-timeout 2d "$T/bin/record"

kill "$server_pid" 2>/dev/null
wait "$server_pid" 2>/dev/null
bg_done "$server_pid"
e2e_finish

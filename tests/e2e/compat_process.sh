#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# queue-process semantics, the same under both tools (each runs on its own
# copy of the same queue, from its own directory, so that file names and -q
# are identical and the consumers' logs can be compared byte for byte):
#  - strict sequence order whatever the delivery order; stop at a gap; nextseq
#    advances; processed job files are deleted (kept with --never-delete);
#  - queue-set-next moves past a gap;
#  - the consumer's environment (FSPL_* and inherited variables), in
#    queue-process and stdin-process;
#  - --allow-job-params appends the packet's params after the command's own;
#  - -n/--maxjobs, --order-by timestamp (seqfile untouched), --timeout,
#    --ignore-payload, --output-to saveboth (jobs/NAME.out) and passboth.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
make_consumers
cd "$T" || exit 1
export E2E_MARK=inherited

# The packets: seqs 1..6 from one sender, delivered as 4 6 1 3 2 (5 is late).
mkdir pk
for n in 1 2 3 4 5 6; do
  head -c $((n * 1000)) /dev/urandom >"pk/payload$n"
  FSPL_SET_N=$n FSPL_SET_SPACE='a b' fs prepare -s pk/seq -i "pk/payload$n" -- "param$n" 'two words' >"pk/$n"
done
cd "$T" || exit 1
mkdir template
fs queue-init -q template/q
for n in 4 6 1 3 2; do deliver template/q "pk/$n" "fspl-job$n.fspl"; done

# scenario TOOL NAME: a fresh copy of the queue in $T/NAME.TOOL/q; cd there.
scenario() {
  rm -rf "$T/$2.$1"
  cp -a "$T/template" "$T/$2.$1"
  cd "$T/$2.$1" || exit 1
  : >"$LOG"
}
# compare_logs NAME: the consumer logs of both tools must be identical.
compare_logs() { expect_same "$1: consumer log, fspl vs safespool" "$T/$1.fs.log" "$T/$1.ss.log"; }
save_log() { cp "$LOG" "$T/$1.$2.log"; }
sum16() { sha256sum "$1" | cut -c1-16; }

for tool in fs ss; do
  section "order, gap, deletion [$tool]"
  scenario $tool order
  expect_ok "order.$tool" $tool queue-process -q q "$T/bin/record"
  expect_eq "stops at the gap: nextseq [$tool]" 5 "$(cat q/nextseq)"
  expect_eq "done jobs deleted, job 6 kept [$tool]" "fspl-job6.fspl" "$(ls q/jobs)"
  expect_ok "order.again.$tool" $tool queue-process -q q "$T/bin/record"
  expect_eq "nothing to do at the gap [$tool]" 5 "$(cat q/nextseq)"
  deliver q "$T/pk/5" fspl-job5.fspl
  expect_ok "order.late.$tool" $tool queue-process -q q "$T/bin/record"
  expect_eq "late job 5 unblocks 6 [$tool]" "7 0" "$(cat q/nextseq) $(job_count q)"
  save_log order $tool
done
cd "$T" || exit 1
for n in 1 2 3 4 5 6; do echo "seq=$n sum=$(sum16 "pk/payload$n") args="; done >expected.order.log
expect_same "jobs ran in seq order with their payloads" expected.order.log order.ss.log
compare_logs order

for tool in fs ss; do
  section "queue-set-next / queue-get-next [$tool]"
  scenario $tool setnext
  expect_ok "getnext.$tool" $tool queue-get-next -q q
  expect_eq "queue-get-next on a new queue [$tool]" 1 "$(cat "$T/getnext.$tool.out")"
  expect_ok "setnext.$tool" $tool queue-set-next -q q 6
  expect_eq "queue-set-next writes nextseq [$tool]" 6 "$(cat q/nextseq)"
  expect_ok "setnext.process.$tool" $tool queue-process -q q "$T/bin/record"
  expect_eq "only job 6 ran, 1-4 are left [$tool]" "7 4" "$(cat q/nextseq) $(job_count q)"
  expect_ok "getnext2.$tool" $tool queue-get-next -q q
  expect_eq "queue-get-next after processing [$tool]" 7 "$(cat "$T/getnext2.$tool.out")"
  save_log setnext $tool
done
cd "$T" || exit 1
compare_logs setnext

for tool in fs ss; do
  section "--never-delete, -n/--maxjobs [$tool]"
  scenario $tool maxjobs
  expect_ok "maxjobs0.$tool" $tool queue-process -q q --maxjobs 0 "$T/bin/record"
  expect_eq "--maxjobs 0 runs nothing [$tool]" "1 5" "$(cat q/nextseq) $(job_count q)"
  expect_ok "maxjobs2.$tool" $tool queue-process -q q -n 2 --never-delete "$T/bin/record"
  expect_eq "-n 2 --never-delete: seq advanced, files kept [$tool]" "3 5" "$(cat q/nextseq) $(job_count q)"
  expect_ok "maxjobs1.$tool" $tool queue-process -q q --maxjobs 1 "$T/bin/record"
  expect_eq "--maxjobs 1 [$tool]" "4 4" "$(cat q/nextseq) $(job_count q)"
  save_log maxjobs $tool
done
cd "$T" || exit 1
compare_logs maxjobs

for tool in fs ss; do
  section "environment, params [$tool]"
  scenario $tool env
  expect_ok "env.$tool" $tool queue-process -q q -n 1 "$T/bin/envdump"
  expect_ok "env.params.$tool" $tool queue-process -q q -n 1 --allow-job-params "$T/bin/record" -- own 'own 2'
  expect_ok "env.noparams.$tool" $tool queue-process -q q -n 1 "$T/bin/record" -- own
  expect_ok "env.stdin.$tool" $tool stdin-process "$T/bin/envdump" <"$T/pk/4"
  expect_ok "env.stdinparams.$tool" $tool stdin-process --allow-job-params "$T/bin/record" -- x <"$T/pk/5"
  save_log env $tool
done
cd "$T" || exit 1
compare_logs env
expect_eq "queue-process environment" "E2E_MARK=inherited
FSPL_CTIME_NANOS=x
FSPL_CTIME_RFC3339_LOCAL=x
FSPL_CTIME_RFC3339_UTC=x
FSPL_CTIME_SECS=x
FSPL_JOB_FILENAME=fspl-job1.fspl
FSPL_JOB_FULLPATH=q/jobs/fspl-job1.fspl
FSPL_JOB_QUEUEDIR=q
FSPL_PARAM_1=param1
FSPL_PARAM_2=two words
FSPL_SEQ=1
FSPL_SET_N=1
FSPL_SET_SPACE=a b" "$(sed -n '1,/^$/p' env.ss.log | sed '/^$/d; s/^\(FSPL_CTIME_[A-Z0-9_]*\)=.*/\1=x/')"
expect_match "--allow-job-params appends job params" \
  "seq=2 sum=[0-9a-f]{16} args=own own 2 param2 two words" "$(grep '^seq=' env.ss.log | sed -n 1p)"
expect_match "without --allow-job-params only own params" \
  "seq=3 sum=[0-9a-f]{16} args=own" "$(grep '^seq=' env.ss.log | sed -n 2p)"
expect_match "stdin-process --allow-job-params" \
  "seq=5 sum=[0-9a-f]{16} args=x param5 two words" "$(grep '^seq=' env.ss.log | sed -n 3p)"
expect_eq "stdin-process environment" "E2E_MARK=inherited
FSPL_CTIME_NANOS=x
FSPL_CTIME_RFC3339_LOCAL=x
FSPL_CTIME_RFC3339_UTC=x
FSPL_CTIME_SECS=x
FSPL_PARAM_1=param4
FSPL_PARAM_2=two words
FSPL_SEQ=4
FSPL_SET_N=4
FSPL_SET_SPACE=a b" "$(grep -v '^seq=' env.ss.log | sed -n '/^$/,$p' | sed '/^$/d; s/^\(FSPL_CTIME_[A-Z0-9_]*\)=.*/\1=x/')"

for tool in fs ss; do
  section "--order-by timestamp [$tool]"
  # ctime order differs from seq order: 12 is made before 11.
  rm -rf "$T/ts.$tool" && mkdir "$T/ts.$tool" && cd "$T/ts.$tool" || exit 1
  fs queue-init -q q
  fs prepare-set-next -s s 12 && fs prepare -s s -i /etc/hostname >p12
  fs prepare-set-next -s s 11 && fs prepare -s s >p11
  fs prepare-set-next -s s 2 && fs prepare -s s >p2
  for p in p11 p2 p12; do deliver q $p; done
  : >"$LOG"
  expect_ok "ts.$tool" $tool queue-process -q q --order-by timestamp "$T/bin/record"
  expect_eq "timestamp order, all jobs, even below nextseq [$tool]" "12 11 2" \
    "$(sed 's/^seq=\([0-9]*\).*/\1/' "$LOG" | xargs)"
  expect_eq "seqfile neither used nor changed [$tool]" "1 0" "$(cat q/nextseq) $(job_count q)"
done
cd "$T" || exit 1

for tool in fs ss; do
  section "--timeout, --ignore-payload [$tool]"
  scenario $tool timeout
  start=$SECONDS
  E2E_SLOW=30 expect_fail "timeout.$tool" $tool queue-process -q q --timeout 1 "$T/bin/slow"
  ((SECONDS - start <= 8)) && pass || fail "--timeout 1 took $((SECONDS - start))s [$tool]"
  expect_eq "timed-out job kept, seq not advanced [$tool]" "1 5" "$(cat q/nextseq) $(job_count q)"
  E2E_SLOW=30 expect_ok "timeout.delete.$tool" $tool queue-process -q q -n 1 --timeout 1 --on-error delete "$T/bin/slow"
  expect_eq "--on-error delete drops the timed-out job [$tool]" "2 4" "$(cat q/nextseq) $(job_count q)"
  expect_ok "timeout.fast.$tool" $tool queue-process -q q -n 1 --timeout 10 "$T/bin/record"
  expect_ok "ignore.$tool" $tool queue-process -q q -n 1 --ignore-payload "$T/bin/record" </dev/null
  save_log timeout $tool
done
cd "$T" || exit 1
compare_logs timeout
expect_match "--ignore-payload: the consumer reads no payload" "seq=3 sum=e3b0c44298fc1c14 args=" \
  "$(tail -n 1 timeout.ss.log)"

for tool in fs ss; do
  section "--output-to [$tool]"
  scenario $tool output
  expect_ok "saveboth.$tool" $tool queue-process -q q -n 1 --output-to saveboth "$T/bin/noisy"
  expect_eq "saveboth: nothing on stdout [$tool]" "" "$(cat "$T/saveboth.$tool.out")"
  expect_eq "saveboth: jobs/NAME.out holds stdout and stderr [$tool]" \
    "to stdout seq=1
to stderr seq=1" "$(cat q/jobs/fspl-job1.fspl.out 2>&1)"
  expect_ok "saveboth2.$tool" $tool queue-process -q q -n 1 --output-to SaveBoth "$T/bin/noisy"
  [[ -e q/jobs/fspl-job2.fspl.out ]] && pass || fail "saveboth: no jobs/fspl-job2.fspl.out [$tool]"
  expect_eq ".out files are not jobs [$tool]" 3 "$(job_count q)"
  expect_ok "passboth.$tool" $tool queue-process -q q -n 1 --output-to passboth "$T/bin/noisy"
  expect_eq "passboth: consumer stdout on stdout [$tool]" "to stdout seq=3" "$(cat "$T/passboth.$tool.out")"
  grep -q 'to stderr seq=3' "$T/passboth.$tool.err" && pass || fail "passboth: consumer stderr not on stderr [$tool]"
done
cd "$T" || exit 1

e2e_finish

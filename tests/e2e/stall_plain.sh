# SPDX-License-Identifier: GPL-3.0-or-later
# A plain packet's consumer reads the job file itself: --stall-timeout
# watches its position in the file (the offset it shares with us, what
# /proc/PID/fdinfo/0 shows), as it watches the bytes entering a pipe. The
# same position gives the progress line a percentage and an estimate.
# What is left to read counts as delivered once it would fit into the pipe
# a decoded payload gets (pipe-max-size): a plain packet and
# the same packet compressed are judged alike.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
safespool_only || { echo "safespool only"; e2e_finish; exit; }

Q=$T/q
ss queue-init -q "$Q"
size=$((4 * $(cat /proc/sys/fs/pipe-max-size)))  # well beyond what a pipe holds
head -c "$size" /dev/urandom >"$T/payload"
ss prepare -s "$T/seq" -i "$T/payload" >"$Q/jobs/fspl-1.fspl"

section "a consumer that reads 1 KB and sleeps is stalled"
start=$SECONDS
run stall ss queue-process -q "$Q" --stall-timeout 2 -- /bin/sh -c 'head -c 1024 >/dev/null; sleep 30'
expect_eq "exit status: the job failed" 1 "$RC"
expect_match "the reason" ".*stalled: no payload byte moved for 2 s.*" "$(tr '\n' ' ' <"$T/stall.err")"
expect_match "the diagnosis: how far it read" \
  ".*stalled: [0-9]+ of $size payload bytes read from the job file; consumer process [0-9]+.*" \
  "$(tr '\n' ' ' <"$T/stall.err")"
[[ $((SECONDS - start)) -lt 20 ]] || fail "the stall was not caught before the consumer ended"
expect_eq "the job stays for a retry" 1 "$(job_count "$Q")"

section "one that reads it all and then works on is not"
run work ss queue-process -q "$Q" --stall-timeout 1 -- /bin/sh -c 'cat >/dev/null; sleep 2'
expect_eq "exit status" 0 "$RC"

section "nor one that waits before it reads a payload that fits the pipe, plain or compressed"
printf 'small' | ss prepare -s "$T/seq" -i - >"$Q/jobs/fspl-2.fspl"
printf 'small' | ss prepare -s "$T/seq" -i - | zstd -q >"$Q/jobs/fspl-3.fspl"
run late ss queue-process -q "$Q" --stall-timeout 1 -- /bin/sh -c 'sleep 3; cat >/dev/null'
expect_eq "exit status: both ran" "0 0" "$RC $(job_count "$Q")"

if command -v script >/dev/null; then
  section "on a terminal the progress line has a percentage and an estimate"
  head -c 30000000 /dev/zero >"$T/big"
  ss prepare -s "$T/seq" -i "$T/big" >"$Q/jobs/fspl-4.fspl"
  script -qec "'$SAFESPOOL' queue-process -q '$Q' -- /bin/sh -c 'head -c 8000000 >/dev/null; sleep 2.5; cat >/dev/null'" \
    /dev/null >"$T/tty.out" 2>&1
  expect_match "a percentage and the time left" ".*seq 4 \(fspl-4\.fspl\): [0-9.]+ MiB .*/s\), [0-9]+%, about [0-9]+ .*left.*" \
    "$(tr '\r\n' '  ' <"$T/tty.out")"
fi

e2e_finish

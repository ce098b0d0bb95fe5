# SPDX-License-Identifier: GPL-3.0-or-later
# Fault injection: queue-process is SIGKILLed at random moments, at least
# 100 times, and restarted; then it runs to completion. Every job must have
# run to success at least once with the right payload, in order, none
# skipped; nextseq must end at count+1 and jobs/ must end empty of jobs and
# temporary files. Also: queue-write killed mid-copy never leaves a file
# under a job name.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"

N=${CRASH_JOBS:-250}
KILLS=${CRASH_KILLS:-120}
Q=$T/q
ss queue-init -q "$Q" || fail "queue-init"

section "prepare $N jobs (every third zstd-compressed), delivered shuffled"
mkdir -p "$T/out"
# The sender's seqfile lives in memory: its fsyncs are not what is tested.
SENDER_SEQ=$(mktemp -p /dev/shm safespool-crash-seq.XXXXXX) && rm -f "$SENDER_SEQ"
trap 'rm -f "$SENDER_SEQ" "$SENDER_SEQ.lock"; e2e_cleanup' EXIT
for i in $(seq 1 "$N"); do
  f=$T/out/$i
  head -c $(( (i * 7919) % 20000 )) /dev/urandom > "$T/payload.$i"
  sha256sum < "$T/payload.$i" | cut -c1-16 > "$T/expect.$i"
  if (( i % 3 == 0 )); then
    ss prepare -s "$SENDER_SEQ" -i "$T/payload.$i" | zstd -q -c > "$f"
  else
    ss prepare -s "$SENDER_SEQ" -i "$T/payload.$i" > "$f"
  fi
done
for f in $(ls "$T/out" | shuf); do
  mv "$T/out/$f" "$Q/jobs/fspl-$f.fspl"
done

# lib.sh's `record` consumer logs "seq=N sum=CHECKSUM args=" to $LOG, one
# O_APPEND write per run; RUNLOG keeps it as "N CHECKSUM".
make_consumers
CONSUMER=$T/bin/record
RUNLOG=$T/runs.log
runs() { sed -E 's/^seq=([0-9]+) sum=([0-9a-f]+) args=.*/\1 \2/' "$LOG" > "$RUNLOG"; }

section "kill queue-process $KILLS times at random moments"
# The kill window scales with how long a scan takes here (a sanitizer build
# is many times slower), so kills land in jobs, fsyncs and deletions too.
start=$(date +%s%N)
"$SAFESPOOL" queue-ls -q "$Q" > /dev/null 2>&1
window=$(( 300 + 3 * ($(date +%s%N) - start) / 1000000 ))
echo "kill window: 0-${window} ms"
for k in $(seq 1 "$KILLS"); do
  "$SAFESPOOL" -l error queue-process -q "$Q" "$CONSUMER" 2>>"$T/stderr" &
  pid=$!
  ms=$(( (RANDOM * 32768 + RANDOM) % window ))
  sleep "$(printf '%d.%03d' $(( ms / 1000 )) $(( ms % 1000 )))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
done
runs
done_during_kills=$(sort -un "$RUNLOG" | awk '{print $1}' | sort -un | wc -l)
echo "jobs that had succeeded at least once during the kills: $done_during_kills"

section "run to completion"
# Not through `ss`: its per-call time limit is for single commands, and a
# sanitizer build needs longer for a whole queue.
timeout -k 5 600 "$SAFESPOOL" -l error queue-process -q "$Q" "$CONSUMER" || fail "final queue-process failed"

section "check the guarantee"
runs
expect_eq "nextseq" "$((N + 1))" "$(cat "$Q/nextseq")"
left=$(ls -A "$Q/jobs" | grep -v '^fspl-.*\.out$' || true)
expect_eq "jobs/ left empty" "" "$left"
bad=0
for i in $(seq 1 "$N"); do
  want=$(cat "$T/expect.$i")
  grep -q "^$i $want\$" "$RUNLOG" || { bad=$((bad + 1)); echo "seq $i never ran with the right payload"; }
  if grep "^$i " "$RUNLOG" | grep -vq " $want\$"; then
    bad=$((bad + 1)); echo "seq $i ran with a wrong payload"
  fi
done
expect_eq "jobs missing or wrong" 0 "$bad"
# The first run of N+1 must come after the first run of N.
order=$(awk '!seen[$1]++ {print $1}' "$RUNLOG" | tr '\n' ' ')
expect_eq "first runs in sequence order" "$(seq 1 "$N" | tr '\n' ' ')" "$order"
reruns=$(( $(wc -l < "$RUNLOG") - N ))
echo "runs in all: $(wc -l < "$RUNLOG") for $N jobs ($reruns repeated after a kill)"

section "queue-write killed mid-copy leaves no job-named file"
Q2=$T/q2
ss queue-init -q "$Q2"
mkfifo "$T/feed"
for k in $(seq 1 20); do
  "$SAFESPOOL" queue-write -q "$Q2" < "$T/feed" &
  pid=$!
  exec 7> "$T/feed"
  cat "$T/payload.$((k + 1))" >&7
  sleep 0.05
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  exec 7>&-
done
expect_eq "job-named files after killed writes" 0 "$(ls "$Q2/jobs" | grep -c '^fspl-.*\.fspl$')"

e2e_finish

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# A cold scan of many encrypted packets keeps what it learnt across kills:
# queue-ls is SIGKILLed again and again during the scan of a few hundred
# small packets (real gpg), each time right after it wrote a checkpoint of
# the header index, and each attempt starts from an index that holds more
# than the last one had, until one completes.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
cd "$T" || exit 1
safespool_only || { echo "safespool only"; e2e_finish; exit; }

export GNUPGHOME=$T/gnupg
mkdir -m 700 "$GNUPGHOME"
# gpg processes a killed scan left behind: only those of this test's home.
kill_our_gpgs() {
  local env pid
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}
    pid=${pid%/environ}
    { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qxF "GNUPGHOME=$GNUPGHOME" &&
      [[ $(cat "/proc/$pid/comm" 2>/dev/null) == gpg* ]] && kill -9 "$pid" 2>/dev/null
  done
}
trap 'kill_our_gpgs; gpgconf --kill gpg-agent 2>/dev/null; e2e_cleanup' EXIT
gpg --batch --passphrase '' --quick-gen-key receiver@example.org default default never 2>/dev/null ||
  fail "cannot make the key"

section "a few hundred small encrypted packets"
ss queue-init -q q
mkdir plain
kPackets=400
for ((i = 1; i <= kPackets; ++i)); do
  echo "payload $i" | ss prepare -s seq -i - >"$T/plain/fspl-$i.fspl"
done
# One gpg for all of them (--encrypt-files), then into the queue.
gpg --batch --trust-model always -r receiver@example.org --encrypt-files "$T"/plain/*.fspl ||
  fail "gpg --encrypt-files"
for f in "$T"/plain/*.gpg; do mv "$f" "$T/q/jobs/$(basename "$f" .gpg)"; done
expect_eq "packets queued" "$kPackets" "$(find "$T/q/jobs" -name 'fspl-*.fspl' | wc -l)"

section "queue-ls killed during its scan, again and again"
# Each attempt is SIGKILLed as soon as it has replaced the index (a
# checkpoint): however fast or loaded the machine, it dies mid-scan.
index_id() { stat -c %i "$T/q/.safespool-index" 2>/dev/null; }
last=-1 killed=0 completed=0 regressed=0
for ((attempt = 1; attempt <= 40 && !completed; ++attempt)); do
  before=$(index_id)
  "$SAFESPOOL" -l debug queue-ls -q "$T/q" >"$T/ls.out" 2>"$T/ls.err" &
  pid=$!
  bg_started "$pid"
  for ((tick = 0; tick < 600; ++tick)); do # 30 s at most
    kill -0 "$pid" 2>/dev/null || break
    [[ $(index_id) != "$before" ]] && { kill -KILL "$pid"; break; }
    sleep 0.05
  done
  wait "$pid"
  rc=$?
  bg_done "$pid"
  n=$(sed -n 's/.*\.safespool-index: \([0-9]*\) entries.*/\1/p' "$T/ls.err" | tail -1)
  n=${n:-0}
  echo "attempt $attempt: started from $n indexed header(s), exit $rc"
  ((n > last)) || ((last < 0)) || regressed=$((regressed + 1))
  last=$n
  if ((rc == 137)); then
    killed=$((killed + 1))
    kill_our_gpgs
  elif ((rc == 0)); then
    completed=1
  else
    fail "queue-ls exited $rc: $(head -c 300 "$T/ls.err")"
    break
  fi
done
expect_eq "an attempt completed" 1 "$completed"
expect_eq "every attempt started from more than the one before" 0 "$regressed"
expect_match "attempts left a checkpoint of the index mid-scan (and were killed there)" "[1-9][0-9]*" "$killed"
expect_eq "the completed listing shows every packet" "$kPackets" "$(grep -c 'fspl-' "$T/ls.out")"

e2e_finish

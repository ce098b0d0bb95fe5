#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# SafeSpool end to end, on one machine: a sender prepares packets, a file
# transport delivers them out of order, the receiver runs them in order.
#
# Usage: examples/demo.sh
# Env:   SAFESPOOL_DEMO_BIN=/path/to/binary  use that binary, skip install and build
#        SAFESPOOL_SKIP_DEPS=1               skip the package check
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
heading() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
# show [<FILE] CMD...: prints the command line as typed, then runs it.
show() {
  local stdin=/dev/stdin line='$' arg
  if [[ $1 == '<'* ]]; then stdin=${1#<}; shift; fi
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./=:+-]+$ ]]; then line+=" $arg"; else line+=" '$arg'"; fi
  done
  [[ $stdin != /dev/stdin ]] && line+=" < $stdin"
  printf '%s\n' "$line"
  "$@" <"$stdin"
}

if [[ -n "${SAFESPOOL_DEMO_BIN:-}" ]]; then
  ss=$SAFESPOOL_DEMO_BIN
else
  heading "Installing missing packages, building"
  scripts/install-deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j2 --target safespool
  ss=$root/build/safespool
fi
[[ -x "$ss" ]] || { echo "demo: no binary at $ss" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/safespool-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir sender transport
# Short names for the narration; the real binary runs.
safespool() { "$ss" "$@"; }

heading "Receiver: create the queue"
show safespool queue-init -q queue
show ls -A queue

heading "Sender: prepare five packets (sequence numbers from sender/seq)"
head -c 250000 /dev/urandom >sender/backup.bin
printf 'hello from the sender\n' >sender/note.txt
echo '# 1: a command packet with a payload, an FSPL_SET_ variable and two params'
FSPL_SET_ORIGIN=laptop safespool prepare -s sender/seq -i sender/note.txt -- note 'two words' >transport/p1
echo '# 2: a NOP packet (always succeeds, runs nothing)'
safespool prepare-nop -s sender/seq >transport/p2
echo '# 3: a 250 kB payload, compressed with the zstd CLI'
safespool prepare -s sender/seq -i sender/backup.bin -- backup | zstd -q -c >transport/p3.zst
echo '# 4: params only, no payload'
safespool prepare -s sender/seq -- ping >transport/p4
echo '# 5: a payload from a pipe, compressed'
date -u +%FT%TZ | FSPL_SET_ORIGIN=cron safespool prepare -s sender/seq -i - -- stamp | zstd -q -c >transport/p5.zst
show safespool prepare-get-next -s sender/seq
echo "payload checksums on the sender side:"
(cd sender && sha256sum note.txt backup.bin | sed 's/^/  /')

heading "Transport: deliver the packets OUT OF ORDER (5, 2, 4 by queue-write; 3, 1 by gen-filename + mv)"
for p in p5.zst p2 p4; do
  show "<transport/$p" safespool queue-write -q queue
done
for p in p3.zst p1; do
  name=$(safespool gen-filename)
  cp "transport/$p" "queue/$name.part"      # a transport writes under a temporary name,
  show mv "queue/$name.part" "queue/jobs/$name"  # then renames into jobs/ on the same filesystem
done

heading "Receiver: list the queue (the decoder passes plain packets through)"
show safespool queue-ls -q queue -d 'zstd -dcfq'

heading "Receiver: inspect job 1 (the environment its consumer will get)"
show safespool queue-info -q queue -j 1 -d 'zstd -dcfq'

heading "Receiver: process the queue in sequence order"
cat >consumer.sh <<'SH'
#!/bin/sh
# Prints what it was given: sequence number, checksum of stdin, params.
sum=$(sha256sum | cut -d' ' -f1)
echo "  job FSPL_SEQ=$FSPL_SEQ origin=${FSPL_SET_ORIGIN:--} params=[$*] stdin sha256=$sum"
SH
chmod +x consumer.sh
show safespool queue-process -q queue -d 'zstd -dcfq' --allow-job-params ./consumer.sh
echo "(job 2 is a NOP packet: it succeeds without running the consumer)"

heading "Receiver: the queue is empty, the next sequence number is 6"
show safespool queue-ls -q queue -d 'zstd -dcfq'
show safespool queue-get-next -q queue

heading "Done"

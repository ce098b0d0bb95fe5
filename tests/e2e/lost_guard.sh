#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# A guard lost between starting a consumer and saying so: the processor
# never learns the consumer's pid, and yet that consumer must not run on
# after the processor gave the job up — with a cut payload's pipe, or on
# the job file — nor may a second consumer start on descriptors the first
# one moved. A stand-in guard (below) starts the consumer as the real one
# does, in its cgroup when it is given one, waits until it runs, and exits
# without an answer. The processor kills what it can find of that
# consumer — by the job's cgroup (per-job cgroups), by the pipe it reads,
# by the job file as its standard input — fails the job (exit 69) and does
# not start it again in this run.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
cd "$T" || exit 1
safespool_only || { echo "safespool only"; e2e_finish; exit; }

[[ -x /usr/bin/python3 ]] || fail "python3 is needed (scripts/install-deps.sh installs it)"
cat >lost-guard <<'PY'
#!/usr/bin/python3
# Takes one 'c' order, starts the consumer as safespool-guard does, waits
# until it has noted its pid, and exits without answering.
import os, socket, struct, time
lifeline = socket.socket(fileno=0)
msg, fds, _, _ = socket.recv_fds(lifeline, 16, 8)
request = os.pread(fds[0], 1 << 24, 0)
argc, envc = struct.unpack("=II", request[:8])
parts = request[8:].split(b"\0")
path, argv, env = parts[0], parts[1:1 + argc], parts[1 + argc:1 + argc + envc]
if os.fork() == 0:
    os.setpgid(0, 0)
    if b"g" in msg[1:]:
        os.write(os.open("cgroup.procs", os.O_WRONLY, dir_fd=fds[-1]), b"0")
    for i in range(3):
        os.dup2(fds[1 + i], i)
    os.execve(path, argv, dict(e.split(b"=", 1) for e in env))
for _ in range(200):
    if os.path.getsize("CONSUMERS") > 0:
        break
    time.sleep(0.05)
os._exit(0)
PY
sed -i "s|CONSUMERS|$T/consumers|" lost-guard
chmod +x lost-guard

# The consumers note their pids, read a little, and wait.
consumer=(sh -- -c "echo \$\$ >>'$T/consumers'; head -c 5 >/dev/null; exec sleep 30")
trap 'xargs -r kill -9 <"$T/consumers" 2>/dev/null; e2e_cleanup' EXIT

# alive_after PIDFILE: the pids in it still alive after up to 2 s.
alive_after() {
  local pid alive
  for ((i = 0; i < 40; ++i)); do
    alive=""
    while read -r pid; do kill -0 "$pid" 2>/dev/null && alive+="$pid "; done <"$1"
    [[ -z $alive ]] && break
    sleep 0.05
  done
  echo "$alive"
}

# lose MODE PACKET: one job under the lost guard.
lose() {
  local mode=$1 packet=$2
  : >consumers
  ss queue-init -q "q.$mode"
  cp "$packet" "q.$mode/jobs/fspl-1.fspl"
  if [[ $mode == subreaper* ]]; then export SAFESPOOL_CGROUP=off; else unset SAFESPOOL_CGROUP; fi
  SAFESPOOL_GUARD=$T/lost-guard ss -l debug queue-process -q "q.$mode" "${consumer[@]}" \
    2>"$mode.err"
  RC=$?
  unset SAFESPOOL_CGROUP
}

# expect_lost MODE: what every case must show.
expect_lost() {
  expect_eq "$1: the job failed (exit 69: the guard gave no answer)" 69 "$RC"
  expect_eq "$1: one consumer: the job is not started again in this run" 1 "$(wc -l <consumers)"
  expect_eq "$1: no consumer runs on" "" "$(alive_after consumers)"
  expect_eq "$1: nextseq did not move" 1 "$(cat "q.$1/nextseq")"
}

echo "a payload the consumers read a little of" | ss prepare -s seq -i - >plain.pkt
echo "a payload the consumers read a little of" | ss prepare -s seq.z --zstd 3 -i - >zstd.pkt

section "per-job cgroups: a plain packet (the consumer reads the job file)"
lose cgroup plain.pkt
if grep -q 'consumers run in per-job cgroups' cgroup.err; then
  expect_lost cgroup
else
  echo "no per-job cgroups here: $(grep -o 'no per-job cgroups: .*' cgroup.err | head -1)"
fi

section "subreaper alone: a zstd packet (the consumer reads a pipe)"
lose subreaper zstd.pkt
expect_lost subreaper

section "subreaper alone: a plain packet (found by the job file as its stdin)"
lose subreaper-plain plain.pkt
expect_lost subreaper-plain

e2e_finish

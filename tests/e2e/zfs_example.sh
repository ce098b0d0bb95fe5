#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The sneakernet ZFS recipe (examples/zfs), end to end without ZFS: the
# example's send.sh and receive.sh run as they are, with ZFS_SEND_CMD
# pointing at a stand-in "zfs send" that writes a prepared random stream per
# snapshot, and ZFS_RECV_CMD at the probe consumer, which reports how its
# stdin looked when queue-process started it, and a checksum of what it read.
#  - sender: a full stream and incrementals through prepare --zstd into
#    "stick" directories; a send that fails halfway leaves no packet and
#    gives its sequence number back;
#  - trip 1 carries seqs 3 and 4: receive.sh imports them, runs nothing and
#    says what it waits for; trip 2 carries 1, 2 and seq 3 again: 1-4 run in
#    order, each once; trip 3 brings seq 2 once more: nothing runs;
#  - a lost packet (seq 5) is resent with send.sh --seq 5: 5 and 6 run;
#  - every receive got the right stream on a pipe already at pipe-max-size,
#    so a libzfs-style consumer found nothing to grow (the hand-off);
#  - a packet goes to a stand-in "zfs receive" that records its command line
#    and snapshot tags;
#  - through a decoder (queue-process -d) that holds the payload back until
#    the probe has looked: the probe's pipe is empty at start and is not the
#    decoder's pipe (fspl's defect: it passes the decoder's pipe on, with
#    data already in it);
#  - the example's systemd units pass `systemd-analyze verify`, backup.conf
#    sets what the units read, and zfs-receive.conf is the drop-in that
#    docs/operations.md shows.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kExample=$E2E_LIB_DIR/../../examples/zfs

if is_fspl_mode; then
  # prepare --zstd and queue-import are SafeSpool's own.
  echo "SKIP: needs safespool (prepare --zstd, queue-import), not fspl"
  exit 0
fi
[[ -x "$TOOLS/probe_consumer" ]] || { fail "no probe_consumer in TOOLS=$TOOLS"; e2e_finish; }
cd "$T" || exit 1
export E2E_T=$T TOOLS SAFESPOOL
mkdir -p bin streams spare

# The stand-in zfs(8). Its "receive" only records what it gets: the
# hand-off is checked with the probe, which queue-process must start itself
# (behind a wrapper, the pipe would fill before the probe looks at it).
cat >bin/zfs <<'SH'
#!/bin/sh
case $1 in
send)
  echo "$*" >>"$E2E_T/send.log"
  eval "snapshot=\${$#}"
  stream=$E2E_T/streams/${snapshot#*@}
  if [ -e "$E2E_T/send.fail" ]; then
    head -c 100000 "$stream"
    echo "zfs send: simulated failure" >&2
    exit 1
  fi
  exec cat "$stream"
  ;;
receive)
  sum=$(sha256sum | cut -c1-16)
  echo "seq=$FSPL_SEQ base=${FSPL_SET_ZFS_BASE:--} snapshot=${FSPL_SET_ZFS_SNAPSHOT:--} sum=$sum $*" \
    >>"$E2E_T/receive.log"
  exit 0
  ;;
esac
exit 2
SH
chmod +x bin/zfs
export ZFS_SEND_CMD="$T/bin/zfs send" SAFESPOOL_OPTS="--stall-timeout 30"
# The probe takes no target dataset: the one receive.sh appends becomes the
# path of its --started marker. Its report goes to stdout, one line per job.
export ZFS_RECV_CMD="$TOOLS/probe_consumer --started"
kDataset=$T/probe.started

# The streams: one per snapshot, each larger than a default pipe (64 KiB).
for n in 1 2 3 4 5 6 7 8; do
  head -c $((n == 1 ? 1500000 : 150000 + n * 50000)) /dev/urandom >"streams/s$n"
  # What the probe must report for it: its length and FNV-1a checksum.
  "$TOOLS/probe_consumer" <"streams/s$n" | grep -o 'bytes=[0-9]* fnv=[0-9a-f]*' >"streams/s$n.sum"
done
max_pipe=$(cat /proc/sys/fs/pipe-max-size)

# send NAME ARGS...: send.sh ARGS (status in RC, output in $T/NAME.out/err).
send() {
  local name=$1
  shift
  run "$name" timeout -k 5 "$E2E_TIMEOUT" "$kExample/send.sh" -s "$T/seq" "$@"
}
# send_ok NAME SEQ ARGS...: a send that must work and make packet SEQ; the
# packet's path is in $T/NAME.path.
send_ok() {
  local name=$1 seq=$2
  shift 2
  send "$name" "$@"
  expect_eq "$name: exit status" 0 "$RC"
  ((RC == 0)) || show_err "$name"
  sed -n "s/^seq $seq: .* in \\(.*\\)\$/\\1/p" "$T/$name.out" >"$T/$name.path"
  [[ -f "$(cat "$T/$name.path")" ]] && pass || fail "$name: no packet for seq $seq ($(cat "$T/$name.out"))"
}
# receive NAME STICK: receive.sh from STICK into the queue; the probe's
# reports are appended to $T/reports.log.
receive() {
  run "$1" timeout -k 5 "$E2E_TIMEOUT" "$kExample/receive.sh" -q "$T/queue" "$2" "$kDataset"
  expect_eq "$1: exit status" 0 "$RC"
  ((RC == 0)) || show_err "$1"
  grep '^fifo=' "$T/$1.out" >>"$T/reports.log"
}
packets_in() { find "$1" -type f | wc -l; }
# expected_reports N: the probe's reports for seqs 1..N: a pipe already at
# pipe-max-size, which the probe did not have to grow, and all of the stream.
expected_reports() {
  local n
  for ((n = 1; n <= $1; n++)); do
    echo "fifo=1 pipe_size=$max_pipe grew=0 $(cat "streams/s$n.sum")"
  done
}
# reports: what the probes reported so far, without "waiting=": queue-process
# feeds the pipe as soon as the consumer is exec'd, so how much sits there
# when the probe gets to look is timing (the gated trip below pins it down).
reports() { sed 's/ waiting=[0-9]*//' "$T/reports.log" 2>/dev/null; }

section "sender: a full stream, incrementals, a send failing halfway"
mkdir -p stick1 stick2 stick3 stick4 stick5 stick6 stick7
send_ok full 1 tank/fs@s1 stick2
send_ok inc2 2 --from tank/fs@s1 tank/fs@s2 stick2
touch send.fail
send failed --from tank/fs@s2 tank/fs@s3 stick1
rm send.fail
((RC != 0)) && pass || fail "send.sh succeeded although zfs send failed"
expect_match "failed send: the error names zfs send and the freed number" \
  '.*zfs send -i tank/fs@s2 tank/fs@s3 failed \(status 1\).*seq 3 is free again.*' \
  "$(tr '\n' ' ' <"$T/failed.err")"
expect_eq "failed send: nothing on the stick, not even a part" "" "$(ls -A stick1)"
expect_eq "failed send: the sequence number is given back" 3 "$("$SAFESPOOL" prepare-get-next -s seq)"
send_ok inc3 3 --from tank/fs@s2 tank/fs@s3 stick1
send_ok inc4 4 --from tank/fs@s3 tank/fs@s4 stick1
expect_eq "zfs send command lines" "send tank/fs@s1
send -i tank/fs@s1 tank/fs@s2
send -i tank/fs@s2 tank/fs@s3
send -i tank/fs@s2 tank/fs@s3
send -i tank/fs@s3 tank/fs@s4" "$(cat send.log)"
expect_match "sender's log" \
  "seq=1 base=- snapshot=tank/fs@s1 file=fspl-.*\.fspl ok seq=2 .* ok seq=3 base=tank/fs@s2 snapshot=tank/fs@s3 file=.* failed: .* seq=3 .* ok seq=4 base=tank/fs@s3 snapshot=tank/fs@s4 file=.* ok " \
  "$(tr '\n' ' ' <seq.log)"
magics=$(for f in stick1/* stick2/*; do head -c 4 "$f" | xxd -p; done | sort -u)
expect_eq "packets are zstd frames" 28b52ffd "$magics"
cp "$(cat full.path)" "$(cat inc2.path)" "$(cat inc3.path)" spare/ # copies, for later
expect_ok queue_init "$SAFESPOOL" queue-init -q "$T/queue"

section "trip 1: seqs 3 and 4 arrive first"
receive trip1 stick1
expect_eq "trip 1: nothing runs without seq 1" "" "$(reports)"
expect_eq "trip 1: packets left on the stick" 0 "$(packets_in stick1)"
expect_eq "trip 1: jobs queued" 2 "$(job_count "$T/queue")"
expect_match "trip 1: receive.sh says what the queue waits for" '.*waiting for 1.*' \
  "$(tr '\n' ' ' <"$T/trip1.err")"

section "trip 2: seqs 1 and 2, and seq 3 a second time"
cp "spare/$(basename "$(cat inc3.path)")" stick2/
receive trip2 stick2
expect_eq "trip 2: import summary" "imported 2, already queued 1, already processed 0, left for an operator 0, failed 0, ignored 0" \
  "$(grep '^imported' "$T/trip2.out")"
expect_eq "trip 2: receives 1-4 in order, once each, on a full-size pipe, whole" \
  "$(expected_reports 4)" "$(reports)"
expect_eq "trip 2: stick emptied (the duplicate too)" 0 "$(packets_in stick2)"
expect_eq "trip 2: queue empty" 0 "$(job_count "$T/queue")"
expect_eq "trip 2: queue next" 5 "$("$SAFESPOOL" queue-get-next -q "$T/queue")"

section "trip 3: seq 2 once more"
cp "spare/$(basename "$(cat inc2.path)")" stick3/
receive trip3 stick3
expect_eq "trip 3: import summary" "imported 0, already queued 0, already processed 1, left for an operator 0, failed 0, ignored 0" \
  "$(grep '^imported' "$T/trip3.out")"
expect_eq "trip 3: nothing runs again" "$(expected_reports 4)" "$(reports)"

section "a lost packet, resent under its number"
send_ok inc5 5 --from tank/fs@s4 tank/fs@s5 stick4
send_ok inc6 6 --from tank/fs@s5 tank/fs@s6 stick4
rm "$(cat inc5.path)" # lost on the way
receive trip4 stick4
expect_eq "trip 4: seq 6 waits for seq 5" "$(expected_reports 4)" "$(reports)"
expect_match "trip 4: receive.sh says it waits for 5" '.*waiting for 5.*' "$(tr '\n' ' ' <"$T/trip4.err")"
send_ok resend5 5 --seq 5 --from tank/fs@s4 tank/fs@s5 stick5
expect_eq "a resend leaves the sequence file alone" 7 "$("$SAFESPOOL" prepare-get-next -s seq)"
expect_match "the sender's log marks the resend" "seq=5 base=tank/fs@s4 snapshot=tank/fs@s5 file=fspl-.*\.fspl ok \(resend\)" \
  "$(tail -n 1 seq.log)"
receive trip5 stick5
expect_eq "trip 5: receives 1-6 in order, once each, on a full-size pipe, whole" \
  "$(expected_reports 6)" "$(reports)"
expect_eq "trip 5: queue next" 7 "$("$SAFESPOOL" queue-get-next -q "$T/queue")"

section "zfs receive's command line and the snapshot tags"
send_ok inc7 7 --from tank/fs@s6 tank/fs@s7 stick6
ZFS_RECV_CMD="$T/bin/zfs receive -u -F" run trip6 timeout -k 5 "$E2E_TIMEOUT" \
  "$kExample/receive.sh" -q "$T/queue" stick6 backup/fs
expect_eq "trip 6: exit status" 0 "$RC"
expect_eq "trip 6: what zfs receive got" \
  "seq=7 base=tank/fs@s6 snapshot=tank/fs@s7 sum=$(sha256sum <streams/s7 | cut -c1-16) receive -u -F backup/fs" \
  "$(cat receive.log 2>/dev/null)"
expect_eq "a full stream has no base tag" "FSPL_SET_ZFS_SNAPSHOT=tank/fs@s1" \
  "$("$SAFESPOOL" stdin-info <"spare/$(basename "$(cat full.path)")" | grep '^FSPL_SET_')"

section "hand-off, gated: an empty pipe of its own when the consumer starts"
# The decoder gives the header at once, then waits until the probe has
# recorded its stdin (its --started marker, which the gate then removes)
# before it lets any payload byte through. It notes which pipe it writes to.
cat >bin/gate <<'PY'
#!/usr/bin/env python3
import os, subprocess, sys, time
t = os.environ["E2E_T"]
with open(t + "/gate.pipe", "w") as f:
    f.write(os.readlink("/proc/self/fd/1") + "\n")
z = subprocess.Popen(["zstd", "-dcf"], stdout=subprocess.PIPE)  # stdin: the job file
out = sys.stdout.buffer
def read(n):
    data = z.stdout.read(n)
    if len(data) != n:
        sys.exit("gate: packet truncated")
    return data
prefix = read(30)
out.write(prefix + read(int.from_bytes(prefix[14:22], "big")))
out.flush()
marker = t + "/probe.started"
for _ in range(2000):
    if os.path.exists(marker):
        os.remove(marker)
        break
    time.sleep(0.005)
else:
    sys.exit("gate: the consumer never started")
while chunk := z.stdout.read(1 << 16):
    out.write(chunk)
sys.exit(z.wait())
PY
chmod +x bin/gate
send_ok inc8 8 --from tank/fs@s7 tank/fs@s8 stick7
# The earlier trips' probes left their marker: the gate must wait for this one's.
rm -f "$kDataset"
SAFESPOOL_OPTS="--stall-timeout 30 --decoder $T/bin/gate" ZFS_RECV_CMD="$TOOLS/probe_consumer --report --started" \
  run trip7 timeout -k 5 "$E2E_TIMEOUT" "$kExample/receive.sh" -q "$T/queue" stick7 "$kDataset"
expect_eq "trip 7: exit status" 0 "$RC"
((RC == 0)) || show_err trip7
report=$(grep '^fifo=' "$T/trip7.out")
# field NAME: NAME's value in the report.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $report"; }
expect_eq "trip 7: bytes in the pipe when the consumer started" 0 "$(field waiting)"
expect_eq "trip 7: pipe size, and whether the probe grew it" "$max_pipe 0" "$(field pipe_size) $(field grew)"
expect_eq "trip 7: the whole stream" "$(cat streams/s8.sum)" "bytes=$(field bytes) fnv=$(field fnv)"
expect_match "trip 7: stdin is a pipe" 'pipe:\[[0-9]+\]' "$(field stdin)"
gate_pipe=$(cat gate.pipe 2>/dev/null)
expect_match "trip 7: the decoder wrote to a pipe" 'pipe:\[[0-9]+\]' "$gate_pipe"
[[ "$(field stdin)" != "$gate_pipe" ]] && pass ||
  fail "trip 7: the consumer was handed the decoder's own pipe ($gate_pipe)"

section "systemd: units, env file, drop-in"
if command -v systemd-analyze >/dev/null; then
  U=$T/units
  mkdir -p "$U"
  # verify insists that ExecStart's binary exists: use the one under test.
  sed "s|/usr/bin/safespool|$SAFESPOOL|g" "$kExample/safespool-stick-import@.service" \
    >"$U/safespool-stick-import@.service"
  cp "$kExample/media-stick.mount" "$U/"
  out=$(cd "$U" && SYSTEMD_LOG_LEVEL=notice timeout 30 systemd-analyze verify --man=no \
    "$U/safespool-stick-import@backup.service" "$U/media-stick.mount" 2>&1)
  rc=$?
  ((rc == 0)) && [[ -z "$out" ]] && pass ||
    fail "systemd-analyze verify: exit status $rc, output: $out"
  expect_eq "mount unit name matches Where=" media-stick.mount \
    "$(systemd-escape -p --suffix=mount "$(sed -n 's/^Where=//p' "$U/media-stick.mount")")"
  expect_eq "the mount starts with the labelled device" \
    "WantedBy=$(systemd-escape -p --suffix=device "$(sed -n 's/^What=//p' "$U/media-stick.mount")")" \
    "$(grep '^WantedBy=' "$U/media-stick.mount")"
else
  # scripts/install-deps.sh installs it (package systemd).
  echo "note: systemd-analyze not installed; units not verified"
fi
conf=$kExample/backup.conf
bad=$(grep -Ev '^[[:space:]]*(#|$)' "$conf" | grep -Ev '^SAFESPOOL_(QUEUE|COMMAND|OPTS|STICK|IMPORT_OPTS)=')
expect_eq "backup.conf: only SAFESPOOL_QUEUE/COMMAND/OPTS/STICK/IMPORT_OPTS" "" "$bad"
# The import reads encrypted packets with the key of the guide's layout, in
# a sandbox where that GnuPG home is writable (gpg-agent's sockets).
kImport=$kExample/safespool-stick-import@.service
expect_eq "stick import: its GnuPG home" \
  'Environment="SAFESPOOL_IMPORT_OPTS=--gnupg-home /var/lib/safespool/gnupg"' \
  "$(grep '^Environment="SAFESPOOL_IMPORT_OPTS=' "$kImport")"
grep -q '^ExecStart=.* queue-import .*\$SAFESPOOL_IMPORT_OPTS' "$kImport" && pass ||
  fail "stick import: ExecStart does not pass \$SAFESPOOL_IMPORT_OPTS"
grep -Eq '^ReadWritePaths=.* -/var/lib/safespool( |$)' "$kImport" && pass ||
  fail "stick import: /var/lib/safespool is not writable"
# zfs receive -u: the service's own mount namespace would take a mounted
# dataset away with it (docs/operations.md, "zfs receive").
expect_match "receive.sh receives unmounted by default" '.*ZFS_RECV_CMD:-zfs receive -u -F.*' \
  "$(grep 'read -ra recv_cmd' "$kExample/receive.sh")"
expect_eq "backup.conf: the consumer" "SAFESPOOL_COMMAND=/sbin/zfs -- receive -u -F backup/fs" \
  "$(grep '^SAFESPOOL_COMMAND=' "$conf")"
# The drop-in shipped here is the one docs/operations.md shows (and
# tests/e2e/systemd_units.sh verifies).
docs_dropin=$(sed -n '/<!-- zfs-dropin-begin -->/,/<!-- zfs-dropin-end -->/{/^\[/,/^```/p}' \
  "$E2E_LIB_DIR/../../docs/operations.md" | sed '/^```/d')
expect_eq "zfs-receive.conf = the drop-in in docs/operations.md" "$docs_dropin" \
  "$(sed -n '/^\[/,$p' "$kExample/zfs-receive.conf")"

e2e_finish

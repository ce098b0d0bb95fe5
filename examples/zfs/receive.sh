#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# receive.sh: receiver side of sneakernet ZFS replication. Moves the packets
# from the stick into the queue, then applies them in sequence order with
# `zfs receive`, one packet (one stream) per run of the consumer.
#
# Usage:
#   receive.sh -q QUEUE [-r RECEIPTS] DIR DATASET
#
#   -q QUEUE     the queue (made once with `safespool queue-init -q QUEUE`)
#   -r RECEIPTS  write a receipt for the sender into RECEIPTS after each job
#                (take them back on the stick: send.sh's outbox-status reads
#                them), and receive resumably: a receive that fails halfway
#                keeps its partial state, and its receipt carries the resume
#                token (zfs-receive-resumable), which resume.sh turns into a
#                packet that replaces the failed one
#   DIR          the packets' directory on the stick, as given to send.sh
#   DATASET      the target, e.g. backup/fs: the last argument of zfs receive
#
# Example:
#   receive.sh -q /var/spool/safespool/backup -r /media/stick/safespool/receipts \
#     /media/stick/safespool/backup backup/fs
#
# queue-import copies each packet into the queue (under a temporary name,
# synced, renamed) and only then deletes it from the stick; a packet that is
# already queued or was already processed is not imported again, so the same
# stick (or a second copy of a packet) does no harm. Packets may arrive in any
# order: queue-process runs the next number and stops at a gap. At the end,
# if the queue is waiting or blocked, `safespool queue-status` says for what.
#
# Exit status: queue-import's if it failed (65, some files on DIR were not
# packets, is only a warning), else queue-process's (0 also when waiting at a
# gap, 1 a job failed, 75 the queue is busy; see safespool(1)).
#
# Env: ZFS_RECV_CMD    the receive command, split at whitespace; DATASET is
#                      appended (default "zfs receive -u -F"; with -r,
#                      "zfs-receive-resumable -u -F" from this directory)
#      SAFESPOOL       the safespool binary (default: safespool)
#      SAFESPOOL_OPTS  queue-process options, split at whitespace
#                      (default "--stall-timeout 900"); e.g. add
#                      "--sign-with KEY" to sign the receipts
set -uo pipefail

die() {
  echo "receive.sh: $*" >&2
  exit 1
}
usage() {
  sed -n '/^# Usage:/,/^# Example:/{/^# Example:/d;s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
  exit 64
}

queue='' receipts=''
while [[ $# -gt 0 ]]; do
  case $1 in
    -q) [[ $# -ge 2 ]] || usage; queue=$2; shift 2 ;;
    -r) [[ $# -ge 2 ]] || usage; receipts=$2; shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
[[ $# == 2 && -n "$queue" ]] || usage
dir=$1 dataset=$2
[[ -d "$dir" ]] || die "$dir is not a directory (is the stick mounted?)"
safespool=${SAFESPOOL:-safespool}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -n "$receipts" ]]; then
  read -ra recv_cmd <<<"${ZFS_RECV_CMD:-$here/zfs-receive-resumable -u -F}"
else
  read -ra recv_cmd <<<"${ZFS_RECV_CMD:-zfs receive -u -F}"
fi
((${#recv_cmd[@]} > 0)) || die "ZFS_RECV_CMD is empty"
read -ra opts <<<"${SAFESPOOL_OPTS---stall-timeout 900}"
if [[ -n "$receipts" ]]; then
  mkdir -p "$receipts" || die "cannot make $receipts"
  opts+=(--receipts-dir "$receipts")
fi

# 1. From the stick into the queue.
"$safespool" queue-import -q "$queue" "$dir"
status=$?
case $status in
  0) ;;
  65) echo "receive.sh: warning: some files in $dir are not packets; they were left there" >&2 ;;
  *) die "queue-import from $dir into $queue failed (status $status)" ;;
esac

# 2. Apply what is next in sequence. "--": the command's own options (-u, -F)
# are not safespool's.
"$safespool" queue-process -q "$queue" "${opts[@]}" \
  "${recv_cmd[0]}" -- "${recv_cmd[@]:1}" "$dataset"
status=$?

# 3. Say what the queue still waits for (a packet not carried yet) or what
# blocks it (a failed receive).
if ! report=$("$safespool" queue-status -q "$queue" 2>&1); then
  printf 'receive.sh: %s not done:\n%s\n' "$queue" "$report" >&2
fi
exit "$status"

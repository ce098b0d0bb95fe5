#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# send.sh: sender side of sneakernet ZFS replication. One `zfs send` stream
# becomes one SafeSpool packet (zstd-compressed) in a directory on the stick.
#
# Usage:
#   send.sh -s SEQFILE [--from BASE] [--seq N] [--outbox OUTBOX] SNAPSHOT DIR
#
#   -s SEQFILE   the sender's sequence file (one per receiving queue)
#   --from BASE  incremental from snapshot BASE (`zfs send -i BASE SNAPSHOT`);
#                without it, a full stream of SNAPSHOT
#   --seq N      resend: make the packet under number N, e.g. for a packet
#                that was lost on the way; SEQFILE is not changed
#   --outbox OUTBOX  keep a copy of the packet in OUTBOX, for
#                `safespool outbox-status --outbox OUTBOX --receipts DIR`
#                and resume.sh, once the receiver's receipts come back
#   DIR          where the packet goes, e.g. /media/stick/safespool/backup
#
# Example:
#   send.sh -s /var/lib/safespool-send/backup.seq --from tank/fs@2024-05-01 \
#     tank/fs@2024-05-02 /media/stick/safespool/backup
#
# The packet is written as DIR/.fspl-….part, synced, then renamed to
# DIR/fspl-….fspl, so a stick pulled too early never carries half a packet
# under a packet's name. If `zfs send` (or anything else) fails, the partial
# file is removed and SEQFILE is set back to the number the packet would
# have had: the receiver would otherwise wait for that number for ever.
# Every outcome is appended to SEQFILE.log: "seq=N base=… snapshot=… file=…"
# and "ok", "ok (resend)" or "failed: REASON".
# Runs of send.sh on the same SEQFILE take turns (flock on SEQFILE.send.lock).
#
# The packet carries the snapshot names: the receiver's consumer sees them as
# FSPL_SET_ZFS_SNAPSHOT and (incremental only) FSPL_SET_ZFS_BASE, and
# `safespool queue-info` shows them.
#
# Env: ZFS_SEND_CMD  the send command, split at whitespace (default "zfs send";
#                    e.g. "zfs send -w" for raw encrypted streams)
#      SAFESPOOL     the safespool binary (default: safespool)
#      SAFESPOOL_ZSTD_LEVEL  zstd level for prepare --zstd (default 3)
set -uo pipefail

die() {
  echo "send.sh: $*" >&2
  exit 1
}
usage() {
  sed -n '/^# Usage:/,/^# Example:/{/^# Example:/d;s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
  exit 64
}

seqfile='' base='' resend='' outbox=''
while [[ $# -gt 0 ]]; do
  case $1 in
    --outbox) [[ $# -ge 2 ]] || usage; outbox=$2; shift 2 ;;
    -s) [[ $# -ge 2 ]] || usage; seqfile=$2; shift 2 ;;
    --from) [[ $# -ge 2 ]] || usage; base=$2; shift 2 ;;
    --seq) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage; resend=$2; shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
[[ $# == 2 && -n "$seqfile" ]] || usage
snapshot=$1 dir=$2
[[ $snapshot == *@* ]] || die "$snapshot is not a snapshot (DATASET@NAME)"
[[ -z "$base" || $base == *@* ]] || die "--from $base is not a snapshot (DATASET@NAME)"
[[ -d "$dir" ]] || die "$dir is not a directory (is the stick mounted?)"
[[ -z "$outbox" || -d "$outbox" ]] || die "--outbox $outbox is not a directory"
safespool=${SAFESPOOL:-safespool}
read -ra send_cmd <<<"${ZFS_SEND_CMD:-zfs send}"
((${#send_cmd[@]} > 0)) || die "ZFS_SEND_CMD is empty"

# One send.sh at a time per sequence file: the number is read, used and, on
# failure, given back, all under this lock.
exec 9>>"$seqfile.send.lock" || die "cannot open $seqfile.send.lock"
flock -w 600 9 || die "another send.sh holds $seqfile.send.lock"

# A resend uses a throwaway sequence file set to N.
use_seqfile=$seqfile
if [[ -n "$resend" ]]; then
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/send.sh.XXXXXX") || die "cannot create a temporary directory"
  trap 'rm -rf "$tmp"' EXIT
  use_seqfile=$tmp/seq
  "$safespool" prepare-set-next -s "$use_seqfile" "$resend" || die "cannot set up seq $resend"
fi
seq=$("$safespool" prepare-get-next -s "$use_seqfile") || die "cannot read $use_seqfile"
name=$("$safespool" gen-filename) || die "safespool gen-filename failed"
part=$dir/.$name.part
log() { echo "seq=$seq base=${base:--} snapshot=$snapshot file=$name $*" >>"$seqfile.log"; }

# give_back: the packet is not going anywhere, so neither is its number.
give_back() {
  rm -f "$part"
  if [[ -z "$resend" && "$("$safespool" prepare-get-next -s "$seqfile")" == $((seq + 1)) ]]; then
    "$safespool" prepare-set-next -s "$seqfile" "$seq" || echo "send.sh: could not set $seqfile back to $seq" >&2
  fi
  log "failed: $1"
  die "$1; no packet written, seq $seq is free again"
}

send_args=("${send_cmd[@]}")
[[ -n "$base" ]] && send_args+=(-i "$base")
send_args+=("$snapshot")
# FSPL_SET_* in prepare's environment go into the packet.
tags=(FSPL_SET_ZFS_SNAPSHOT="$snapshot")
[[ -n "$base" ]] && tags+=(FSPL_SET_ZFS_BASE="$base")
"${send_args[@]}" |
  env "${tags[@]}" "$safespool" prepare --zstd "${SAFESPOOL_ZSTD_LEVEL:-3}" -s "$use_seqfile" -i - >"$part"
statuses=("${PIPESTATUS[@]}")
((statuses[0] == 0)) || give_back "${send_args[*]} failed (status ${statuses[0]})"
((statuses[1] == 0)) || give_back "safespool prepare failed (status ${statuses[1]})"
# On the stick before it has a packet's name; the rename, then the directory.
sync "$part" || give_back "cannot sync $part"
mv "$part" "$dir/$name" || give_back "cannot rename $part"
sync "$dir" || echo "send.sh: warning: cannot sync $dir" >&2
# The outbox copy, under the same name, through a temporary one.
if [[ -n "$outbox" ]]; then
  { cp "$dir/$name" "$outbox/.$name.tmp" && sync "$outbox/.$name.tmp" &&
    mv "$outbox/.$name.tmp" "$outbox/$name"; } ||
    echo "send.sh: warning: no copy of $name in $outbox" >&2
fi
# A resend is marked, so "the last snapshot sent" is read from the other lines.
log "ok${resend:+ (resend)}"
echo "seq $seq: ${base:+$base -> }$snapshot in $dir/$name"

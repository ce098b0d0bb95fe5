#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# resume.sh: sender side of a receive that failed halfway on the receiver.
# Reads the receipts that came back, and for each packet whose receive
# failed and left a resume token (receive.sh -r, zfs-receive-resumable),
# makes a packet that replaces it: the rest of the stream, from
# `zfs send -t TOKEN`, as `safespool prepare --supersedes SEQ
# --supersedes-hash SHA256`. The receiver runs it in place of the failed
# packet (its ledger must say that packet failed), and records the failed
# one as superseded; the next receipts then settle both in the outbox.
#
# Usage:
#   resume.sh --outbox OUTBOX --receipts RECEIPTS DIR
#
#   --outbox OUTBOX      the outbox send.sh --outbox keeps its packets in
#   --receipts RECEIPTS  where the receiver's receipts were copied to
#   DIR                  where the new packets go, e.g. /media/stick/safespool/backup
#
# Example:
#   resume.sh --outbox /var/lib/safespool-send/outbox \
#     --receipts /media/stick/safespool/receipts /media/stick/safespool/backup
#
# A packet is resumed once: OUTBOX/resumed.log lists "SHA256 SEQ FILE" for
# each replacement made, and a failed packet listed there is left alone (a
# replacement that fails in turn has a SHA-256 of its own, and its receipt
# a new token). Each replacement is written as DIR/.fspl-….part, synced and
# renamed, then copied into OUTBOX; if `zfs send -t` fails, nothing is left.
# Exit status: 0, also when there was nothing to resume; 1 when a
# replacement could not be made.
#
# Env: ZFS_SEND_CMD   the send command (default "zfs send"); -t TOKEN is added
#      SAFESPOOL      the safespool binary (default: safespool)
#      SAFESPOOL_ZSTD_LEVEL  zstd level for prepare --zstd (default 3)
#      SAFESPOOL_OUTBOX_OPTS  outbox-status options, split at whitespace: use
#                     "--require-signer FPR" so that only the receiver's
#                     signed receipts count (a forged receipt must not make
#                     this host send part of a stream)
# Needs jq.
set -uo pipefail

die() {
  echo "resume.sh: $*" >&2
  exit 1
}
usage() {
  sed -n '/^# Usage:/,/^# Example:/{/^# Example:/d;s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
  exit 64
}

outbox='' receipts=''
while [[ $# -gt 0 ]]; do
  case $1 in
    --outbox) [[ $# -ge 2 ]] || usage; outbox=$2; shift 2 ;;
    --receipts) [[ $# -ge 2 ]] || usage; receipts=$2; shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
[[ $# == 1 && -n "$outbox" && -n "$receipts" ]] || usage
dir=$1
[[ -d "$dir" ]] || die "$dir is not a directory (is the stick mounted?)"
command -v jq >/dev/null || die "jq is needed to read outbox-status --json"
safespool=${SAFESPOOL:-safespool}
read -ra send_cmd <<<"${ZFS_SEND_CMD:-zfs send}"
read -ra status_opts <<<"${SAFESPOOL_OUTBOX_OPTS:-}"
log=$outbox/resumed.log
touch "$log" || die "cannot write $log"

# Failed packets whose latest receipt carries a token: "SEQ SHA256 TOKEN".
status=$("$safespool" outbox-status --outbox "$outbox" --receipts "$receipts" --json "${status_opts[@]}")
(($? <= 1)) || die "safespool outbox-status failed"
todo=$(jq -r '[.packets[] | select(.state == "failed" and .receipt.note != null)
  | select(.receipt.note | test("receive_resume_token="))] | unique_by(.receipt.sha256)[]
  | [.receipt.seq, .receipt.sha256,
     (.receipt.note | capture("receive_resume_token=(?<t>[^\\n]+)").t)] | @tsv' <<<"$status") ||
  die "cannot read outbox-status --json"

failed=0
while IFS=$'\t' read -r seq sha token; do
  [[ -n "$seq" ]] || continue
  if grep -q "^$sha " "$log"; then
    continue # resumed already
  fi
  name=$("$safespool" gen-filename) || die "safespool gen-filename failed"
  part=$dir/.$name.part
  "${send_cmd[@]}" -t "$token" |
    env FSPL_SET_ZFS_RESUME_OF="$seq" "$safespool" prepare --zstd "${SAFESPOOL_ZSTD_LEVEL:-3}" \
      --supersedes "$seq" --supersedes-hash "$sha" -i - >"$part"
  statuses=("${PIPESTATUS[@]}")
  if ((statuses[0] != 0 || statuses[1] != 0)) || ! sync "$part" || ! mv "$part" "$dir/$name"; then
    rm -f "$part"
    echo "resume.sh: seq $seq: ${send_cmd[*]} -t … or prepare failed (status ${statuses[*]}); nothing written" >&2
    failed=1
    continue
  fi
  sync "$dir" || echo "resume.sh: warning: cannot sync $dir" >&2
  { cp "$dir/$name" "$outbox/.$name.tmp" && sync "$outbox/.$name.tmp" &&
    mv "$outbox/.$name.tmp" "$outbox/$name"; } ||
    echo "resume.sh: warning: no copy of $name in $outbox" >&2
  echo "$sha $seq $name" >>"$log"
  echo "seq $seq: resumed from its token in $dir/$name"
done <<<"$todo"
exit "$failed"

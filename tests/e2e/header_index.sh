#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The header index (queuedir/.safespool-index) is a cache and never an
# authority:
#  - a second scan takes unchanged headers from it, and the listing is the same;
#  - a job file rewritten in place (same inode) is listed as it is now, and
#    the processor, which compares each file's whole identity with the
#    index, reads it again instead of running the wrong job;
#  - a damaged or deleted index only costs a rescan;
#  - fspl works on a queue that has one.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
make_consumers
cd "$T" || exit 1
safespool_only || { echo "safespool only"; e2e_finish; exit; }

ss queue-init -q q
for n in 1 2 3; do echo "payload $n" | ss prepare -s seq -i - >"p$n.pkt"; done
for n in 1 2 3; do cp "p$n.pkt" "q/jobs/fspl-$n.fspl"; done
# A packet with seq 4 (a fresh seqfile counts 1, 2, 3, 4).
for n in 1 2 3 4; do echo "four" | ss prepare -s seq4 -i - >p4.pkt; done
# Entries whose files changed in the clock tick the scan that wrote them
# began reading are not trusted ("racy"): let the files age a few ticks.
sleep 0.1

section "a second scan lists the same from the index"
ss queue-ls -q q >ls1.out
expect_eq "the first scan wrote an index" yes "$([[ -s q/.safespool-index ]] && echo yes)"
ss -l debug queue-ls -q q >ls2.out 2>ls2.err
expect_eq "same listing from the index" "$(cat ls1.out)" "$(cat ls2.out)"
expect_match "the second scan read no file" ".*3 header\(s\) from the index, 0 read.*" "$(cat ls2.err)"
expect_match "nor listed jobs/ again" ".*q/jobs is as the header index lists it.*" "$(cat ls2.err)"

section "a file rewritten in place is seen as it is now"
inode=$(stat -c %i q/jobs/fspl-1.fspl)
cat p4.pkt >q/jobs/fspl-1.fspl  # same inode: the index is now wrong about it
expect_eq "same inode" "$inode" "$(stat -c %i q/jobs/fspl-1.fspl)"
ss queue-ls -q q >ls3.out
expect_match "queue-ls shows seq 4 for it" ".*4 .* fspl-1\.fspl.*" "$(tr '\n' ' ' <ls3.out)"
# Put the index back in its wrong state (written before the rewrite).
cp p1.pkt q/jobs/fspl-1.fspl
sleep 0.1
ss queue-ls -q q >/dev/null
cat p4.pkt >q/jobs/fspl-1.fspl
: >"$LOG"
ss -l debug queue-process -q q "$T/bin/record" 2>process.err
expect_eq "nothing ran: there is no seq 1 any more" "" "$(cat "$LOG")"
expect_match "the processor read the rewritten file again" ".*2 header\(s\) from the index, 1 read.*" \
  "$(tr '\n' ' ' <process.err)"
expect_eq "nextseq unchanged" 1 "$(cat q/nextseq)"

section "a damaged or missing index costs a rescan, nothing else"
cp p1.pkt q/jobs/fspl-1.fspl
head -c 100 /dev/urandom >q/.safespool-index
ss queue-ls -q q >ls4.out
expect_eq "a garbage index is ignored" "$(cat ls1.out)" "$(cat ls4.out)"
rm -f q/.safespool-index
: >"$LOG"
ss queue-process -q q "$T/bin/record"
expect_eq "all three ran in order" "1 2 3" "$(sed 's/^seq=\([0-9]*\).*/\1/' "$LOG" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "nextseq advanced" 4 "$(cat q/nextseq)"

section "-n 1 still finds nextseq in a file the index puts far ahead"
# The processor's first scan with -n 1 trusts only seq 1's files fully;
# before it calls seq 1 missing it compares the others too.
ss queue-init -q q1
cp p2.pkt q1/jobs/fspl-2.fspl
cp p4.pkt q1/jobs/fspl-x.fspl # seq 4: beyond a window of one seq
sleep 0.1
ss queue-ls -q q1 >/dev/null
cat p1.pkt >q1/jobs/fspl-x.fspl # now seq 1, same inode
: >"$LOG"
ss queue-process -q q1 -n 1 "$T/bin/record"
expect_eq "seq 1 ran, from the rewritten file" "1" "$(sed 's/^seq=\([0-9]*\).*/\1/' "$LOG")"
expect_eq "nextseq advanced" 2 "$(cat q1/nextseq)"

section "fspl works on a queue with an index"
for n in 1 2; do echo "f$n" | fs prepare -s fseq -i - >"f$n.pkt"; done
fs queue-init -q fq
cp f1.pkt fq/jobs/fspl-a.fspl
cp f2.pkt fq/jobs/fspl-b.fspl
ss queue-ls -q fq >/dev/null
expect_eq "safespool left an index" yes "$([[ -e fq/.safespool-index ]] && echo yes)"
: >"$LOG"
expect_ok fspl.process fs queue-process -q fq "$T/bin/record"
expect_eq "fspl ran both" 2 "$(wc -l <"$LOG")"

e2e_finish

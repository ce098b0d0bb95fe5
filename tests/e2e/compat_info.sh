#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Both tools print the same bytes when they describe the same queue:
#  - queue-ls: header and `{:<20} {:27} filename` lines, sorted by seq,
#    unparsable and foreign files skipped, empty queue = header only;
#  - queue-info -j N: the FSPL_* lines, including FSPL_JOB_QUEUEDIR and
#    FSPL_JOB_FULLPATH exactly as given by -q (relative, absolute, trailing /);
#  - stdin-info and queue-payload/stdin-payload;
#  - in UTC and in a local zone with a half-hour offset.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
cd "$T" || exit 1

fs queue-init -q q
expect_ok ls.empty.ss ss queue-ls -q q
run ls.empty.fs fs queue-ls -q q
expect_same "queue-ls on an empty queue" "$T/ls.empty.fs.out" "$T/ls.empty.ss.out"
expect_eq "queue-ls header" "ID                   creation timestamp          filename" \
  "$(head -n 1 "$T/ls.empty.ss.out")"

# Packets from both tools in one queue, with seqs of every width.
fs prepare-set-next -s seq 7
FSPL_SET_WHO=fspl fs prepare -s seq -i /etc/hostname -- a 'b c' >p7
ss prepare-nop -s seq >p8
ss prepare-set-next -s seq 123456
FSPL_SET_WHO=safespool ss prepare -s seq -i /etc/hostname -- d >p123456
fs prepare-fail -s seq >p123457
fs prepare-set-next -s seq 18446744073709551614   # 20 digits: the full ID column
fs prepare -s seq >pbig
for p in p123456 p7 pbig p8 p123457; do
  deliver q "$p" "fspl-$p.fspl"
done
printf 'garbage' >q/jobs/fspl-garbage.fspl     # unparsable: skipped
cp p7 q/jobs/notajob.txt                        # foreign name: skipped
cp p7 q/jobs/fspl-tmp.fspl.part                 # still being transferred: skipped
mkdir q/jobs/fspl-dir.fspl                      # a directory: skipped

for tz in UTC "$E2E_TZ"; do
  section "TZ=$tz"
  TZ=$tz run "ls.fs.$tz" fs queue-ls -q q
  TZ=$tz expect_ok "ls.ss.$tz" ss queue-ls -q q
  expect_same "queue-ls (TZ=$tz)" "$T/ls.fs.$tz.out" "$T/ls.ss.$tz.out"
  for j in 7 8 123456 123457 18446744073709551614; do
    for qd in q "$T/q" q/ ./q; do
      TZ=$tz run "info.fs.$j" fs queue-info -q "$qd" -j "$j"
      TZ=$tz expect_ok "info.ss.$j" ss queue-info -q "$qd" -j "$j"
      expect_same "queue-info -q $qd -j $j (TZ=$tz)" "$T/info.fs.$j.out" "$T/info.ss.$j.out"
    done
  done
  for p in p7 p8 p123456 p123457 pbig; do
    TZ=$tz run "sinfo.fs.$p" fs stdin-info <"$p"
    TZ=$tz expect_ok "sinfo.ss.$p" ss stdin-info <"$p"
    expect_same "stdin-info $p (TZ=$tz)" "$T/sinfo.fs.$p.out" "$T/sinfo.ss.$p.out"
  done
done
expect_eq "queue-ls lists the 5 packets by seq" "7 8 123456 123457 18446744073709551614" \
  "$(awk 'NR>1{print $1}' "$T/ls.ss.UTC.out" | xargs)"
expect_match "queue-ls line layout" \
  '18446744073709551614 [0-9T:-]{19}\+05:30   fspl-pbig\.fspl' "$(tail -n 1 "$T/ls.ss.$E2E_TZ.out")"

section "payloads"
for j in 7 123456 8; do
  run "pl.fs.$j" fs queue-payload -q q -j "$j"
  expect_ok "pl.ss.$j" ss queue-payload -q q -j "$j"
  expect_same "queue-payload -j $j" "$T/pl.fs.$j.out" "$T/pl.ss.$j.out"
done
expect_same "queue-payload is the input file" /etc/hostname "$T/pl.ss.7.out"
expect_eq "no payload: empty output" 0 "$(stat -c %s "$T/pl.ss.8.out")"

e2e_finish

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# What an operator's tools see of a queue, with the real binary:
#  - queue-status --check: one plugin line and exit 0-3 for a healthy, a
#    waiting and a failing queue, UNKNOWN (3) for a queue that cannot be
#    read (missing, no jobs/, permission denied) and for a bad threshold;
#  - metrics: two queues writing into one textfile directory, one file each,
#    every sample labelled with its own queue, accepted by `promtool check
#    metrics`; the alert rules in examples/prometheus accepted by `promtool
#    check rules` and naming only metrics the program writes;
#  - the signer options on every command that reads a queue, and
#    queue-payload/stdin-payload refusing a forged packet (exit 65);
#  - a mistyped option gets "did you mean".
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kAlerts=$E2E_LIB_DIR/../../examples/prometheus/alerts.yml

if is_fspl_mode; then
  echo "SKIP: queue-status and metrics are SafeSpool's own"
  exit 0
fi
make_consumers
cd "$T" || exit 1

# check NAME WANT_RC ARGS...: queue-status --check ARGS; its line in $LINE.
check() {
  local name=$1 want=$2
  shift 2
  expect_rc "$want" "check-$name" "$SAFESPOOL" queue-status --check "$@"
  LINE=$(cat "$T/check-$name.out")
  expect_eq "check-$name: one line" 1 "$(wc -l <"$T/check-$name.out")"
}
kPerf='jobs=[0-9]+;;;0 oldest_age=[0-9]+s;[0-9]*;[0-9]*;0 last_success_age=([0-9]+s|U);;;0'

section "check mode"
ss queue-init -q "$T/q" || fail "queue-init"
check empty 0 -q "$T/q"
expect_match "empty queue" "SAFESPOOL OK - queue $T/q: healthy, no jobs waiting \\| $kPerf" "$LINE"
expect_match "never processed: last success undetermined" '.* last_success_age=U;;;0' "$LINE"
for n in 1 2 3; do printf 'p%s' "$n" | ss prepare -s "$T/seq" -i - >"$T/p$n"; done
deliver "$T/q" "$T/p2" fspl-2.fspl
deliver "$T/q" "$T/p3" fspl-3.fspl
check waiting 0 -q "$T/q" --warn-age 1h --crit-age 2d
expect_match "waiting, younger than the thresholds" \
  "SAFESPOOL OK - queue $T/q: waiting for 1 \\(have 2-3\\); oldest packet arrived [0-9]+s ago \\| jobs=2;;;0 oldest_age=[0-9]+s;3600;172800;0 last_success_age=U;;;0" \
  "$LINE"
deliver "$T/q" "$T/p1" fspl-1.fspl
expect_ok process "$SAFESPOOL" queue-process -q "$T/q" "$T/bin/record"
check healthy 0 -q "$T/q"
expect_match "after a run" "SAFESPOOL OK - queue $T/q: healthy, no jobs waiting \\| jobs=0;;;0 oldest_age=0s;;;0 last_success_age=[0-9]+s;;;0" "$LINE"
ss prepare-fail -s "$T/seq" >"$T/p4"
deliver "$T/q" "$T/p4" fspl-4.fspl
expect_rc 1 process-fail "$SAFESPOOL" queue-process -q "$T/q" "$T/bin/record"
check failing 2 -q "$T/q"
expect_match "failing is critical" "SAFESPOOL CRITICAL - queue $T/q: failing: job 4 \\(fspl-4.fspl\\) failed: .* \\| $kPerf" "$LINE"

section "check mode: a queue that cannot be read is UNKNOWN"
check missing 3 -q "$T/nowhere"
expect_match "missing queue" "SAFESPOOL UNKNOWN - queue $T/nowhere: .*" "$LINE"
mkdir -p "$T/nojobs"
echo 1 >"$T/nojobs/nextseq"
check nojobs 3 -q "$T/nojobs"
expect_match "no jobs/" "SAFESPOOL UNKNOWN - queue $T/nojobs: .*jobs.*" "$LINE"
check threshold 3 -q "$T/q" --warn-age 2d --crit-age 1h
expect_match "warn above crit" "SAFESPOOL UNKNOWN - .*--warn-age.*--crit-age.*" "$LINE"
check badage 3 -q "$T/q" --warn-age 5x
expect_match "bad duration" "SAFESPOOL UNKNOWN - .*--warn-age.*5x.*" "$LINE"
if ((EUID == 0)) && command -v setpriv >/dev/null; then
  mkdir -m 0700 "$T/private"
  ss queue-init -q "$T/private/q"
  run denied setpriv --reuid=65534 --regid=65534 --clear-groups "$SAFESPOOL" queue-status \
    --check -q "$T/private/q"
  expect_eq "permission denied: exit status" 3 "$RC"
  expect_match "permission denied" "SAFESPOOL UNKNOWN - queue $T/private/q: .*" "$(cat "$T/denied.out")"
fi
expect_rc 64 check-json "$SAFESPOOL" queue-status -q "$T/q" --check --json
expect_rc 64 age-without-check "$SAFESPOOL" queue-status -q "$T/q" --warn-age 1h

section "metrics: one textfile directory, one file per queue"
mkdir -p "$T/textfile" "$T/bin2"
ss queue-init -q "$T/q2" || fail "queue-init q2"
printf 'x' | ss prepare -s "$T/seq2" -i - | ss queue-write -q "$T/q2"
ss queue-set-next -q "$T/q" 5
expect_ok metrics-q "$SAFESPOOL" queue-process -q "$T/q" --metrics-file "$T/textfile/q.prom" "$T/bin/record"
expect_ok metrics-q2 "$SAFESPOOL" queue-process -q "$T/q2" --metrics-file "$T/textfile/q2.prom" "$T/bin/record"
expect_eq "only the two files (no temporary one left)" "q.prom q2.prom" "$(ls "$T/textfile" | tr '\n' ' ' | sed 's/ $//')"
for f in q q2; do
  labels=$(grep -v '^#' "$T/textfile/$f.prom" | grep -o 'queue="[^"]*"' | sort -u)
  expect_eq "$f.prom: every sample has its own queue label" "queue=\"$T/$f\"" "$labels"
  unlabelled=$(grep -v '^#' "$T/textfile/$f.prom" | grep -vc 'queue="')
  expect_eq "$f.prom: no sample without the label" 0 "$unlabelled"
done
prom=$(cat "$T/textfile/q.prom")
expect_match "jobs_total counts the queue's life" \
  ".*safespool_jobs_total\\{queue=\"$T/q\",result=\"success\"\\} 3.*safespool_jobs_total\\{queue=\"$T/q\",result=\"failure\"\\} 1.*" \
  "$(tr '\n' ' ' <<<"$prom")"
expect_match "not blocked, not failing" \
  ".*safespool_blocked\\{queue=\"$T/q\"\\} 0 .*safespool_failing\\{queue=\"$T/q\"\\} 0 .*" "$(tr '\n' ' ' <<<"$prom")"
expect_match "bytes_total" ".*safespool_bytes_total\\{queue=\"$T/q\"\\} 6 .*" "$(tr '\n' ' ' <<<"$prom")"
if command -v promtool >/dev/null; then
  for f in q q2; do
    expect_ok "promtool-metrics-$f" sh -c "promtool check metrics <'$T/textfile/$f.prom'"
  done
  expect_ok promtool-rules promtool check rules "$kAlerts"
else
  # scripts/install-deps.sh installs it (from Debian's prometheus package).
  fail "promtool not installed: run scripts/install-deps.sh"
fi
# Every metric an alert uses is one the program writes.
for name in $(grep -o 'safespool_[a-z_]*' "$kAlerts" | sort -u); do
  grep -q "^$name{" "$T/textfile/q.prom" && pass || fail "alerts.yml uses $name, which is not written"
done

section "the alert rules fire on what a blocked queue writes"
ss queue-init -q "$T/bq" || fail "queue-init bq"
printf 'x' | ss prepare -s "$T/bseq" -i - >"$T/b1"
printf 'y' | ss prepare -s "$T/bseq" -i - | ss queue-write -q "$T/bq"
printf 'garbage' >"$T/bq/jobs/fspl-garbage.fspl" # where packet 1 should be
expect_rc 3 blocked-pass "$SAFESPOOL" queue-process -q "$T/bq" --metrics-file "$T/textfile/bq.prom" "$T/bin/record"
if command -v promtool >/dev/null; then
  # The metrics file, as input series constant for ten minutes.
  {
    echo "rule_files: ['$kAlerts']"
    echo "evaluation_interval: 1m"
    echo "tests:"
    echo "  - interval: 1m"
    echo "    input_series:"
    grep -v '^#' "$T/textfile/bq.prom" | sed -E "s/^([^ ]+) (.*)\$/      - series: '\1'\n        values: '\2x10'/"
    echo "    alert_rule_test:"
    echo "      - eval_time: 6m"
    echo "        alertname: SafeSpoolQueueBlocked"
    echo "        exp_alerts:"
    echo "          - exp_labels: {severity: critical, queue: '$T/bq', reason: unreadable}"
    echo "            exp_annotations:"
    echo "              summary: 'SafeSpool queue $T/bq is blocked (unreadable)'"
    echo "              description: 'Run \`safespool queue-status -q $T/bq\` (with the decoding and signer options of the processor) to see the files and why.'"
    echo "      - eval_time: 6m"
    echo "        alertname: SafeSpoolJobFailing"
    echo "        exp_alerts: []"
  } >"$T/alerts-test.yml"
  expect_ok promtool-test-rules promtool test rules "$T/alerts-test.yml"
fi

section "the signer options on every command that reads a queue"
export GNUPGHOME=$T/gnupg
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill gpg-agent 2>/dev/null; e2e_cleanup' EXIT
for who in sender intruder; do
  gpg --batch --passphrase '' --quick-gen-key "$who@example.org" future-default default never 2>/dev/null ||
    fail "cannot make key $who"
done
fpr() { gpg --with-colons --list-keys "<$1@example.org>" 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}'; }
echo "$(fpr sender)" >"$T/trusted"
ss queue-init -q "$T/sq"
printf 'good' | ss prepare -s "$T/sseq" --sign-with "$(fpr sender)" -i - >"$T/good"
printf 'forged' | ss prepare -s "$T/sseq" --sign-with "$(fpr intruder)" -i - >"$T/forged"
deliver "$T/sq" "$T/good" fspl-1.fspl
deliver "$T/sq" "$T/forged" fspl-2.fspl
pol=(--trusted-signers "$T/trusted")
expect_ok status-policy "$SAFESPOOL" queue-status -q "$T/sq" "${pol[@]}"
expect_ok check-policy "$SAFESPOOL" queue-status -q "$T/sq" --check "${pol[@]}"
expect_ok ls-policy "$SAFESPOOL" queue-ls -q "$T/sq" "${pol[@]}"
expect_ok info-policy "$SAFESPOOL" queue-info -q "$T/sq" -j 1 "${pol[@]}"
expect_ok payload-good "$SAFESPOOL" queue-payload -q "$T/sq" -j 1 "${pol[@]}"
expect_eq "trusted payload" good "$(cat "$T/payload-good.out")"
expect_rc 65 payload-forged "$SAFESPOOL" queue-payload -q "$T/sq" -j 2 "${pol[@]}"
expect_match "forged payload: says why" '.*not trusted.*' "$(cat "$T/payload-forged.err")"
expect_ok payload-forged-nopolicy "$SAFESPOOL" queue-payload -q "$T/sq" -j 2
expect_rc 65 stdin-payload-forged sh -c "'$SAFESPOOL' stdin-payload --require-signer $(fpr sender) <'$T/forged'"
expect_ok stdin-payload-good sh -c "'$SAFESPOOL' stdin-payload --require-signer $(fpr sender) <'$T/good'"

section "a mistyped option gets a suggestion"
expect_rc 64 typo "$SAFESPOOL" queue-process -q "$T/q" --on-eror delete "$T/bin/record"
expect_eq "typo: the suggestion" \
  "safespool: error: unknown option '--on-eror' for queue-process; did you mean '--on-error'?" \
  "$(cat "$T/typo.err")"
expect_rc 64 typo-value "$SAFESPOOL" queue-ls -q "$T/q" --decode zstdd
expect_match "typo in a value" ".*--decode: unknown value 'zstdd'.*did you mean 'zstd'.*" "$(cat "$T/typo-value.err")"

e2e_finish

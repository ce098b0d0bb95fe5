# SPDX-License-Identifier: GPL-3.0-or-later
# Shared helpers for the end-to-end compatibility tests (tests/e2e/compat_*.sh).
#
# A test script starts with   source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
# and ends with               e2e_finish
# In between it runs both tools side by side and records every mismatch with
# `fail`; it keeps going after a failure so that one run shows everything that
# broke, and exits non-zero at the end if anything did.
#
# Environment (set by ctest, see tests/CMakeLists.txt):
#   SAFESPOOL  the binary under test (default: build/safespool)
#   FSPL       the reference Filespooler (default: /usr/bin/fspl)
#   FIXTURES   tests/fixtures
#   TOOLS      the tests build directory (helper programs)
#   E2E_TIMEOUT  seconds any single tool invocation may take (default 20)
#   E2E_KEEP=1   keep the scratch directory for inspection
#
# Running a test with SAFESPOOL=/usr/bin/fspl checks the test itself against the
# reference: the comparisons must all hold, and the checks of SafeSpool's own
# exit codes (guarded by `safespool_only`) are skipped.
#
# Executed directly (ctest also does this, as e2e.lib), this file checks that
# the test environment is usable.

set -uo pipefail

E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SAFESPOOL=${SAFESPOOL:-$E2E_LIB_DIR/../../build/safespool}
FSPL=${FSPL:-/usr/bin/fspl}
FIXTURES=${FIXTURES:-$E2E_LIB_DIR/../fixtures}
TOOLS=${TOOLS:-}
E2E_TIMEOUT=${E2E_TIMEOUT:-20}
E2E_NAME=$(basename "$0" .sh)
# Half-hour offset: RFC 3339 local times must carry it ("+05:30"). A POSIX TZ
# string needs no tzdata.
E2E_TZ='XYZ-5:30'

e2e_failures=0
e2e_checks=0
e2e_skipped=0
e2e_bg_pids=()

T=$(mktemp -d "${TMPDIR:-/tmp}/safespool-e2e-$E2E_NAME.XXXXXX")
export LOG=$T/consumer.log

# bg_started PID / bg_done PID: background processes to kill if the test
# ends early; bg_done once reaped, so that no stale PID is ever signalled.
bg_started() { e2e_bg_pids+=("$1"); }
bg_done() {
  local keep=() pid
  for pid in "${e2e_bg_pids[@]}"; do [[ $pid == "$1" ]] || keep+=("$pid"); done
  e2e_bg_pids=("${keep[@]}")
}

e2e_cleanup() {
  local pid
  for pid in "${e2e_bg_pids[@]}"; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [[ "${E2E_KEEP:-0}" == 1 ]]; then
    echo "scratch directory kept: $T"
  else
    rm -rf "$T"
  fi
}
trap e2e_cleanup EXIT

# ---- reporting ---------------------------------------------------------------

section() { printf -- '--- %s\n' "$*"; }

fail() {
  e2e_failures=$((e2e_failures + 1))
  printf 'FAIL [%s]: %s\n' "$E2E_NAME" "$*" >&2
}

pass() { e2e_checks=$((e2e_checks + 1)); }

# Prints the summary and exits: 0 if every check held.
e2e_finish() {
  local mode=safespool
  is_fspl_mode && mode="reference self-check (SAFESPOOL is fspl)"
  printf '%s: %d checks, %d failed, %d safespool-only skipped [%s]\n' \
    "$E2E_NAME" "$((e2e_checks + e2e_failures))" "$e2e_failures" "$e2e_skipped" "$mode"
  ((e2e_failures == 0))
  exit
}

# True when the binary under test is the reference itself.
is_fspl_mode() {
  [[ "$(readlink -f "$SAFESPOOL")" == "$(readlink -f "$FSPL")" ]]
}

# `if safespool_only; then …; fi` guards checks of SafeSpool's own contract
# (distinct exit codes) that the reference does not share.
safespool_only() {
  if is_fspl_mode; then
    e2e_skipped=$((e2e_skipped + 1))
    return 1
  fi
  return 0
}

# ---- running the tools ---------------------------------------------------------

# Runs with a time limit so that a hang is a failure, not a stuck suite.
ss() { timeout -k 5 "$E2E_TIMEOUT" "$SAFESPOOL" "$@"; }
fs() { timeout -k 5 "$E2E_TIMEOUT" "$FSPL" "$@"; }

# run NAME CMD...: runs CMD with stdout in $T/NAME.out and stderr in
# $T/NAME.err ("/" in NAME becomes "_"); sets RC. A sanitizer report on
# stderr is a failure of its own.
RC=0
run() {
  local name=${1//\//_}
  shift
  "$@" >"$T/$name.out" 2>"$T/$name.err"
  RC=$?
  if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' \
    "$T/$name.err"; then
    fail "$name: sanitizer report:"
    head -n 40 "$T/$name.err" >&2
  fi
  return 0
}

show_err() {
  local name=${1//\//_}
  [[ -s "$T/$name.err" ]] && sed -n '1,15s/^/    stderr: /p' "$T/$name.err" >&2
  return 0
}

# expect_rc WANT NAME CMD...: CMD must exit with exactly WANT.
expect_rc() {
  local want=$1 name=$2
  shift 2
  run "$name" "$@"
  if ((RC == want)); then
    pass
  else
    fail "$name: exit status $RC, expected $want (command: $*)"
    show_err "$name"
  fi
}

# expect_ok NAME CMD...: CMD must exit 0.
expect_ok() { expect_rc 0 "$@"; }

# expect_fail NAME CMD...: CMD must fail in an orderly way: exit status 1-123.
# A timeout (124, 137) or a death by signal (>128) is not an orderly failure.
expect_fail() {
  local name=$1
  shift
  run "$name" "$@"
  if ((RC >= 1 && RC <= 123)); then
    pass
  else
    fail "$name: exit status $RC, expected an error status 1-123 (command: $*)"
    show_err "$name"
  fi
}

# expect_same NAME FILE_A FILE_B: byte-identical files.
expect_same() {
  local name=$1 a=$2 b=$3
  if cmp -s "$a" "$b"; then
    pass
  else
    fail "$name: $a and $b differ:"
    diff -u --label "$(basename "$a")" --label "$(basename "$b")" \
      <(cat -A "$a" 2>&1) <(cat -A "$b" 2>&1) | head -n 30 >&2
  fi
}

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
  if [[ "$2" == "$3" ]]; then
    pass
  else
    fail "$1: expected [$2], got [$3]"
  fi
}

# expect_match NAME REGEX ACTUAL (extended regex, whole string)
expect_match() {
  if [[ "$3" =~ ^$2$ ]]; then
    pass
  else
    fail "$1: [$3] does not match /^$2\$/"
  fi
}

# ---- fixtures and queues -------------------------------------------------------

# Number of job files (fspl-*.fspl) in queue DIR.
job_count() {
  local n=0 f
  for f in "$1"/jobs/fspl-*.fspl; do
    [[ -e "$f" ]] && n=$((n + 1))
  done
  echo "$n"
}

# deliver QUEUE PACKET_FILE [NAME]: puts a packet into QUEUE/jobs the way a
# file transport does (copy next to it, then rename into place).
deliver() {
  local queue=$1 packet=$2 name=${3:-fspl-$(cat /proc/sys/kernel/random/uuid).fspl}
  cp "$packet" "$queue/.incoming.tmp" && mv "$queue/.incoming.tmp" "$queue/jobs/$name"
}

# Consumer scripts in $T/bin, all appending to $LOG:
#   record   one line: seq, first 16 hex digits of sha256 of stdin, args
#   envdump  the FSPL_* variables and E2E_MARK it sees, sorted, then a blank line
#   failing  reads stdin, exits 3
#   slow     records its start in $T/started.SEQ, then sleeps $E2E_SLOW seconds
#   noisy    writes one line to stdout and one to stderr
make_consumers() {
  mkdir -p "$T/bin"
  cat >"$T/bin/record" <<'SH'
#!/bin/sh
sum=$(sha256sum | cut -c1-16)
echo "seq=$FSPL_SEQ sum=$sum args=$*" >>"$LOG"
SH
  cat >"$T/bin/envdump" <<'SH'
#!/bin/sh
cat >/dev/null
env | grep -E '^(FSPL_|E2E_MARK=)' | sort >>"$LOG"
echo >>"$LOG"
SH
  cat >"$T/bin/failing" <<'SH'
#!/bin/sh
cat >/dev/null
echo "seq=$FSPL_SEQ failed" >>"$LOG"
exit 3
SH
  cat >"$T/bin/slow" <<'SH'
#!/bin/sh
touch "$E2E_T/started.$FSPL_SEQ"
exec sleep "${E2E_SLOW:-10}"
SH
  cat >"$T/bin/noisy" <<'SH'
#!/bin/sh
cat >/dev/null
echo "to stdout seq=$FSPL_SEQ"
echo "to stderr seq=$FSPL_SEQ" >&2
SH
  chmod +x "$T/bin"/*
  export E2E_T=$T
}

# wait_for_file PATH [SECONDS]: polls until PATH exists; false on timeout.
wait_for_file() {
  local path=$1 tries=$((${2:-10} * 20))
  while ((tries-- > 0)); do
    [[ -e "$path" ]] && return 0
    sleep 0.05
  done
  return 1
}

# hold_lock FILE: holds an flock(2) exclusive lock on FILE in a background
# process (as another fspl/safespool run would) until release_lock.
HOLD_PID=
hold_lock() {
  local file=$1 ready=$T/lock.ready.$RANDOM
  (exec 9<>"$file" && flock -n 9 && touch "$ready" && exec sleep 60) &
  HOLD_PID=$!
  bg_started "$HOLD_PID"
  wait_for_file "$ready" 5 || { fail "could not take the lock on $file"; return 1; }
}
release_lock() {
  [[ -n "$HOLD_PID" ]] || return 0
  kill "$HOLD_PID" 2>/dev/null
  wait "$HOLD_PID" 2>/dev/null
  bg_done "$HOLD_PID"
  HOLD_PID=
}

# packet_normalized FILE: the packet as hex with the ctime values replaced by
# "<ctime>" and the metadata length and CRCs dropped, so that packets made at
# different times by either tool compare equal iff everything else is equal.
# Output: "tag+version | metadata | payload".
packet_normalized() {
  local hex meta_len meta rest head prefix_hex
  hex=$(xxd -p "$1" | tr -d '\n')
  prefix_hex=${hex:0:28}
  meta_len=$((16#${hex:28:16}))
  meta=${hex:60:$((meta_len * 2))}
  rest=${hex:$((60 + meta_len * 2))}
  local key=a56374696d6592 # "ctime" then a 2-element array
  head=${meta%%"$key"*}
  if [[ "$head" != "$meta" ]]; then
    local tail=${meta:$((${#head} + ${#key}))} i
    for i in 1 2; do tail=${tail:$(msgpack_int_hexlen "${tail:0:2}")}; done
    meta="$head$key<ctime>$tail"
  fi
  printf '%s | %s | %s\n' "$prefix_hex" "$meta" "$rest"
}

# Hex digits taken by the MessagePack integer whose first byte is $1 (hex).
msgpack_int_hexlen() {
  local b=$((16#$1))
  if ((b < 0x80 || b >= 0xe0)); then echo 2
  elif ((b == 0xcc || b == 0xd0)); then echo 4
  elif ((b == 0xcd || b == 0xd1)); then echo 6
  elif ((b == 0xce || b == 0xd2)); then echo 10
  elif ((b == 0xcf || b == 0xd3)); then echo 18
  else echo 2
  fi
}

# ---- self-check when executed directly -----------------------------------------

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  [[ -x "$SAFESPOOL" ]] && pass || fail "SAFESPOOL=$SAFESPOOL is not an executable file"
  run fspl_version "$FSPL" --version
  expect_eq "reference fspl version" "filespooler 1.2.2" "$(cat "$T/fspl_version.out")"
  for tool in flock timeout xxd zstd sha256sum; do
    command -v "$tool" >/dev/null && pass || fail "tool $tool not installed"
  done
  [[ -s "$FIXTURES/golden/command_payload.fspl" ]] && pass ||
    fail "golden fixtures missing under $FIXTURES/golden"
  # The normalizer must see through the ctime and nothing else.
  a=$(packet_normalized "$FIXTURES/golden/nop.fspl")
  b=$(packet_normalized "$FIXTURES/golden/fail.fspl")
  expect_eq "normalized NOP packet" \
    "2a46494c4553504f4f4c45520001 | 83a373657101a56374696d6592<ctime>a8636d645f74797065a34e4f50 | " "$a"
  [[ "$a" != "$b" ]] && pass || fail "normalizer makes NOP and Fail packets equal"
  e2e_finish
fi

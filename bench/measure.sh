# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash
# Measuring and recording for bench/run.sh, which sources this file after
# setting W (the scratch directory), REPS, RAW (raw results), FSPL and
# SAFESPOOL. Each function says what it reads and sets.

# measure LABEL CMD...: runs CMD once under GNU time, stdout and stderr into
# $W/logs/LABEL.REP.{out,err}; sets SECS (wall clock), RSS (KiB), STATUS.
SECS=0 RSS=0 STATUS=ok LAST_OUT=
measure() {
  local label=$1 t0 t1 us rc
  shift
  LAST_OUT=$W/logs/$label.$REP.out
  t0=$EPOCHREALTIME
  "$GNU_TIME" -f '%M' -o "$W/rss" "$@" >"$LAST_OUT" 2>"$W/logs/$label.$REP.err"
  rc=$?
  t1=$EPOCHREALTIME
  us=$((10#${t1/./} - 10#${t0/./}))
  printf -v SECS '%d.%06d' $((us / 1000000)) $((us % 1000000))
  RSS=$(tail -n1 "$W/rss")
  STATUS=ok
  ((rc == 0)) || STATUS="exit status $rc"
}

# Checks after a run; each leaves STATUS alone unless it was ok and the check fails.
check() { [[ $STATUS != ok ]] || "$@" || STATUS=$CHECK_MSG; }
CHECK_MSG=
jobs_empty() { # QUEUE
  local f
  for f in "$1"/jobs/fspl-*.fspl; do
    [[ -e $f ]] && { CHECK_MSG="job(s) left in $1/jobs"; return 1; }
  done
  return 0
}
lines_at_least() { # N: the last command printed at least N lines
  local n
  n=$(wc -l <"$LAST_OUT")
  ((n >= $1)) || { CHECK_MSG="printed $n lines, expected >= $1"; return 1; }
}
ran_exactly_one() { # QUEUE FIRST_FILE
  local next
  next=$(tr -d ' \n' <"$1/nextseq")
  [[ ! -e $1/jobs/$2 && $next == 2 ]] ||
    { CHECK_MSG="did not run exactly job 1 (nextseq $next)"; return 1; }
}

# record CASE TOOL: appends the last measurement to the raw results.
record() {
  local label=$1.$2
  printf '%s\t%s\t%d\t%s\t%s\t%s\n' "$1" "$2" "$REP" "$SECS" "$RSS" "$STATUS" >>"$RAW"
  if [[ $STATUS == ok ]]; then
    note "$(printf '%-15s %-9s rep %d/%d: %8.3f s  %6d KiB' "$1" "$2" "$REP" "$REPS" "$SECS" "$RSS")"
  else
    FAILED=1
    note "$1 $2 rep $REP FAILED: $STATUS"
    sed -n '1,10s/^/    stderr: /p' "$W/logs/$label.$REP.err" >&2
  fi
}

# fresh_queue QUEUE TEMPLATE_DIR: a new queue (nextseq 1) holding hard links
# to the packets in TEMPLATE_DIR (processing removes only the link).
fresh_queue() {
  rm -rf "$1"
  "$FSPL" queue-init -q "$1" || die "queue-init $1 failed"
  ln -t "$1/jobs" -- "$2"/fspl-*.fspl || die "cannot link $2 into $1"
}

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Where per-job cgroups are available, every consumer is in its job's
# cgroup from its first instruction: the guard starts it there with
# clone3(CLONE_INTO_CGROUP), and on a kernel without clone3 (simulated:
# strace makes every clone3 fail with ENOSYS, as Linux before 5.3 would)
# the consumer writes itself into cgroup.procs before it execs. Jobs that
# leave their cgroup empty share it. Skipped where there are no per-job
# cgroups (not root, or no writable cgroup2 directory).
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
cd "$T" || exit 1
safespool_only || { echo "safespool only"; e2e_finish; exit; }

for n in 1 2 3; do echo "payload $n" | ss prepare -s seq -i - >"p$n.pkt"; done
# Each job's consumer notes the cgroup v2 path it runs in.
consumer=(sh -- -c 'grep "^0::" /proc/self/cgroup >>"$CGLOG"')

# run_jobs MODE STRACE_ARGS...: the three jobs under strace, the
# consumers' cgroups in cg.MODE, the trace in trace.MODE.
run_jobs() {
  local mode=$1
  shift
  ss queue-init -q "q.$mode"
  for n in 1 2 3; do cp "p$n.pkt" "q.$mode/jobs/fspl-$n.fspl"; done
  # LeakSanitizer cannot run under ptrace: a sanitizer build would abort.
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
    CGLOG=$T/cg.$mode timeout -k 5 "$E2E_TIMEOUT" strace -f -qq -y -o "$T/trace.$mode" \
    -e trace=clone3,write "$@" "$SAFESPOOL" -l debug queue-process -q "q.$mode" "${consumer[@]}" \
    2>"$T/$mode.err"
  RC=$?
}

export CGLOG
command -v strace >/dev/null || fail "strace is needed (scripts/install-deps.sh installs it)"
run_jobs clone3
if grep -q 'no per-job cgroups: ' "$T/clone3.err"; then
  echo "no per-job cgroups here: $(grep -o 'no per-job cgroups: .*' "$T/clone3.err" | head -1)"
  e2e_finish
fi
grep -q 'consumers run in per-job cgroups' "$T/clone3.err" ||
  { fail "the run did not say how consumers are contained (exit $RC)"; show_err clone3; }

section "the guard starts each consumer in its cgroup (clone3 with CLONE_INTO_CGROUP)"
expect_eq "all three jobs ran" "0 3" "$RC $(wc -l <cg.clone3)"
expect_match "in a job cgroup" "0::.*/safespool-[0-9]+-[0-9]+" "$(head -1 cg.clone3)"
expect_eq "one cgroup for the three clean jobs" 1 "$(sort -u cg.clone3 | wc -l)"
expect_eq "three starts into the cgroup" 3 "$(grep -c 'CLONE_INTO_CGROUP' trace.clone3)"
expect_eq "no consumer moved into it afterwards" 0 "$(grep -c 'cgroup.procs>' trace.clone3)"

section "without clone3 the consumer joins its cgroup itself, before exec"
run_jobs fallback -e inject=clone3:error=ENOSYS
expect_eq "all three jobs ran" "0 3" "$RC $(wc -l <cg.fallback)"
expect_match "in a job cgroup" "0::.*/safespool-[0-9]+-[0-9]+" "$(head -1 cg.fallback)"
expect_eq "one cgroup for the three clean jobs" 1 "$(sort -u cg.fallback | wc -l)"
expect_eq "each wrote itself into cgroup.procs" 3 \
  "$(grep -cE 'write\([0-9]+</sys/fs/cgroup/.*/cgroup\.procs>, "0", 1' trace.fallback)"

e2e_finish

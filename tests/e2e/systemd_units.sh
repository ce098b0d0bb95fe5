#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The systemd units in packaging/systemd:
#  - `systemd-analyze verify` (offline, no running systemd needed) accepts
#    every unit, instantiated as NAME@test.*, and prints nothing: an unknown
#    key, a bad value or a missing ExecStart binary is a failure even though
#    verify itself exits 0 for most of them; the same with the zfs drop-in
#    from docs/operations.md applied;
#  - the .timer and .path units trigger a unit file that exists;
#  - the contract: Type=oneshot, SuccessExitStatus has 75, User=safespool,
#    the sandbox settings, EnvironmentFile=/etc/safespool/%i.conf; the watch
#    unit is Type=notify and runs `queue-process --watch`;
#  - `systemd-analyze security --offline` rates both services at most 2.0;
#  - example.conf has only SAFESPOOL_* assignments;
#  - the service's ExecStart, expanded the way systemd does (${X} one word,
#    $X split at whitespace) with a config file, processes a real queue in
#    order with the built binary, and exits 75 (a success status of the unit)
#    when the queue lock is held.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
make_consumers
kUnits=$E2E_LIB_DIR/../../packaging/systemd
kTemplates=(safespool-process@.service safespool-process@.timer safespool-process@.path
  safespool-watch@.service safespool-notify@.service)

if ! command -v systemd-analyze >/dev/null; then
  # scripts/install-deps.sh installs it (package systemd); only a machine
  # where that is impossible gets here.
  echo "SKIP: systemd-analyze not installed (apt-get install systemd)"
  exit 0
fi

U=$T/units
mkdir -p "$U"
for f in "${kTemplates[@]}"; do
  [[ -f "$kUnits/$f" ]] && pass || fail "missing unit packaging/systemd/$f"
  # verify insists that ExecStart's binary exists: use the one under test.
  sed "s|/usr/bin/safespool|$SAFESPOOL|g" "$kUnits/$f" >"$U/$f"
done

# verify_unit NAME: verify prints a warning and often still exits 0: both count.
verify_unit() {
  local unit=$1 out rc
  out=$(cd "$U" && SYSTEMD_LOG_LEVEL=notice timeout 30 systemd-analyze verify --man=no "$U/$unit" 2>&1)
  rc=$?
  if ((rc == 0)) && [[ -z "$out" ]]; then
    pass
  else
    fail "systemd-analyze verify $unit: exit status $rc, output:"
    printf '    %s\n' "$out" >&2
  fi
}

section "systemd-analyze verify"
for f in "${kTemplates[@]}"; do
  verify_unit "${f/@./@test.}"
done

section "timer and path units trigger an existing unit"
for f in safespool-process@.timer safespool-process@.path; do
  target=$(sed -n 's/^Unit=//p' "$U/$f")
  target=${target//%i/}
  [[ -n "$target" && -f "$U/$target" ]] && pass ||
    fail "$f: Unit=${target:-<none>} is not one of the units"
done
grep -qx 'PathChanged=/var/spool/safespool/%i/jobs' "$U/safespool-process@.path" && pass ||
  fail "path unit does not watch /var/spool/safespool/%i/jobs"
grep -q '^DirectoryNotEmpty=' "$U/safespool-process@.path" &&
  fail "path unit uses DirectoryNotEmpty= (re-triggers forever on a waiting job)" || pass
grep -qx 'OnUnitActiveSec=5min' "$U/safespool-process@.timer" && pass ||
  fail "timer: no OnUnitActiveSec=5min"

section "unit contract"
# has UNIT LINE: the exact line is in the unit.
has() { grep -qxF -- "$2" "$U/$1" && pass || fail "$1: no line [$2]"; }
for svc in safespool-process@.service safespool-watch@.service; do
  for line in 'User=safespool' 'EnvironmentFile=/etc/safespool/%i.conf' \
    'NoNewPrivileges=yes' 'ProtectSystem=strict' \
    'ReadWritePaths=/var/spool/safespool/%i -/var/lib/safespool' \
    'PrivateTmp=yes' 'ProtectHome=yes' 'ProtectKernelTunables=yes' 'ProtectControlGroups=yes' \
    'RestrictSUIDSGID=yes' 'LockPersonality=yes' 'MemoryDenyWriteExecute=yes' \
    'RestrictRealtime=yes' 'SystemCallArchitectures=native' 'UMask=0077'; do
    has "$svc" "$line"
  done
  # safespool reads /proc/sys/fs/pipe-max-size: /proc must not be cut down.
  grep -q '^ProcSubset=pid' "$U/$svc" && fail "$svc: ProcSubset=pid hides /proc/sys" || pass
done
has safespool-process@.service 'Type=oneshot'
grep -Eq '^SuccessExitStatus=(.* )?75( |$)' "$U/safespool-process@.service" && pass ||
  fail "process unit: exit status 75 (lock busy) is not a SuccessExitStatus"
has safespool-watch@.service 'Type=notify'
has safespool-watch@.service 'Restart=on-failure'
grep -Eq '^ExecStart=[^ ]+ queue-process --watch ' "$U/safespool-watch@.service" && pass ||
  fail "watch unit does not run queue-process --watch"

section "systemd-analyze security"
for svc in safespool-process@test.service safespool-watch@test.service; do
  out=$(cd "$U" && timeout 30 systemd-analyze security --offline=true --threshold=20 \
    --no-pager "$U/$svc" 2>&1)
  rc=$?
  ((rc == 0)) && pass || fail "$svc: exposure above 2.0 (status $rc): $(tail -n 1 <<<"$out")"
done

section "zfs receive drop-in (docs/operations.md) still verifies"
# The drop-in is kept in the docs, between the markers, so that what the
# documentation shows is what is tested.
kDocs=$E2E_LIB_DIR/../../docs/operations.md
mkdir -p "$U/safespool-process@test.service.d"
sed -n '/<!-- zfs-dropin-begin -->/,/<!-- zfs-dropin-end -->/{/^\[/,/^```/p}' "$kDocs" |
  sed '/^```/d' >"$U/safespool-process@test.service.d/zfs.conf"
grep -q '^User=root' "$U/safespool-process@test.service.d/zfs.conf" && pass ||
  fail "no zfs drop-in (User=root ...) found between the markers in docs/operations.md"
grep -q '^DeviceAllow=/dev/zfs' "$U/safespool-process@test.service.d/zfs.conf" && pass ||
  fail "zfs drop-in does not allow /dev/zfs"
verify_unit safespool-process@test.service
rm -r "$U/safespool-process@test.service.d"

section "OnFailure= drop-in (docs/operations.md) and the notify unit"
mkdir -p "$U/safespool-process@test.service.d"
sed -n '/<!-- onfailure-dropin-begin -->/,/<!-- onfailure-dropin-end -->/{/^\[/,/^```/p}' "$kDocs" |
  sed '/^```/d' >"$U/safespool-process@test.service.d/notify.conf"
grep -qx 'OnFailure=safespool-notify@%n.service' "$U/safespool-process@test.service.d/notify.conf" &&
  pass || fail "no OnFailure= drop-in found between the markers in docs/operations.md"
verify_unit safespool-process@test.service
rm -r "$U/safespool-process@test.service.d"
# The notify unit's ExecStart, as systemd would run it for a failed
# safespool-process@test.service ($$ and %% unescaped, %i expanded), with
# stand-ins for systemctl and sendmail on PATH.
mkdir -p "$T/notify-bin"
cat >"$T/notify-bin/systemctl" <<'SH'
#!/bin/sh
echo "systemctl $*"
echo "   Active: failed (Result: exit-code)"
SH
cat >"$T/notify-bin/sendmail" <<'SH'
#!/bin/sh
{ echo "args: $*"; cat; } >"$E2E_T/notify.mail"
SH
chmod +x "$T/notify-bin"/*
line=$(sed -n 's/^ExecStart=//p' "$U/safespool-notify@.service")
line=${line//\$\$/\$}
line=${line//%%/%}
line=${line//%i/safespool-process@test.service}
eval "set -- $line"
E2E_T=$T SAFESPOOL_MAIL_TO=ops@example.org PATH=$T/notify-bin:$PATH "$@"
expect_eq "notify: the mail" "args: -oi -t
To: ops@example.org
Subject: safespool-process@test.service failed on $(uname -n)

systemctl status --full --no-pager --lines=50 safespool-process@test.service
   Active: failed (Result: exit-code)" "$(cat "$T/notify.mail" 2>/dev/null)"

section "example.conf"
conf=$kUnits/example.conf
bad=$(grep -Ev '^[[:space:]]*(#|$)' "$conf" | grep -Ev '^SAFESPOOL_(QUEUE|COMMAND|OPTS)=')
expect_eq "example.conf: only SAFESPOOL_QUEUE/COMMAND/OPTS assignments" "" "$bad"
for v in SAFESPOOL_QUEUE SAFESPOOL_COMMAND SAFESPOOL_OPTS; do
  grep -q "^$v=" "$conf" && pass || fail "example.conf does not set $v"
done

section "ExecStart, expanded as systemd does, processes a queue"
# env_file_get FILE VAR: the value systemd's EnvironmentFile= gives VAR (the
# subset used here: VAR=value, optional surrounding quotes, last one wins).
env_file_get() {
  local v
  v=$(sed -n "s/^$2=//p" "$1" | tail -n 1)
  [[ $v == \"*\" || $v == \'*\' ]] && v=${v:1:-1}
  printf '%s' "$v"
}
# exec_argv UNIT CONF INSTANCE: prints ExecStart's argv, one word a line.
exec_argv() {
  local line word name
  line=$(sed -n 's/^ExecStart=//p' "$U/$1")
  # shellcheck disable=SC2086  # split at whitespace on purpose, like systemd
  for word in $line; do
    word=${word//%i/$3}
    if [[ $word =~ ^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$ ]]; then
      env_file_get "$2" "${BASH_REMATCH[1]}"
      echo
    elif [[ $word =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
      name=${BASH_REMATCH[1]}
      # shellcheck disable=SC2046
      [[ -n "$(env_file_get "$2" "$name")" ]] && printf '%s\n' $(env_file_get "$2" "$name")
    else
      printf '%s\n' "$word"
    fi
  done
}
cd "$T" || exit 1
mkdir -p "$T/spool"
expect_ok queue_init "$SAFESPOOL" queue-init -q "$T/spool/test"
for n in 1 2 3; do
  echo "payload $n" | "$SAFESPOOL" prepare -s "$T/seq" -i - -- "p$n" >"$T/pk$n"
done
for n in 3 1 2; do deliver "$T/spool/test" "$T/pk$n"; done
cat >"$T/test.conf" <<EOF
# like example.conf, with the test's queue and consumer
SAFESPOOL_QUEUE="$T/spool/test"
SAFESPOOL_COMMAND=$T/bin/record -- --from-unit x
SAFESPOOL_OPTS=--on-error retry --stall-timeout 30
EOF
# fspl has no --stall-timeout: keep the test usable as a reference self-check.
is_fspl_mode && sed -i 's/ --stall-timeout 30$//' "$T/test.conf"
opts_expected="--on-error retry --stall-timeout 30"
is_fspl_mode && opts_expected="--on-error retry"
mapfile -t argv < <(exec_argv safespool-process@.service "$T/test.conf" test)
expect_eq "expanded ExecStart" \
  "$SAFESPOOL queue-process -q $T/spool/test $opts_expected $T/bin/record -- --from-unit x" \
  "${argv[*]}"
run execstart timeout -k 5 "$E2E_TIMEOUT" "${argv[@]}"
expect_eq "ExecStart exit status" 0 "$RC"
expect_eq "ExecStart ran the jobs in order" \
  "seq=1 sum=$(echo 'payload 1' | sha256sum | cut -c1-16) args=--from-unit x
seq=2 sum=$(echo 'payload 2' | sha256sum | cut -c1-16) args=--from-unit x
seq=3 sum=$(echo 'payload 3' | sha256sum | cut -c1-16) args=--from-unit x" "$(cat "$LOG")"
expect_eq "queue empty afterwards" 0 "$(job_count "$T/spool/test")"

# An empty SAFESPOOL_OPTS leaves no empty argument behind.
sed -i 's/^SAFESPOOL_OPTS=.*/SAFESPOOL_OPTS=/' "$T/test.conf"
mapfile -t argv < <(exec_argv safespool-process@.service "$T/test.conf" test)
expect_eq "expanded ExecStart, no options" \
  "$SAFESPOOL queue-process -q $T/spool/test $T/bin/record -- --from-unit x" "${argv[*]}"

# Lock held by another run: 75, which the unit treats as success.
hold_lock "$T/spool/test/nextseq.lock"
run busy timeout -k 5 "$E2E_TIMEOUT" "${argv[@]}"
release_lock
if safespool_only; then
  expect_eq "ExecStart with the queue locked: exit status" 75 "$RC"
fi

e2e_finish

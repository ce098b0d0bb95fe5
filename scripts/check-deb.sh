#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Checks a safespool .deb (as `cpack -G DEB` makes it; tests/run.sh, stage
# package, calls this): its control fields, that it holds everything an
# installation needs, and that what it holds works: the extracted safespool
# runs a real job through queue-process with the extracted guard (which the
# binary finds by itself), and looks for the guard where the package puts it.
#
# Usage: scripts/check-deb.sh PACKAGE.deb
# Env:   E2E_KEEP=1  keep the extracted package (see tests/e2e/lib.sh)
set -uo pipefail

if [[ $# != 1 || ! -f "$1" ]]; then
  echo "usage: $0 PACKAGE.deb" >&2
  exit 64
fi
deb=$(realpath "$1")
# The e2e tests' helpers: scratch directory $T, run, expect_*, pass/fail.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/e2e/lib.sh"
kRoot=$(cd "$E2E_LIB_DIR/../.." && pwd)
kGuard=/usr/libexec/safespool/safespool-guard

section "control fields"
run info dpkg-deb -I "$deb"
expect_eq "dpkg-deb -I: exit status" 0 "$RC"
field() { dpkg-deb -f "$deb" "$1" 2>/dev/null; }
expect_eq "Package" safespool "$(field Package)"
version=$(sed -n 's/^project(safespool VERSION \([^ )]*\).*/\1/p' "$kRoot/CMakeLists.txt")
expect_eq "Version (project() in CMakeLists.txt)" "$version" "$(field Version)"
expect_eq "Architecture" "$(dpkg --print-architecture)" "$(field Architecture)"
expect_eq "Section" utils "$(field Section)"
expect_eq "Priority" optional "$(field Priority)"
expect_match "Maintainer" '[^<>]+ <[^@ ]+@[^> ]+>' "$(field Maintainer)"
description=$(field Description)
expect_match "Description: summary line" '[a-z].{10,79}' "$(head -n 1 <<<"$description")"
(($(wc -l <<<"$description") >= 5)) && pass || fail "Description has no long description: [$description]"
# names FIELD: the package names a relationship field lists, one per line.
names() { field "$1" | tr ',' '\n' | awk 'NF { print $1 }'; }
# From dpkg-shlibdeps; adduser for postinst.
for dep in libc6 libstdc++6 libzstd1 libgpgme11 adduser; do
  names Depends | grep -qxF "$dep" && pass || fail "Depends lacks $dep: [$(field Depends)]"
done
names Recommends | grep -qxF zstd && pass || fail "Recommends lacks zstd: [$(field Recommends)]"
mkdir -p "$T/control"
dpkg-deb -e "$deb" "$T/control"
expect_eq "conffiles" /etc/safespool/example.conf "$(cat "$T/control/conffiles" 2>&1)"
for script in postinst postrm; do
  [[ -x "$T/control/$script" ]] && pass || fail "no executable $script in the control archive"
  sh -n "$T/control/$script" 2>/dev/null && pass || fail "$script is not valid sh"
done

section "contents"
run contents dpkg-deb -c "$deb"
expect_eq "dpkg-deb -c: exit status" 0 "$RC"
# "mode owner path" per entry, the path without its leading ".".
awk '{ sub(/^\./, "", $6); print $1, $2, $6 }' "$T/contents.out" >"$T/entries"
for path in \
  /usr/bin/safespool \
  "$kGuard" \
  /lib/systemd/system/safespool-process@.service \
  /lib/systemd/system/safespool-process@.timer \
  /lib/systemd/system/safespool-process@.path \
  /lib/systemd/system/safespool-watch@.service \
  /lib/systemd/system/safespool-notify@.service \
  /etc/safespool/example.conf \
  /usr/share/man/man1/safespool.1.gz \
  /usr/share/bash-completion/completions/safespool \
  /usr/share/doc/safespool/README.md \
  /usr/share/doc/safespool/operations.md \
  /usr/share/doc/safespool/exit-codes.md \
  /usr/share/doc/safespool/copyright \
  /usr/share/doc/safespool/changelog.gz \
  /usr/share/doc/safespool/design/handoff.md \
  /usr/share/doc/safespool/examples/cron/safespool-cron \
  /usr/share/doc/safespool/examples/nncp/safespool-nncp-send \
  /usr/share/doc/safespool/examples/hooks/healthchecks \
  /usr/share/doc/safespool/examples/hooks/mail \
  /usr/share/doc/safespool/examples/prometheus/alerts.yml; do
  # (debhelper compresses docs: a .gz counts.)
  grep -qE " $path(\.gz)?\$" "$T/entries" && pass || fail "the package lacks $path"
done
for path in /usr/bin/safespool "$kGuard" /usr/share/doc/safespool/examples/cron/safespool-cron \
  /usr/share/doc/safespool/examples/hooks/healthchecks /usr/share/doc/safespool/examples/hooks/mail; do
  grep -qE "^-rwxr-xr-x [^ ]+ $path\$" "$T/entries" && pass || fail "$path is not mode 0755"
done
bad=$(awk '$2 != "root/root"' "$T/entries" | head -n 3)
expect_eq "entries not owned by root/root" "" "$bad"
bad=$(grep -E ' /usr/local/|/safespool\.1\.md$|/build[^/]*/' "$T/entries" | head -n 3)
expect_eq "entries that do not belong in the package" "" "$bad"

section "what it holds works"
x=$T/root
run extract dpkg-deb -x "$deb" "$x"
expect_eq "dpkg-deb -x: exit status" 0 "$RC"
bin=$x/usr/bin/safespool
run version "$bin" --version
expect_eq "safespool --version" "safespool $version" "$(cat "$T/version.out")"
# Each unit runs the binary the package installs (or /bin/sh, which every
# system has: safespool-notify@.service).
for unit in "$x"/lib/systemd/system/*; do
  exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
  [[ -z "$exe" || -x "$x$exe" || $exe == /bin/sh ]] && pass ||
    fail "$(basename "$unit") runs $exe, which the package lacks"
done
# A real job: a compressed packet from the packaged safespool, decoded by it,
# its payload streamed to a consumer that the packaged guard leads.
queue=$T/queue
head -c 300000 /dev/urandom >"$T/payload"
expect_ok queue-init "$bin" queue-init -q "$queue"
"$bin" prepare -s "$T/seq" --zstd -i "$T/payload" >"$T/packet" 2>"$T/prepare.err"
expect_eq "prepare --zstd: exit status" 0 "$?"
expect_ok queue-write "$bin" queue-write -q "$queue" <"$T/packet"
# Unpacked anywhere, the binary finds the packaged guard by itself
# (bin/../libexec/safespool/).
run process env -u SAFESPOOL_GUARD "$bin" queue-process -q "$queue" tee -- "$T/received"
expect_eq "queue-process with the packaged guard: exit status" 0 "$RC"
((RC == 0)) || show_err process
expect_same "payload the consumer received" "$T/payload" "$T/received"
expect_eq "nextseq after the job" 2 "$(cat "$queue/nextseq")"
expect_eq "job files left" 0 "$(job_count "$queue")"
# Without the unpacked guard it looks where the package installs it: its
# "tried ..." message shows the path it has compiled in, and no consumer
# runs without a guard. (With a guard installed on this machine the job
# would run: then this is not checked.)
if [[ -e "$kGuard" ]]; then
  echo "note: $kGuard exists here; the compiled-in guard path is not checked"
else
  mv "$x$kGuard" "$T/guard.aside"
  "$bin" prepare -s "$T/seq" >"$T/packet2" && "$bin" queue-write -q "$queue" <"$T/packet2"
  run lookup env -u SAFESPOOL_GUARD "$bin" queue-process -q "$queue" true
  expect_eq "queue-process without a guard: exit status (unavailable)" 69 "$RC"
  grep -qF "$kGuard" "$T/lookup.err" && pass ||
    fail "safespool does not look for its guard at $kGuard: $(head -c 400 "$T/lookup.err")"
  mv "$T/guard.aside" "$x$kGuard"
fi
# The man page is this tree's, and the completion loads and completes.
zcat "$x/usr/share/man/man1/safespool.1.gz" >"$T/safespool.1"
expect_same "packaged man page" "$kRoot/docs/safespool.1" "$T/safespool.1"
run completion bash --norc --noprofile -c \
  'source "$1" && COMP_WORDS=(safespool queue-pr) COMP_CWORD=1 && _safespool && echo "${COMPREPLY[*]}"' \
  - "$x/usr/share/bash-completion/completions/safespool"
expect_eq "packaged bash completion of 'safespool queue-pr'" queue-process "$(cat "$T/completion.out")"

if command -v lintian >/dev/null; then
  section "lintian"
  # Errors fail; warnings are shown.
  run lintian lintian --tag-display-limit 0 "$deb"
  grep -E '^[EW]: ' "$T/lintian.out" | sed 's/^/    /'
  bad=$(grep -E '^E: ' "$T/lintian.out" | head -n 5)
  expect_eq "lintian errors" "" "$bad"
fi

e2e_finish

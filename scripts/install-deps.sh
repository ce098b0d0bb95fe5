#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Installs the Debian 12 packages SafeSpool needs to build, test and demo.
# Only what is missing is installed; `apt-get update` runs only then.
#
# Usage: scripts/install-deps.sh [EXTRA_PACKAGE...]
# Env:   SAFESPOOL_SKIP_DEPS=1  do nothing (e.g. on a machine without apt).
set -euo pipefail

readonly kPackages=(
  build-essential cmake pkg-config
  clang-format           # tests/run.sh stage format
  libboost-dev libzstd-dev zstd libgpgme-dev gnupg zlib1g-dev libssl-dev
  nlohmann-json3-dev libspdlog-dev libcli11-dev
  libgtest-dev googletest
  filespooler xxd
  util-linux coreutils   # flock, timeout, sha256sum: used by the e2e tests
  systemd                # systemd-analyze: tests/e2e/systemd_units.sh
  nncp                   # tests/e2e/nncp_transport.sh
  groff-base man-db      # tests/e2e/manpage.sh
  go-md2man              # scripts/gen-manpage.sh: docs/safespool.1 from its .md
  bash-completion        # tests/e2e/completion.sh
  time                   # /usr/bin/time (peak RSS): bench/run.sh
  python3                # packet generators in tests/e2e and bench
  python3-jsonschema     # tests/e2e/json_schema.sh
  jq                     # examples/zfs/resume.sh, tests/e2e/zfs_resume.sh, split.sh
  procps                 # pgrep: tests/e2e/scan_kill_gpg.sh
)

if [[ "${SAFESPOOL_SKIP_DEPS:-0}" == 1 ]]; then
  exit 0
fi

missing=()
for pkg in "${kPackages[@]}" "$@"; do
  # dpkg -s also answers for removed-but-configured packages; check the status.
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed$'; then
    missing+=("$pkg")
  fi
done

sudo_cmd=()
if ((EUID != 0)); then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
updated=0
apt_update() {
  ((updated)) || "${sudo_cmd[@]}" apt-get update -q
  updated=1
}

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}" >&2
  apt_update
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# promtool (tests/e2e/monitoring.sh: `promtool check rules` and `check
# metrics`) comes from Debian's prometheus package, whose installation
# would also start a Prometheus server: only the one program is taken from
# the package, into /usr/local/bin.
if ! command -v promtool >/dev/null; then
  echo "install-deps: installing promtool from the prometheus package" >&2
  apt_update
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  chmod 755 "$dl"  # apt's download user must be able to write there
  (cd "$dl" && apt-get download -q prometheus)
  dpkg-deb --fsys-tarfile "$dl"/prometheus_*.deb | tar -x -C "$dl" ./usr/bin/promtool
  "${sudo_cmd[@]}" install -m 0755 "$dl/usr/bin/promtool" /usr/local/bin/promtool
fi

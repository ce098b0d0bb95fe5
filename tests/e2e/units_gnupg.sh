#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The shipped units' sandbox with OpenPGP packets, the way the guide lays a
# receiver out: the GnuPG home in /var/lib/safespool/gnupg, the queue in
# /var/spool/safespool/NAME. Under ProtectSystem=strict everything is
# read-only but ReadWritePaths=, and a system user has no /run/user/UID, so
# gpg-agent must be able to make its socket in the GnuPG home.
#
# The test builds that sandbox itself: in a mount namespace of its own
# (unshare -m), / is remounted read-only after the unit's ReadWritePaths=
# (read from packaging/systemd/safespool-process@.service, placed under the
# test's directory) were bound writable; then an unprivileged user (nobody)
# runs queue-process on an encrypted, signed zstd packet, with no gpg-agent
# running beforehand. It must decrypt, verify and deliver the payload.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kUnit=$E2E_LIB_DIR/../../packaging/systemd/safespool-process@.service

if is_fspl_mode; then
  echo "SKIP: OpenPGP decoding is SafeSpool's own"
  exit 0
fi
if ((EUID != 0)) || ! unshare -m true 2>/dev/null || ! command -v setpriv >/dev/null; then
  # CI runs as root; elsewhere the sandbox cannot be built.
  echo "SKIP: needs root, unshare -m and setpriv"
  exit 0
fi
cd "$T" || exit 1
chmod 755 "$T"
kUser=65534
R=$T/root  # stands for /
home=$R/var/lib/safespool/gnupg
queue=$R/var/spool/safespool/backup

section "the receiver, laid out as the guide says"
install -d -m 0755 "$R/var/lib" "$R/var/spool"
install -d -m 0750 -o "$kUser" -g "$kUser" "$R/var/lib/safespool" "$R/var/spool/safespool"
install -d -m 0700 -o "$kUser" -g "$kUser" "$home"
export GNUPGHOME=$home
trap 'gpgconf --homedir "$home" --kill gpg-agent 2>/dev/null; e2e_cleanup' EXIT
gpg --batch --passphrase '' --quick-gen-key receiver@example.org future-default default never 2>/dev/null ||
  fail "cannot make the receiver's key"
gpg --batch --passphrase '' --quick-gen-key sender@example.org future-default default never 2>/dev/null ||
  fail "cannot make the sender's key"
fpr() { gpg --with-colons --list-keys "<$1@example.org>" 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}'; }
echo "$(fpr sender)" >"$R/var/lib/safespool/trusted-signers"
head -c 200000 /dev/urandom >payload
want=$(sha256sum <payload | cut -c1-16)
ss prepare -s "$T/seq" --zstd --encrypt-to "$(fpr receiver)" --sign-with "$(fpr sender)" -i payload >packet ||
  fail "prepare"
# No agent may be left from making the keys: the service starts its own.
gpgconf --homedir "$home" --kill gpg-agent
chown -R "$kUser:$kUser" "$R/var/lib/safespool"
ss queue-init -q "$queue" || fail "queue-init"
cp packet "$queue/jobs/fspl-1.fspl"
chown -R "$kUser:$kUser" "$R/var/spool/safespool"
cat >consumer <<'SH'
#!/bin/sh
echo "seq=$FSPL_SEQ sum=$(sha256sum | cut -c1-16)" >>"$FSPL_JOB_QUEUEDIR/received.log"
SH
chmod 755 consumer
[[ -d /run/user/$kUser ]] && fail "/run/user/$kUser exists: the test needs a user without it"

section "the unit's writable paths"
# ReadWritePaths=/var/spool/safespool/%i -/var/lib/safespool: "-" marks a
# path that may be missing; %i is the queue's name.
mapfile -t writable < <(sed -n 's/^ReadWritePaths=//p' "$kUnit" | tr ' ' '\n' |
  sed -e '/^$/d' -e 's/^-//' -e 's/%i/backup/g')
((${#writable[@]} > 0)) && pass || fail "no ReadWritePaths= in $kUnit"
printf '  writable: %s\n' "${writable[@]}"

section "queue-process as an unprivileged user in a read-only /"
cat >sandboxed.sh <<'SH'
#!/bin/sh
# $1: the root stand-in; $2...: writable paths (absolute, as in the unit).
set -e
root=$1
shift
for p; do
  [ -e "$root$p" ] || continue
  mount --bind "$root$p" "$root$p"
done
mount -o remount,bind,ro /
set +e
# What the service runs, with the options the guide gives.
setpriv --reuid=65534 --regid=65534 --clear-groups \
  env -i PATH=/usr/bin:/bin HOME=/nonexistent LANG=C.UTF-8 \
  "$SAFESPOOL" queue-process -q "$root/var/spool/safespool/backup" \
  --gnupg-home "$root/var/lib/safespool/gnupg" \
  --trusted-signers "$root/var/lib/safespool/trusted-signers" --stall-timeout 30 \
  "$E2E_T/consumer"
rc=$?
echo "exit status $rc" >&2
# The agent the run started lives in this namespace: stop it here.
setpriv --reuid=65534 --regid=65534 --clear-groups \
  gpgconf --homedir "$root/var/lib/safespool/gnupg" --kill gpg-agent 2>/dev/null
exit $rc
SH
export SAFESPOOL E2E_T=$T
run sandboxed timeout -k 5 60 unshare -m --propagation private sh "$T/sandboxed.sh" "$R" "${writable[@]}"
expect_eq "queue-process exit status" 0 "$RC"
((RC == 0)) || show_err sandboxed
expect_eq "the consumer got the decrypted payload" "seq=1 sum=$want" "$(cat "$queue/received.log" 2>/dev/null)"
expect_eq "the queue moved on" 2 "$(cat "$queue/nextseq")"
# The sandbox really was read-only elsewhere: the run could not leave a
# file outside the writable paths (the test's own directory included).
expect_eq "nothing written outside the writable paths" "" \
  "$(find "$T" -mindepth 1 -newer "$T/sandboxed.sh" -not -path "$R/var/*" -not -name 'sandboxed.*' 2>/dev/null)"

e2e_finish

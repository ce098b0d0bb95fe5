#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# SafeSpool end to end, on one machine, showing what fspl cannot do: the
# sender compresses, encrypts and signs with `prepare --zstd --encrypt-to
# --sign-with`; a file transport delivers out of order; the receiver lists
# and runs the packets without any -d (decoding is detected), says what it
# waits for, refuses a forged packet by its signer policy, and gives the
# consumer a pipe already at pipe-max-size with nothing but payload in it.
#
# Usage: examples/demo.sh
# Env:   SAFESPOOL_DEMO_BIN=/path/to/binary  use that binary, skip install and build
#        SAFESPOOL_SKIP_DEPS=1               skip the package check
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
heading() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
# show [<FILE] CMD...: prints the command line as typed (on stderr, so that
# CMD's own output may be redirected), then runs it.
show() {
  local stdin=/dev/stdin line='$' arg
  if [[ $1 == '<'* ]]; then stdin=${1#<}; shift; fi
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./=:+-]+$ ]]; then line+=" $arg"; else line+=" '$arg'"; fi
  done
  [[ $stdin != /dev/stdin ]] && line+=" < $stdin"
  printf '%s\n' "$line" >&2
  "$@" <"$stdin"
}

if [[ -n "${SAFESPOOL_DEMO_BIN:-}" ]]; then
  ss=$SAFESPOOL_DEMO_BIN
else
  heading "Installing missing packages, building"
  scripts/install-deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j2 --target safespool
  ss=$root/build/safespool
fi
[[ -x "$ss" ]] || { echo "demo: no binary at $ss" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/safespool-demo.XXXXXX")
cleanup() {
  for home in "$work"/*/gnupg; do
    [[ -d $home ]] && gpgconf --homedir "$home" --kill gpg-agent 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
mkdir -p sender/gnupg receiver/gnupg intruder/gnupg transport
chmod 700 sender/gnupg receiver/gnupg intruder/gnupg
# Short names for the narration; the real binary runs.
safespool() { "$ss" "$@"; }
gpg_in() { local home=$1; shift; gpg --homedir "$home" --batch --quiet "$@" 2>/dev/null; }
fingerprint() { gpg_in "$1" --with-colons --list-keys | awk -F: '/^fpr/ {print $10; exit}'; }

heading "Keys: the sender signs, the receiver decrypts (throwaway GnuPG homes)"
for who in sender receiver intruder; do
  gpg_in "$who/gnupg" --passphrase '' --quick-gen-key "$who@example.org" future-default default never
done
SENDER=$(fingerprint sender/gnupg)
RECEIVER=$(fingerprint receiver/gnupg)
gpg_in receiver/gnupg --export "$RECEIVER" | gpg_in sender/gnupg --import
gpg_in receiver/gnupg --export "$RECEIVER" | gpg_in intruder/gnupg --import
gpg_in sender/gnupg --export "$SENDER" | gpg_in receiver/gnupg --import
echo "sender   $SENDER"
echo "receiver $RECEIVER"
echo "$SENDER" >receiver/trusted-signers
echo "(receiver/trusted-signers lists the sender: packets signed by anyone else are refused)"

heading "Receiver: create the queue"
show safespool queue-init -q queue

heading "Sender: three packets, each compressed, encrypted to the receiver and signed"
head -c 3000000 /dev/urandom >sender/backup.bin
printf 'hello from the sender\n' >sender/note.txt
enc=(--zstd --encrypt-to "$RECEIVER" --sign-with "$SENDER" --gnupg-home sender/gnupg)
FSPL_SET_ORIGIN=laptop show safespool prepare -s sender/seq "${enc[@]}" -i sender/note.txt -- note >transport/p1
show safespool prepare -s sender/seq "${enc[@]}" -i sender/backup.bin -- backup >transport/p2
date -u +%FT%TZ | show safespool prepare -s sender/seq "${enc[@]}" -i - -- stamp >transport/p3
echo "what a packet looks like on the way (the first bytes of p2: an OpenPGP message):"
head -c 16 transport/p2 | od -An -tx1
echo "payload checksum on the sender side:  $(sha256sum <sender/backup.bin | cut -c1-16)"

heading "Someone else writes into the transport: a packet claiming number 4, signed by the intruder"
safespool prepare-set-next -s intruder/seq 4
printf 'rm -rf /backup\n' | show safespool prepare -s intruder/seq --encrypt-to "$RECEIVER" \
  --sign-with "$(fingerprint intruder/gnupg)" --gnupg-home intruder/gnupg -i - -- evil >transport/forged
echo "transport/forged: encrypted to the receiver like the others; anyone with the public key can do that"

heading "Transport: packets 2 and 3 arrive first"
for p in p2 p3; do show "<transport/$p" safespool queue-write -q queue; done

heading "Receiver: the queue waits for packet 1, and says so (exit status 2: waiting)"
rx=(--gnupg-home receiver/gnupg --trusted-signers receiver/trusted-signers)
show safespool queue-status -q queue "${rx[@]}" || echo "(exit status $?)"

heading "Transport: packet 1 and the forged one arrive"
for p in p1 forged; do show "<transport/$p" safespool queue-write -q queue; done

heading "Receiver: list the queue: no -d, the decoding (OpenPGP, zstd) is detected"
show safespool queue-ls -q queue "${rx[@]}"

heading "Receiver: process in sequence order; the consumer reports the pipe it was given"
cat >consumer.py <<'PY'
#!/usr/bin/env python3
# Reports how stdin looked when it started (like tests/tools/probe_consumer),
# then reads it all: a consumer that would grow its pipe, as zfs receive
# does, finds it already at pipe-max-size, and never sees a header byte.
import array, fcntl, hashlib, os, stat, sys, termios
F_GETPIPE_SZ = 1032
st = os.fstat(0)
if stat.S_ISFIFO(st.st_mode):
    size = fcntl.fcntl(0, F_GETPIPE_SZ)
    waiting = array.array("i", [0])
    fcntl.ioctl(0, termios.FIONREAD, waiting)
    with open("/proc/sys/fs/pipe-max-size") as f:
        top = int(f.read())
    where = f"pipe of {size} bytes (pipe-max-size {top}), {waiting[0]} payload bytes already waiting"
else:
    where = f"the job file itself at offset {os.lseek(0, 0, os.SEEK_CUR)}"
data = sys.stdin.buffer.read()
print(f"  job {os.environ['FSPL_SEQ']} {os.environ.get('FSPL_PARAM_1', '')}: stdin was a {where}; "
      f"read {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}", flush=True)
PY
chmod +x consumer.py
show safespool queue-process -q queue "${rx[@]}" --allow-job-params ./consumer.py || echo "(exit status $?)"
echo "(jobs 1-3 ran; the intruder's packet claiming 4 was refused before the consumer saw a byte)"

heading "Receiver: the queue is blocked on the forged packet until someone looks (exit status 3)"
show safespool queue-status -q queue "${rx[@]}" || echo "(exit status $?)"
show safespool queue-status -q queue "${rx[@]}" --check || echo "(exit status $?: CRITICAL, for a monitoring system)"

heading "Done"

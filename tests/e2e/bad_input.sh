# SPDX-License-Identifier: GPL-3.0-or-later
# Bad input, table-driven: each case gets one clear line naming the file and
# the reason, the documented exit code, no crash, nothing changed on disk.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"

good=$T/good
printf 'payload' | ss prepare -s - -i - -- p1 > "$good"
# packet_with PYTHON-EXPR: a packet with a valid prefix around metadata
# encoded from a Python value (bytes become arrays of small ints, as fspl's).
packet_with() {
  python3 - "$1" <<'PY'
import struct, sys, zlib
def mp(v):
    if isinstance(v, bool): raise TypeError
    if isinstance(v, int):
        if 0 <= v < 128: return bytes([v])
        if 0 <= v < 2**64: return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, str): b = v.encode(); return bytes([0xa0 | len(b)]) + b
    if isinstance(v, bytes): return mp(list(v))
    if isinstance(v, list): return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict): return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
meta = mp(eval(sys.argv[1]))
head = b"*FILESPOOLER" + struct.pack(">HQI", 1, len(meta), zlib.crc32(meta))
sys.stdout.buffer.write(head + struct.pack(">I", zlib.crc32(head)) + meta)
PY
}
flip() { python3 -c "
import sys; d=bytearray(open(sys.argv[1],'rb').read()); d[int(sys.argv[2])]^=0x01; sys.stdout.buffer.write(d)" "$good" "$1"; }

make_case() { # NAME: writes $T/case.NAME
  local f=$T/case.$1
  case $1 in
    empty) : > "$f" ;;
    short-prefix) head -c 17 "$good" > "$f" ;;
    wrong-tag) { printf 'XFILESPOOLER'; tail -c +13 "$good"; } > "$f" ;;
    wrong-version) { head -c 12 "$good"; printf '\x00\x02'; tail -c +15 "$good"; } > "$f" ;;
    crc-byte-*) flip "${1#crc-byte-}" > "$f" ;;
    huge-metadata)  # 2^63 bytes announced, with a valid prefix CRC
      python3 -c "
import struct, sys, zlib
h = b'*FILESPOOLER' + struct.pack('>HQI', 1, 2**63, 0)
sys.stdout.buffer.write(h + struct.pack('>I', zlib.crc32(h)))" > "$f" ;;
    truncated-metadata) head -c 40 "$good" > "$f" ;;
    wrong-shape) packet_with "[1, 2, 3]" > "$f" ;;
    ctime-range) packet_with "{'seq': 1, 'ctime': [2**63 - 1, 0], 'cmd_type': 'NOP'}" > "$f" ;;
    not-utf8-param)  # accepted: params are bytes, as in fspl
      packet_with "{'seq': 1, 'ctime': [1, 0], 'cmd_type': {'Command': {'params': [b'\\xff\\xfe'], 'env': []}}}" > "$f" ;;
    nul-param)
      packet_with "{'seq': 1, 'ctime': [1, 0], 'cmd_type': {'Command': {'params': [b'a\\x00b'], 'env': []}}}" > "$f" ;;
  esac
}

section "stdin-info on each bad packet"
cases="empty short-prefix wrong-tag wrong-version huge-metadata truncated-metadata wrong-shape ctime-range"
for i in 12 13 14 21 22 25 26 27 28 29 30 31; do cases="$cases crc-byte-$i"; done
declare -A reason=(
  [empty]="empty input" [short-prefix]="truncated packet prefix" [wrong-tag]="not a packet"
  [wrong-version]="unsupported packet version 2" [huge-metadata]="exceeds the 1 MiB limit"
  [truncated-metadata]="truncated metadata" [wrong-shape]="malformed metadata"
  [ctime-range]="ctime out of range")
for c in $cases; do
  make_case "$c"
  OUT=$("$SAFESPOOL" stdin-info --decode none < "$T/case.$c" 2>&1 >/dev/null); rc=$?
  expect_eq "$c: exit status" 65 "$rc"
  want=${reason[$c]:-}
  [[ -z $want && $c == crc-byte-* ]] && want="CRC mismatch|not a packet|unsupported packet version|exceeds the 1 MiB limit|truncated metadata"
  expect_match "$c: one clear line" "safespool: error: standard input: .*($want).*" "$OUT"
  expect_eq "$c: one line" 1 "$(printf '%s\n' "$OUT" | wc -l)"
done

section "params that cannot reach a process"
make_case not-utf8-param
expect_eq "non-UTF-8 param is shown as bytes" "$(printf 'FSPL_PARAM_1=\xff\xfe')" \
  "$(ss stdin-info < "$T/case.not-utf8-param" | grep -a PARAM)"
make_case nul-param
OUT=$("$SAFESPOOL" stdin-process --allow-job-params true < "$T/case.nul-param" 2>&1); rc=$?
expect_eq "NUL param: exit" 65 "$rc"
expect_match "NUL param: reason" ".*job parameter contains a NUL byte.*" "$OUT"

section "hostile files in jobs/: skipped, named, never followed or blocked on"
Q=$T/q
ss queue-init -q "$Q"
cp "$good" "$Q/jobs/fspl-good.fspl"
mkdir "$Q/jobs/fspl-dir.fspl"
mkfifo "$Q/jobs/fspl-fifo.fspl"
echo secret > "$T/outside"
ln -s "$T/outside" "$Q/jobs/fspl-link.fspl"
cp "$T/case.wrong-tag" "$Q/jobs/fspl-garbage.fspl"
OUT=$("$SAFESPOOL" queue-ls -q "$Q" 2>&1 >"$T/ls.out"); rc=$?
expect_eq "queue-ls exit" 0 "$rc"
expect_eq "only the good job listed" 1 "$(grep -c fspl-good.fspl "$T/ls.out")"
expect_match "skipped files summarised once" ".*4 file\(s\) in .* are not readable packets and were skipped.*" "$OUT"
OUT=$("$SAFESPOOL" -l debug queue-ls -q "$Q" 2>&1 >/dev/null)
for n in dir fifo; do expect_match "$n named" ".*fspl-$n.fspl: not a regular file.*" "$OUT"; done
expect_match "symlink named" ".*fspl-link.fspl: is a symbolic link.*" "$OUT"
ss queue-process -q "$Q" cat > "$T/run.out"; rc=$?
expect_eq "queue-process runs the good job, then stops blocked by the unreadable files" 3 "$rc"
expect_eq "the good job ran, nothing else" "payload" "$(cat "$T/run.out")"
expect_eq "symlink target untouched" "secret" "$(cat "$T/outside")"

section "a file that vanishes between scan and open"
ss queue-init -q "$T/v"
for i in $(seq 1 200); do cp "$good" "$T/v/jobs/fspl-$i.fspl"; done
( sleep 0.02; rm -f "$T/v/jobs/"fspl-1*.fspl ) &
OUT=$("$SAFESPOOL" queue-ls -q "$T/v" 2>&1 >/dev/null); rc=$?
wait
expect_eq "vanishing files: exit" 0 "$rc"

section "missing queue, bad seqfile, bad job id, bad option value: nothing changed"
expect_rc_of() { local want=$1; shift; "$SAFESPOOL" "$@" >/dev/null 2>"$T/err"; expect_eq "$* -> exit" "$want" "$?"; }
expect_rc_of 66 queue-ls -q "$T/nope"
expect_rc_of 66 queue-process -q "$T/nope" true
echo garbage > "$Q/nextseq"
expect_rc_of 65 queue-process -q "$Q" true
expect_eq "seqfile left as it was" garbage "$(cat "$Q/nextseq")"
echo 1 > "$Q/nextseq"
expect_rc_of 64 queue-info -q "$Q" -j abc
expect_rc_of 64 queue-process -q "$Q" --order-by random true
expect_match "did you mean" ".*did you mean 'timestamp'.*" "$("$SAFESPOOL" queue-process -q "$Q" --order-by timestamps true 2>&1)"

section "queue-write on a full disk: clear error, no partial file"
if mkdir -p "$T/full" && mount -t tmpfs -o size=64k tmpfs "$T/full" 2>/dev/null; then
  ss queue-init -q "$T/full/q"
  head -c 1000000 /dev/urandom > "$T/big"
  OUT=$("$SAFESPOOL" queue-write -q "$T/full/q" < "$T/big" 2>&1); rc=$?
  expect_eq "ENOSPC exit" 74 "$rc"
  expect_match "ENOSPC reason" ".*No space left on device.*" "$OUT"
  expect_eq "no file left in jobs/" "" "$(ls -A "$T/full/q/jobs")"
  umount "$T/full"
else
  echo "SKIP: cannot mount a small tmpfs here (needs root); ENOSPC case not run"
fi

e2e_finish

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Golden packets made by the real fspl (tests/fixtures/golden, see make.sh):
#  - both tools print the same stdin-info and stdin-payload for each of them,
#    equal to the output recorded when they were made;
#  - safespool's prepare/prepare-nop/prepare-fail, run with the same recipe,
#    writes the same bytes as fspl did, except for the ctime (and so the
#    metadata length and CRCs), and fspl accepts those packets;
#  - a packet with one flipped byte is refused by both tools.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
source "$FIXTURES/golden/recipes.sh"

g=$FIXTURES/golden
ctime_free() { grep -av '^FSPL_CTIME_' "$1"; }

for name in "${GOLDEN_NAMES[@]}"; do
  section "golden packet $name"
  pkt=$g/$name.fspl

  # Reading the golden packet.
  for tool in ss fs; do
    TZ=UTC run "$name.$tool.info" "$tool" stdin-info <"$pkt"
    expect_same "$name: $tool stdin-info (TZ=UTC) vs recorded" "$g/$name.info" "$T/$name.$tool.info.out"
    expect_ok "$name.$tool.payload" "$tool" stdin-payload <"$pkt"
    expect_same "$name: $tool stdin-payload vs recorded" "$g/$name.payload" "$T/$name.$tool.payload.out"
    TZ=$E2E_TZ run "$name.$tool.tzinfo" "$tool" stdin-info <"$pkt"
  done
  expect_same "$name: stdin-info in TZ=$E2E_TZ, fspl vs safespool" \
    "$T/$name.fs.tzinfo.out" "$T/$name.ss.tzinfo.out"

  # Writing the same packet. (With SAFESPOOL=fspl this re-checks the recipes
  # and the normalizer against the recorded packets.)
  golden_norm=$(packet_normalized "$pkt")
  for tool in "$SAFESPOOL"; do
    label=safespool
    work=$T/work.$name.$label
    mkdir -p "$work"
    golden_make "$name" "$tool" "$work" >"$work/packet" 2>"$work/err" ||
      { fail "$name: $label prepare failed"; sed 's/^/    /' "$work/err" >&2; continue; }
    expect_eq "$name: $label packet bytes except ctime" "$golden_norm" "$(packet_normalized "$work/packet")"
    run "$name.$label.check" env TZ=UTC "$FSPL" stdin-info <"$work/packet"
    if ((RC == 0)); then
      pass
      ctime_free "$g/$name.info" >"$T/$name.want"
      ctime_free "$T/$name.$label.check.out" >"$T/$name.$label.got"
      expect_same "$name: fspl stdin-info of $label's packet, without ctime" \
        "$T/$name.want" "$T/$name.$label.got"
    else
      fail "$name: fspl refuses the packet $label made (CRC/length/format)"
      show_err "$name.$label.check"
    fi
  done
done

section "corrupt packets are refused"
cp "$g/command_payload.fspl" "$T/flip-meta"
printf '\x00' | dd of="$T/flip-meta" bs=1 seek=40 conv=notrunc status=none   # inside metadata
cp "$g/command_payload.fspl" "$T/flip-prefix"
printf '\x07' | dd of="$T/flip-prefix" bs=1 seek=20 conv=notrunc status=none # metadata length
head -c 50 "$g/command_payload.fspl" >"$T/truncated"
printf 'this is not a packet at all, just some text\n' >"$T/garbage"
: >"$T/empty"
for bad in flip-meta flip-prefix truncated garbage empty; do
  expect_fail "fspl stdin-info $bad" fs stdin-info <"$T/$bad"
  expect_fail "safespool stdin-info $bad" ss stdin-info <"$T/$bad"
  [[ -s "$T/safespool stdin-info $bad.out" ]] &&
    fail "safespool stdin-info $bad printed something on stdout"
  if safespool_only; then
    expect_rc 65 "safespool stdin-info $bad exit code (65 = data error)" ss stdin-info <"$T/$bad"
    expect_rc 65 "safespool stdin-payload $bad exit code" ss stdin-payload <"$T/$bad"
  fi
done

if safespool_only; then
  section "a huge metadata length with a valid prefix CRC"
  # fspl tries to allocate it and aborts; safespool must refuse it as bad data.
  # CRC-32 comes from gzip's trailer (little-endian CRC-32 of the input).
  crc32_be() { gzip -c | tail -c 8 | head -c 4 | xxd -p | sed 's/\(..\)\(..\)\(..\)\(..\)/\4\3\2\1/'; }
  head26=$(printf '*FILESPOOLER' | xxd -p)0001400000000000000000000000
  prefix=$head26$(printf '%s' "$head26" | xxd -r -p | crc32_be)
  printf '%s' "$prefix" | xxd -r -p >"$T/huge"
  head -c 1000 /dev/zero >>"$T/huge"
  expect_rc 65 "metadata length 2^62: exit 65" ss stdin-info <"$T/huge"
fi

e2e_finish

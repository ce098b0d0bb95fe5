#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# SafeSpool vs Debian's fspl (filespooler 1.2.2), side by side, on the same
# generated data, in one run. See docs/benchmarks.md for what each case
# measures and for the numbers of a full run.
#
# Usage: bench/run.sh [--quick] [--reps N] [--out FILE.tsv|FILE.json]
#                     [--cases LIST] [--keep] [--tmpdir DIR]
#
#   --quick        tiny sizes (4 MiB payload, 50 packets, 1,000 for scale);
#                  the default is the full size (1 GiB payload, 2,000 packets,
#                  500 plain jobs, 100,000 for scale)
#   --reps N       repetitions of every measurement (default 3); the table
#                  shows the median, the min and the max
#   --out FILE     machine-readable results: JSON if FILE ends in .json, TSV
#                  otherwise (default: $TMPDIR/safespool-bench-DATE.tsv)
#   --cases LIST   comma-separated groups or cases to run (default: all):
#                  throughput, scan, process, scale, or a case name such as
#                  scan.gpg
#   --payload-mib N, --small N, --plain N, --scale N
#                  override one size: the throughput payload (MiB), the
#                  packets of scan.* and process.zstd, the jobs of
#                  process.plain, the packets of scale.*
#   --keep         keep the scratch directory (generated data and logs)
#   --tmpdir DIR   where the scratch directory goes (default: $TMPDIR or
#                  /var/tmp; it must be on disk, the full run needs ~3 GiB)
#
# Environment: SAFESPOOL (default: build/safespool next to this script),
# GEN_PACKETS (default: build/tests/gen_packets, built with the tests),
# FSPL (default: /usr/bin/fspl).
#
# process.* also time bench/floor.c doing the same number of jobs' irreducible
# work (spawn and wait for /usr/bin/true, write + fsync + rename of a seq
# file, fsync of its directory): the "floor" tool, and the ss/floor ratio.
#
# Timing is wall-clock time around each command (bash $EPOCHREALTIME); peak
# RSS is GNU time's %M: the largest resident set of any single process of
# the command's tree that was waited for (the tool itself, its decoder and
# consumer processes), not their sum. Nothing is asserted: the targets are
# printed next to the results, met or not.
#
# Exit status: 0 when every command ran successfully (whatever the timings),
# 1 when a command failed or did not do its work, 2 on a usage or set-up error.

set -uo pipefail
export LC_ALL=C TZ=UTC
# fspl and safespool run -d/--decoder commands with $SHELL -c: make it the
# same, small shell for both.
export SHELL=/bin/sh

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SAFESPOOL=${SAFESPOOL:-$BENCH_DIR/../build/safespool}
GEN_PACKETS=${GEN_PACKETS:-$(dirname "${SAFESPOOL:-$BENCH_DIR/../build/safespool}")/tests/gen_packets}
FSPL=${FSPL:-/usr/bin/fspl}
# Absolute paths, found on the caller's PATH when given as bare names.
[[ $SAFESPOOL == */* ]] || SAFESPOOL=$(command -v -- "$SAFESPOOL") || SAFESPOOL=
[[ $FSPL == */* ]] || FSPL=$(command -v -- "$FSPL") || FSPL=
# Both tools look up the consumer (sh, true) and decoders on PATH: a plain
# system PATH makes that lookup the same on every machine.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
GNU_TIME=/usr/bin/time

REPS=3
declare -A SIZE_OVERRIDE=()
QUICK=0
OUT=
CASES=all
KEEP=0
TMPBASE=${TMPDIR:-/var/tmp}

die() {
  echo "bench: $*" >&2
  exit 2
}
note() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --reps)
      [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--reps needs a positive integer"
      REPS=$2
      shift
      ;;
    --reps=*)
      REPS=${1#*=}
      [[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps needs a positive integer"
      ;;
    --out)
      [[ -n ${2:-} ]] || die "--out needs a file name"
      OUT=$2
      shift
      ;;
    --out=*) OUT=${1#*=} ;;
    --cases)
      [[ -n ${2:-} ]] || die "--cases needs a list"
      CASES=$2
      shift
      ;;
    --cases=*) CASES=${1#*=} ;;
    --keep) KEEP=1 ;;
    --payload-mib | --small | --plain | --scale)
      [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer"
      SIZE_OVERRIDE[${1#--}]=$2
      shift
      ;;
    --tmpdir)
      [[ -n ${2:-} ]] || die "--tmpdir needs a directory"
      TMPBASE=$2
      shift
      ;;
    --tmpdir=*) TMPBASE=${1#*=} ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
  shift
done

# ---- sizes -------------------------------------------------------------------

if ((QUICK)); then
  MODE=quick
  PAYLOAD_BYTES=$((4 * 1024 * 1024)) # throughput payload
  N_SMALL=50                         # scan.* and process.zstd packets
  N_PLAIN=50                         # process.plain jobs
  N_SCALE=1000                       # scale.* packets
else
  MODE=full
  PAYLOAD_BYTES=$((1024 * 1024 * 1024))
  N_SMALL=2000
  N_PLAIN=500
  N_SCALE=100000
fi
[[ -n ${SIZE_OVERRIDE[payload-mib]:-} ]] && PAYLOAD_BYTES=$((SIZE_OVERRIDE[payload-mib] * 1024 * 1024))
N_SMALL=${SIZE_OVERRIDE[small]:-$N_SMALL}
N_PLAIN=${SIZE_OVERRIDE[plain]:-$N_PLAIN}
N_SCALE=${SIZE_OVERRIDE[scale]:-$N_SCALE}
((${#SIZE_OVERRIDE[@]})) && MODE="$MODE (sizes overridden)"
SMALL_PAYLOAD=512 # bytes of payload in each small packet

ALL_CASES=(throughput.zstd throughput.gpg scan.zstd scan.gpg process.zstd
  process.plain scale.cold scale.ls scale.status scale.process1)
SELECTED=()
for c in "${ALL_CASES[@]}"; do
  IFS=, read -ra wanted <<<"$CASES"
  for w in "${wanted[@]}"; do
    if [[ $w == all || $w == "$c" || $w == "${c%%.*}" ]]; then
      SELECTED+=("$c")
      break
    fi
  done
done
((${#SELECTED[@]})) || die "--cases $CASES selects nothing (cases: ${ALL_CASES[*]})"
selected() {
  local c
  for c in "${SELECTED[@]}"; do [[ $c == "$1" || ${c%%.*} == "$1" ]] && return 0; done
  return 1
}

# ---- prerequisites ---------------------------------------------------------------

[[ -n $SAFESPOOL && -x $SAFESPOOL ]] ||
  die "SAFESPOOL=$SAFESPOOL is not executable (build it: make -C build safespool)"
[[ -n $FSPL && -x $FSPL ]] || die "FSPL=$FSPL is not executable (apt-get install filespooler)"
[[ -x $GNU_TIME ]] || die "$GNU_TIME missing (apt-get install time; scripts/install-deps.sh has it)"
[[ -x $GEN_PACKETS ]] ||
  die "GEN_PACKETS=$GEN_PACKETS is not executable (build it: cmake --build build --target gen_packets)"
for tool in zstd zstdcat gpg gpgconf python3 tar cc; do
  command -v "$tool" >/dev/null || die "$tool not installed (scripts/install-deps.sh)"
done
SAFESPOOL=$(readlink -f -- "$SAFESPOOL")
FSPL=$(readlink -f -- "$FSPL")
FSPL_VERSION=$("$FSPL" --version 2>&1)
[[ $FSPL_VERSION == "filespooler 1.2.2" ]] ||
  note "warning: $FSPL is '$FSPL_VERSION', the reference is filespooler 1.2.2"
SAFESPOOL_VERSION=$("$SAFESPOOL" --version 2>&1 | head -n1)
GIT_COMMIT=$(git -C "$BENCH_DIR" describe --always --dirty 2>/dev/null || echo unknown)

mkdir -p "$TMPBASE" || die "cannot create $TMPBASE"
W=$(mktemp -d "$TMPBASE/safespool-bench.XXXXXX") || die "cannot create a scratch directory in $TMPBASE"
export GNUPGHOME=$W/gnupg

cleanup() {
  if [[ -d $GNUPGHOME ]]; then
    gpgconf --homedir "$GNUPGHOME" --kill gpg-agent >/dev/null 2>&1
  fi
  if ((KEEP)); then
    echo "bench: scratch directory kept: $W" >&2
  else
    rm -rf "$W"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if ((!QUICK)); then
  avail_kib=$(df -Pk "$W" | awk 'NR == 2 { print $4 }')
  ((avail_kib > 3 * 1024 * 1024)) ||
    die "need ~3 GiB free in $TMPBASE for the full run (have $((avail_kib / 1024)) MiB); use --tmpdir"
fi

[[ -n $OUT ]] || OUT=${TMPDIR:-/tmp}/safespool-bench-$(date +%Y%m%d-%H%M%S).tsv
: >"$OUT" || die "cannot write $OUT"

mkdir -p "$W/data" "$W/q" "$W/logs"
RAW=$W/raw.tsv
: >"$RAW"
FAILED=0

# ---- helper programs ----------------------------------------------------------------

# Packets come from the core library's encoder (tests/tools/gen_packets.cpp,
# built with the tests); the report from bench/report.py; the floor is
# bench/floor.c, compiled here.
REPORT=$BENCH_DIR/report.py
FLOOR=$W/floor
cc -O2 -o "$FLOOR" "$BENCH_DIR/floor.c" || die "cannot compile bench/floor.c (apt-get install gcc)"

# ---- measuring ------------------------------------------------------------------

# shellcheck source=measure.sh
source "$BENCH_DIR/measure.sh"

CONSUMER=(sh -- -c 'cat > /dev/null')
GPG_DECODER='gpg -q --batch -d | zstdcat'
KEY=bench@safespool.invalid

# ---- data ---------------------------------------------------------------------

INFO=$W/info.tsv
: >"$INFO"
case_info() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$INFO"; }

verify_packet() { # NAME: stdin is a decoded packet; both tools must read it
  local p=$W/verify.fspl
  cat >"$p"
  [[ $("$FSPL" stdin-info <"$p") == *FSPL_SEQ=* ]] ||
    die "fspl cannot read the generated $1 packet"
  [[ $("$SAFESPOOL" stdin-info <"$p") == *FSPL_SEQ=* ]] ||
    die "safespool cannot read the generated $1 packet"
}

need_gpg=0
selected throughput.gpg && need_gpg=1
selected scan.gpg && need_gpg=1
if ((need_gpg)); then
  note "creating a throwaway OpenPGP key in $GNUPGHOME"
  mkdir -m 700 "$GNUPGHOME"
  gpg --batch --quiet --passphrase '' --quick-gen-key "$KEY" future-default default never \
    >/dev/null 2>&1 || die "gpg key generation failed"
fi

if selected throughput; then
  note "generating the $((PAYLOAD_BYTES / 1024 / 1024)) MiB payload (tar of /usr/share)"
  for ((i = 0; i < 64; i++)); do
    tar -cf - -C / usr/share 2>/dev/null
    (($? >= 128)) && break # SIGPIPE: head has enough
  done | head -c "$PAYLOAD_BYTES" >"$W/data/payload"
  (($(stat -c %s "$W/data/payload") == PAYLOAD_BYTES)) || die "could not generate the payload"
  mkdir -p "$W/data/tp-zstd"
  TP_ZSTD=$W/data/tp-zstd/$("$SAFESPOOL" gen-filename)
  note "making the zstd packet"
  "$SAFESPOOL" prepare -s - -i "$W/data/payload" | zstd -T0 -q >"$TP_ZSTD" ||
    die "making the zstd packet failed"
  zstd -dc "$TP_ZSTD" 2>/dev/null | head -c 4096 | verify_packet zstd
  selected throughput.zstd && case_info throughput.zstd "$((PAYLOAD_BYTES / 1024 / 1024)) MiB payload, zstd packet ($(($(stat -c %s "$TP_ZSTD") / 1024 / 1024)) MiB), consumer sh -c 'cat > /dev/null'" 1 "$PAYLOAD_BYTES"
  if selected throughput.gpg; then
    mkdir -p "$W/data/tp-gpg"
    TP_GPG=$W/data/tp-gpg/$("$SAFESPOOL" gen-filename)
    note "making the OpenPGP+zstd packet"
    gpg --batch --trust-model always -e -r "$KEY" <"$TP_ZSTD" >"$TP_GPG" ||
      die "gpg encryption failed"
    gpg -q --batch -d <"$TP_GPG" 2>/dev/null | zstd -dc 2>/dev/null | head -c 4096 | verify_packet OpenPGP
    case_info throughput.gpg "$((PAYLOAD_BYTES / 1024 / 1024)) MiB payload, OpenPGP(zstd) packet ($(($(stat -c %s "$TP_GPG") / 1024 / 1024)) MiB), consumer sh -c 'cat > /dev/null'" 1 "$PAYLOAD_BYTES"
  fi
  rm -f "$W/data/payload"
fi

if selected scan || selected process.zstd; then
  note "generating $N_SMALL small zstd packets"
  mkdir -p "$W/data/small-zstd"
  "$GEN_PACKETS" "$W/data/small-zstd" 1 "$N_SMALL" "$SMALL_PAYLOAD" zstd >/dev/null ||
    die "packet generation failed"
  f=("$W"/data/small-zstd/fspl-*.fspl)
  ((${#f[@]} == N_SMALL)) || die "expected $N_SMALL zstd packets, got ${#f[@]}"
  zstd -dc "${f[0]}" | verify_packet "small zstd"
  if selected scan.gpg; then
    note "generating $N_SMALL small OpenPGP(zstd) packets"
    mkdir -p "$W/data/small-gpg"
    (cd "$W/data/small-zstd" &&
      gpg --batch --quiet --yes --trust-model always -r "$KEY" --encrypt-files fspl-*.fspl) ||
      die "gpg --encrypt-files failed"
    "$GEN_PACKETS" strip "$W/data/small-zstd" .gpg "$W/data/small-gpg" >/dev/null
    f=("$W"/data/small-gpg/fspl-*.fspl)
    ((${#f[@]} == N_SMALL)) || die "expected $N_SMALL OpenPGP packets, got ${#f[@]}"
    gpg -q --batch -d <"${f[0]}" 2>/dev/null | zstd -dc | verify_packet "small OpenPGP"
  fi
fi

if selected process.plain; then
  note "generating $N_PLAIN plain packets"
  mkdir -p "$W/data/plain"
  "$GEN_PACKETS" "$W/data/plain" 1 "$N_PLAIN" "$SMALL_PAYLOAD" >/dev/null ||
    die "packet generation failed"
  f=("$W"/data/plain/fspl-*.fspl)
  verify_packet plain <"${f[0]}"
fi

if selected scale; then
  note "generating $N_SCALE plain packets for the scale cases"
  SCALE_Q=$W/q/scale
  "$FSPL" queue-init -q "$SCALE_Q" || die "queue-init failed"
  SCALE_FIRST=$("$GEN_PACKETS" "$SCALE_Q/jobs" 1 "$N_SCALE" 0) || die "packet generation failed"
  ln "$SCALE_Q/jobs/$SCALE_FIRST" "$W/data/scale-first.fspl"
  verify_packet scale <"$W/data/scale-first.fspl"
fi

# Start the agent and unlock nothing (the key has no passphrase): the first
# timed decryption must not pay for starting gpg-agent.
if ((need_gpg)); then
  echo warm | gpg --batch -q --trust-model always -e -r "$KEY" | gpg --batch -q -d >/dev/null 2>&1
fi

# ---- cases --------------------------------------------------------------------

run_throughput() { # CASE PACKET SAFESPOOL_OPTS... -- FSPL_DECODER LIMIT_SCRIPT
  local case=$1 packet=$2 tmpl q=$W/q/$1 fspl_dec limit
  tmpl=$(dirname "$packet")
  shift 2
  local ss_opts=()
  while [[ $1 != -- ]]; do
    ss_opts+=("$1")
    shift
  done
  fspl_dec=$2 limit=$3
  for ((REP = 1; REP <= REPS; REP++)); do
    fresh_queue "$q" "$tmpl"
    measure "$case.safespool" "$SAFESPOOL" queue-process -q "$q" "${ss_opts[@]}" "${CONSUMER[@]}"
    check jobs_empty "$q"
    record "$case" safespool
    fresh_queue "$q" "$tmpl"
    measure "$case.fspl" "$FSPL" queue-process -q "$q" -d "$fspl_dec" "${CONSUMER[@]}"
    check jobs_empty "$q"
    record "$case" fspl
    measure "$case.limit" sh -c "$limit" sh "$packet"
    record "$case" limit
  done
  rm -rf "$q"
}

run_scan() { # CASE TEMPLATE SAFESPOOL_OPTS... -- FSPL_OPTS...
  local case=$1 tmpl=$2 q=$W/q/$1
  shift 2
  local ss_opts=() fs_opts=()
  while [[ $1 != -- ]]; do
    ss_opts+=("$1")
    shift
  done
  shift
  fs_opts=("$@")
  fresh_queue "$q" "$tmpl"
  for ((REP = 1; REP <= REPS; REP++)); do
    # Every rep is a first scan: the header index a previous rep left
    # would answer from memory of the queue (that is what scale.* measure).
    rm -f "$q/.safespool-index"
    measure "$case.safespool" "$SAFESPOOL" queue-ls -q "$q" "${ss_opts[@]}"
    check lines_at_least "$N_SMALL"
    record "$case" safespool
    measure "$case.fspl" "$FSPL" queue-ls -q "$q" "${fs_opts[@]}"
    check lines_at_least "$N_SMALL"
    record "$case" fspl
  done
  rm -rf "$q"
}

run_process() { # CASE TEMPLATE JOBS -- FSPL_OPTS...
  local case=$1 tmpl=$2 jobs=$3 q=$W/q/$1
  shift 4
  for ((REP = 1; REP <= REPS; REP++)); do
    fresh_queue "$q" "$tmpl"
    measure "$case.safespool" "$SAFESPOOL" queue-process -q "$q" true
    check jobs_empty "$q"
    record "$case" safespool
    fresh_queue "$q" "$tmpl"
    measure "$case.fspl" "$FSPL" queue-process -q "$q" "$@" true
    check jobs_empty "$q"
    record "$case" fspl
    # The same number of jobs' irreducible work, in the same file system.
    rm -rf "$q" && mkdir -p "$q"
    measure "$case.floor" "$FLOOR" "$q" "$jobs"
    record "$case" floor
  done
  rm -rf "$q"
}

scale_reset() { # puts job 1 back, nextseq 1, no SafeSpool records
  [[ -e $SCALE_Q/jobs/$SCALE_FIRST ]] || ln "$W/data/scale-first.fspl" "$SCALE_Q/jobs/$SCALE_FIRST"
  printf '1\n' >"$SCALE_Q/nextseq"
  rm -f "$SCALE_Q/.safespool-status" "$SCALE_Q/.safespool-done" "$SCALE_Q"/.safespool-ledger*
}

run_scale() {
  for ((REP = 1; REP <= REPS; REP++)); do
    if selected scale.cold; then
      # No index, as after a copy of the queue or an import of many packets.
      scale_reset
      rm -f "$SCALE_Q/.safespool-index"
      measure scale.cold.safespool "$SAFESPOOL" queue-ls -q "$SCALE_Q"
      check lines_at_least "$N_SCALE"
      record scale.cold safespool
      measure scale.cold.fspl "$FSPL" queue-ls -q "$SCALE_Q"
      check lines_at_least "$N_SCALE"
      record scale.cold fspl
    fi
    if selected scale.ls; then
      # With the index a previous scan left (not timed).
      scale_reset
      "$SAFESPOOL" queue-ls -q "$SCALE_Q" >/dev/null
      scale_reset
      measure scale.ls.safespool "$SAFESPOOL" queue-ls -q "$SCALE_Q"
      check lines_at_least "$N_SCALE"
      record scale.ls safespool
      measure scale.ls.fspl "$FSPL" queue-ls -q "$SCALE_Q"
      check lines_at_least "$N_SCALE"
      record scale.ls fspl
    fi
    if selected scale.status; then
      scale_reset
      measure scale.status.safespool "$SAFESPOOL" queue-status -q "$SCALE_Q"
      check lines_at_least 1
      record scale.status safespool
    fi
    if selected scale.process1; then
      scale_reset
      # Warm, as the case says: with the index a full scan of this very
      # jobs/ writes (not timed). scale_reset may have linked job 1 back;
      # an index from before that cannot answer for the listing, and one
      # new file is too few for a scan to rewrite a 100,000-entry index.
      rm -f "$SCALE_Q/.safespool-index"
      "$SAFESPOOL" queue-ls -q "$SCALE_Q" >/dev/null
      measure scale.process1.safespool "$SAFESPOOL" queue-process -q "$SCALE_Q" -n 1 true
      check ran_exactly_one "$SCALE_Q" "$SCALE_FIRST"
      record scale.process1 safespool
      scale_reset
      measure scale.process1.fspl "$FSPL" queue-process -q "$SCALE_Q" -n 1 true
      check ran_exactly_one "$SCALE_Q" "$SCALE_FIRST"
      record scale.process1 fspl
    fi
  done
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
note "running ${SELECTED[*]} ($MODE sizes, $REPS reps)"

if selected throughput.zstd; then
  run_throughput throughput.zstd "$TP_ZSTD" -- zstdcat \
    'zstd -dc -- "$1" | cat > /dev/null'
fi
if selected throughput.gpg; then
  run_throughput throughput.gpg "$TP_GPG" --gnupg-home "$GNUPGHOME" -- "$GPG_DECODER" \
    'gpg -q --batch -d -- "$1" | zstd -dc | cat > /dev/null'
fi
if selected scan.zstd; then
  case_info scan.zstd "queue-ls, $N_SMALL zstd packets ($SMALL_PAYLOAD-byte payloads); fspl -d zstdcat" "$N_SMALL" 0
  run_scan scan.zstd "$W/data/small-zstd" -- -d zstdcat
fi
if selected scan.gpg; then
  case_info scan.gpg "queue-ls, $N_SMALL OpenPGP(zstd) packets; fspl -d '$GPG_DECODER'" "$N_SMALL" 0
  run_scan scan.gpg "$W/data/small-gpg" --gnupg-home "$GNUPGHOME" -- -d "$GPG_DECODER"
fi
if selected process.zstd; then
  case_info process.zstd "queue-process, $N_SMALL zstd jobs, command true; fspl -d zstdcat" "$N_SMALL" 0
  run_process process.zstd "$W/data/small-zstd" "$N_SMALL" -- -d zstdcat
fi
if selected process.plain; then
  case_info process.plain "queue-process, $N_PLAIN plain jobs, command true" "$N_PLAIN" 0
  run_process process.plain "$W/data/plain" "$N_PLAIN" --
fi
if selected scale; then
  selected scale.cold && case_info scale.cold "queue-ls, $N_SCALE plain packets, no header index" "$N_SCALE" 0
  selected scale.ls && case_info scale.ls "queue-ls, $N_SCALE plain packets, header index from the scan before" "$N_SCALE" 0
  selected scale.status && case_info scale.status "queue-status, $N_SCALE plain packets (safespool only)" "$N_SCALE" 0
  selected scale.process1 && case_info scale.process1 "queue-process -n 1 true on the $N_SCALE-packet queue" 1 0
  run_scale
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
export MODE REPS GIT_COMMIT SAFESPOOL SAFESPOOL_VERSION FSPL FSPL_VERSION LOAD_BEFORE LOAD_AFTER \
  PAYLOAD_BYTES N_SMALL N_PLAIN N_SCALE
python3 "$REPORT" meta "$W/meta.json" || die "cannot write the run's metadata"
python3 "$REPORT" report "$RAW" "$INFO" "$W/meta.json" "$OUT" || die "report failed"
echo
echo "results: $OUT"
if ((FAILED)); then
  echo "bench: some commands failed; see ERROR above" >&2
  exit 1
fi
exit 0

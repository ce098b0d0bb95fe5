# SPDX-License-Identifier: GPL-3.0-or-later
# A scan SIGKILLed at random moments leaves nothing behind: no gpg of the
# OpenPGP batch (`gpg --decrypt-files`, which used to block for ever on its
# next FIFO once its reader was gone: 1,151 orphans after 1,439 kills), and
# no $TMPDIR/safespool-gpg-* directory once the next scan has run. Real gpg,
# small encrypted packets, a cold header index for every scan.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
safespool_only || { echo "safespool only"; e2e_finish; exit; }

N=${SCAN_JOBS:-120}
KILLS=${SCAN_KILLS:-40}
export GNUPGHOME=$T/gnupg
export TMPDIR=$T/tmp
mkdir -m 700 "$GNUPGHOME" "$TMPDIR"
trap 'gpgconf --kill gpg-agent 2>/dev/null; e2e_cleanup' EXIT
gpg --batch --passphrase '' --quick-gen-key receiver@example.org future-default default never \
  2>/dev/null || fail "cannot make a key"
Q=$T/q
ss queue-init -q "$Q"

# The batch gpg processes of this test: their command line names our TMPDIR.
batch_gpgs() { pgrep -f -- "--decrypt-files .*$TMPDIR/" || true; }
cold_scan() { rm -f "$Q/.safespool-index"; }

section "prepare $N small encrypted packets"
for i in $(seq 1 "$N"); do
  echo "payload $i" | ss prepare -s "$T/seq" --encrypt-to receiver@example.org -i - \
    >"$Q/jobs/fspl-$i.fspl" || fail "prepare $i"
done
cold_scan
start=$(date +%s%N)
ss queue-ls -q "$Q" >"$T/ls.full" || fail "a full scan failed"
window=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "the full scan lists every packet" "$N" "$(grep -c 'fspl-' "$T/ls.full")"
echo "a cold scan takes ${window} ms here"

section "kill queue-ls $KILLS times during its scan"
during_gpg=0
for k in $(seq 1 "$KILLS"); do
  cold_scan
  "$SAFESPOOL" -l error queue-ls -q "$Q" >/dev/null 2>&1 &
  pid=$!
  if ((k % 2)); then # at a random moment of the scan
    ms=$(( (RANDOM * 32768 + RANDOM) % (window + 1) ))
    sleep "$(printf '%d.%03d' $(( ms / 1000 )) $(( ms % 1000 )))"
  else # as soon as its batch gpg runs (5 s at most), which chance may miss
    for ((t = 0; t < 500; ++t)); do
      [[ -n "$(batch_gpgs)" ]] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.01
    done
  fi
  [[ -n "$(batch_gpgs)" ]] && during_gpg=$((during_gpg + 1))
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
done
echo "kills: $KILLS, $during_gpg of them while a batch gpg ran"
[[ $during_gpg -gt 0 ]] || fail "no kill landed while gpg ran: the test proves nothing"
sleep 1  # a tethered gpg dies at once; give a slow machine a moment
orphans=$(batch_gpgs | tr '\n' ' ')
expect_eq "batch gpg processes left after the kills" "" "$orphans"
for pid in $orphans; do kill -9 "$pid" 2>/dev/null; done  # ours: this test started them
left=$(ls "$TMPDIR" | grep -c '^safespool-gpg' || true)
echo "directories left by killed scans: $left"

section "the next scan reclaims what the killed ones left"
cold_scan
ss queue-ls -q "$Q" >"$T/ls.after" || fail "the scan after the kills failed"
expect_eq "it lists every packet" "$N" "$(grep -c 'fspl-' "$T/ls.after")"
expect_eq "directories left after it" "" "$(ls "$TMPDIR" | grep '^safespool-gpg' || true)"

e2e_finish

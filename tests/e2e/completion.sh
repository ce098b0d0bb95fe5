#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The bash completion, packaging/bash-completion/safespool, run the way bash
# runs it (COMP_WORDS, COMP_CWORD, the function `complete -p` names, then
# COMPREPLY), in a bash of its own:
#  - it offers exactly the subcommands of `$SAFESPOOL --help`, and for each
#    subcommand exactly the options of `$SAFESPOOL SUBCOMMAND --help`;
#  - for every option whose --help names its choices ("X (default), Y or Z"),
#    it offers exactly those choices, also case-insensitively and after "=";
#  - directories for -q, files for -s, commands for COMMAND, and it tells
#    option values and positional arguments apart;
# all once in a plain bash and once with bash-completion, which loads the
# file by the command's name as it does when the file is installed.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kFile=$(cd "$E2E_LIB_DIR/../.." && pwd)/packaging/bash-completion/safespool
kBashCompletion=/usr/share/bash-completion/bash_completion

[[ -s "$kFile" ]] && pass || { fail "no completion file at $kFile"; e2e_finish; }
run syntax bash -n "$kFile"
expect_eq "bash -n $kFile" 0 "$RC"
# The completion follows safespool's --help: with SAFESPOOL=fspl there is
# nothing to compare it with.
safespool_only || e2e_finish

# The scratch tree the completions look at (each bash runs in it).
mkdir -p "$T/c/alpha" "$T/c/beta" "$T/xdg/bash-completion/completions"
touch "$T/c/afile"
# Where bash-completion looks first for a command's completion: the file is
# loaded under its installed name, as from /usr/share/bash-completion/completions.
ln -s "$kFile" "$T/xdg/bash-completion/completions/safespool"

# driver.sh MODE CASES: for each line of CASES, a command line (each word
# followed by \x1f), completes its last word as bash does and prints
# COMPREPLY as one line (each word followed by \x1f). One bash runs them all.
cat >"$T/driver.sh" <<'SH'
mode=$1
if [[ $mode == bash-completion ]]; then
  source "$BASH_COMPLETION_FILE"
  __load_completion safespool || { echo "bash-completion did not load safespool" >&2; exit 3; }
else
  source "$COMPLETION_FILE"
fi
spec=$(complete -p safespool) || exit 3
fn=${spec#*-F }
fn=${fn%% *}
while IFS=$'\x1f' read -r -a COMP_WORDS; do
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE="${COMP_WORDS[*]}"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  "$fn" safespool "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
  ((${#COMPREPLY[@]})) && printf '%s\x1f' "${COMPREPLY[@]}"
  echo
done <"$2"
SH

modes=(plain)
if [[ -r "$kBashCompletion" ]]; then
  modes+=(bash-completion)
else
  # scripts/install-deps.sh installs it.
  echo "note: bash-completion not installed, completion checked in a plain bash only"
fi

# Cases are collected, then run together: one bash per mode, not one per
# case.
: >"$T/cases"
: >"$T/wants"
# expect_completions WANT WORD...: completing the last WORD of the command
# line WORD... offers exactly the words of WANT (whitespace-separated, any
# order). WANT "has:X" or "lacks:X": X is (not) among those offered.
expect_completions() {
  local want=$1
  shift
  printf '%s\x1f' "$@" >>"$T/cases"
  echo >>"$T/cases"
  echo "${want//$'\n'/ }" >>"$T/wants"
}

# check_completions: runs the cases in MODE and checks what they offered.
check_completions() {
  (cd "$T/c" && env COMPLETION_FILE="$kFile" BASH_COMPLETION_FILE="$kBashCompletion" \
    XDG_DATA_HOME="$T/xdg" timeout -k 5 "$E2E_TIMEOUT" \
    bash --norc --noprofile "$T/driver.sh" "$mode" "$T/cases") >"$T/replies" 2>"$T/driver.err"
  RC=$?
  expect_eq "[$mode] completion driver: exit status" 0 "$RC"
  expect_eq "[$mode] completion driver: stderr" "" "$(cat "$T/driver.err")"
  local verdict
  while IFS= read -r verdict; do
    [[ $verdict == ok ]] && pass || fail "[$mode] $verdict"
  done < <(awk -F '\x1f' -v q="'" '
    FILENAME == ARGV[1] { line[FNR] = $0; cases = FNR; next }
    FILENAME == ARGV[2] { want[FNR] = $0; next }
    {
      delete got; n = 0; shown = ""
      for (i = 1; i < NF; i++) { got[$i] = 1; n++; shown = shown " " $i }
      nw = split(line[FNR], w, FS); cmd = ""
      for (i = 1; i < nw; i++) cmd = cmd (i > 1 ? " " : "") q w[i] q
      wl = want[FNR]; sub(/^ +/, "", wl); sub(/ +$/, "", wl)
      if (wl ~ /^has:/ || wl ~ /^lacks:/) {
        x = substr(wl, index(wl, ":") + 1)
        ok = (wl ~ /^has:/) ? (x in got) : !(x in got)
      } else {
        m = (wl == "") ? 0 : split(wl, ww, " ")
        ok = (m == n)
        for (i = 1; i <= m; i++) if (!(ww[i] in got)) ok = 0
      }
      print ok ? "ok" : "completing " cmd ": offered [" substr(shown, 2) "], expected [" wl "]"
    }
    END { if (FNR != cases) print "got " FNR " replies for " cases " cases" }
  ' "$T/cases" "$T/wants" "$T/replies")
}

# help_options HELPFILE: every option name (short and long) a --help text shows.
help_options() {
  sed -n '/^Options:/,/^$/p' "$1" | grep -oE '^ +-[^ ]+' | tr ',' '\n' | sed 's/^ *//'
}

# help_flags HELPFILE: the options a --help text shows without a value
# (no type such as TEXT or FLOAT after the name), long name only.
help_flags() {
  sed -n '/^Options:/,/^$/p' "$1" | awk '/^ +-/ && $2 !~ /^[A-Z][A-Z:]+$/ {
    n = split($1, names, ","); print names[n] }'
}

# help_choices HELPFILE: "OPTION CHOICE..." for each option whose description
# lists its choices with a default, e.g. "--on-error TEXT  Retry (default),
# Delete or Leave" and "--decode TEXT  Built-in decoding: auto (default), none".
help_choices() {
  sed -n '/^Options:/,/^$/p' "$1" | grep -F '(default)' | awk -F '  +' '{
    split($2, names, /[ ,]/)
    desc = $3
    sub(/^[^:]*: /, "", desc)
    gsub(/ \(default\)/, "", desc)
    gsub(/ or /, ", ", desc)
    gsub(/, /, " ", desc)
    print names[1], desc
  }'
}

run help "$SAFESPOOL" --help
expect_eq "safespool --help: exit status" 0 "$RC"
mapfile -t subcommands < <(sed -n '/^Subcommands:/,$p' "$T/help.out" | awk 'NR > 1 && NF { print $1 }')
((${#subcommands[@]} >= 19)) && pass || fail "only ${#subcommands[@]} subcommands found in safespool --help"
for sub in "${subcommands[@]}"; do
  run "help_$sub" "$SAFESPOOL" "$sub" --help
  expect_eq "safespool $sub --help: exit status" 0 "$RC"
done
# Every option with a list of choices, as "SUBCOMMAND OPTION CHOICE...".
{
  help_choices "$T/help.out" | sed 's/^/- /'
  for sub in "${subcommands[@]}"; do help_choices "$T/help_$sub.out" | sed "s/^/$sub /"; done
} >"$T/choices.txt"
# -l, --decode, --on-error, --order-by, --output-to at least: if --help words
# them differently, the parsing above needs to follow.
(($(awk '{ print $2 }' "$T/choices.txt" | sort -u | wc -l) >= 5)) && pass ||
  fail "found fewer than 5 options with choices in --help: $(cat "$T/choices.txt")"

section "subcommands and options, as --help shows them"
expect_completions "${subcommands[*]}" safespool ''
expect_completions "$(help_options "$T/help.out")" safespool -
for sub in "${subcommands[@]}"; do
  expect_completions "$(help_options "$T/help_$sub.out")" safespool "$sub" -
  # A flag takes no value: after it come options again.
  for flag in $(help_flags "$T/help_$sub.out"); do
    expect_completions "$(help_options "$T/help_$sub.out")" safespool "$sub" "$flag" -
  done
done

section "choices"
while read -r sub opt choices; do
  if [[ $sub == - ]]; then
    expect_completions "$choices" safespool "$opt" ''
  else
    expect_completions "$choices" safespool "$sub" "$opt" ''
  fi
done <"$T/choices.txt"
# Case-insensitive, as the values are; "--opt=value" as bash splits it (at
# "=") and as one word (when COMP_WORDBREAKS lacks "=").
expect_completions "Delete" safespool queue-process -q q --on-error de
expect_completions "Leave" safespool queue-process -q q --on-error = l
expect_completions "Sequence Timestamp" safespool queue-process --order-by =
expect_completions "--output-to=SaveBoth" safespool queue-process --output-to=s
expect_completions "zstd" safespool stdin-payload --decode Z
expect_completions "debug" safespool -l de

section "files, directories, commands and positions"
expect_completions "$T/c/alpha" safespool queue-ls -q "$T/c/a"
expect_completions "$T/c/alpha $T/c/beta" safespool queue-process --spool-dir "$T/c/"
expect_completions "$T/c/afile $T/c/alpha" safespool prepare -s "$T/c/a"
expect_completions "$T/c/afile $T/c/alpha" safespool queue-import -q q "$T/c/a"
# A global option's value is not the subcommand.
expect_completions "gen-filename gen-uuid" safespool -l info gen-
# The first word that is no option or option value is COMMAND.
expect_completions "has:echo" safespool queue-process -q q --timeout 5 --watch ech
expect_completions "lacks:alpha" safespool queue-process -q q --timeout 5 --watch al
# After COMMAND: its parameters, files. "--" ends the options, not COMMAND.
expect_completions "afile alpha" safespool stdin-process cat a
expect_completions "has:echo" safespool queue-process -q q -- ech
expect_completions "afile" safespool queue-process -q q -- cat af
expect_completions "" safespool queue-process -q q cat -- --wat
expect_completions "alpha" safespool prepare -s s -- al
expect_completions "" safespool gen-uuid x

for mode in "${modes[@]}"; do
  section "all of the above in a $mode bash"
  check_completions
done

e2e_finish

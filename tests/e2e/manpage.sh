#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The man page, docs/safespool.1, generated from docs/safespool.1.md:
#  - it is what scripts/gen-manpage.sh makes of the Markdown now (when
#    go-md2man is installed);
#  - groff renders it with every warning enabled (-ww) and prints nothing;
#    `man -l` (man-db, with --warnings) renders it without a warning too;
#  - it is plain ASCII, has the usual sections, and a NAME line that
#    whatis/apropos can read;
#  - its subcommands and options are exactly those of --help: every
#    subcommand that `$SAFESPOOL --help` lists has a SYNOPSIS line and an .SS
#    entry; each SYNOPSIS line names exactly the options of
#    `$SAFESPOOL SUBCOMMAND --help`; every option of --help has a .TP entry
#    (is defined, not only mentioned); and no .TP entry defines an option
#    that no --help shows;
#  - every exit status of docs/exit-codes.md has an entry under EXIT STATUS;
#  - .TH names the version `$SAFESPOOL --version` prints, as does
#    packaging/debian/changelog, and the Debian package installs the page.
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kRoot=$E2E_LIB_DIR/../..
kPage=$kRoot/docs/safespool.1

if ! command -v groff >/dev/null; then
  # scripts/install-deps.sh installs groff-base (and man-db).
  echo "SKIP: groff not installed (apt-get install groff-base man-db)"
  exit 0
fi
[[ -s "$kPage" ]] && pass || { fail "no man page at docs/safespool.1"; e2e_finish; }

section "generated from docs/safespool.1.md"
if command -v go-md2man >/dev/null; then
  run gen bash "$kRoot/scripts/gen-manpage.sh" -o "$T/fresh.1"
  expect_eq "scripts/gen-manpage.sh: exit status" 0 "$RC"
  show_err gen
  # A difference means the .md was edited without regenerating (or the .1
  # by hand): run scripts/gen-manpage.sh and commit both.
  expect_same "docs/safespool.1 is stale: run scripts/gen-manpage.sh" "$T/fresh.1" "$kPage"
else
  echo "note: go-md2man not installed, freshness of docs/safespool.1 not checked"
fi

section "renders without warnings"
run groff groff -man -ww -z "$kPage"
expect_eq "groff -man -ww -z: exit status" 0 "$RC"
expect_eq "groff -man -ww -z: warnings" "" "$(cat "$T/groff.err")"
# The text, as a reader sees it: 80 columns, no overstriking.
LC_ALL=C.UTF-8 groff -man -ww -Tutf8 -rLL=78n -P-cbou "$kPage" >"$T/page.txt" 2>"$T/render.err"
expect_eq "groff -Tutf8: warnings" "" "$(cat "$T/render.err")"
if command -v man >/dev/null; then
  # From stdin: man-db may read files as another user.
  run man env LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l - <"$kPage"
  expect_eq "man --warnings -l: exit status" 0 "$RC"
  expect_eq "man --warnings -l: warnings" "" "$(cat "$T/man.err")"
else
  echo "note: man-db not installed, only groff checked"
fi
bad=$(LC_ALL=C grep -n '[^ -~]' "$kPage" | head -n 3)
expect_eq "page source is ASCII" "" "$bad"

section "sections"
for s in NAME SYNOPSIS DESCRIPTION SUBCOMMANDS "DECODE OPTIONS" ENVIRONMENT LOCKING \
  "EXIT STATUS" FILES EXAMPLES "SEE ALSO"; do
  grep -Eq "^\.SH \"?$s\"?$" "$kPage" && pass || fail "no section .SH $s"
done
# whatis/apropos need "safespool - description" under NAME; lexgrog (man-db)
# is what mandb uses to read it.
if command -v lexgrog >/dev/null; then
  run lexgrog lexgrog "$kPage"
  grep -q ': "safespool - .' "$T/lexgrog.out" && pass ||
    fail "lexgrog finds no 'safespool - description' NAME line: $(cat "$T/lexgrog.out" "$T/lexgrog.err")"
else
  grep -Eq '^safespool \\?- ' <(sed -n '/^\.SH "\{0,1\}NAME/,/^\.SH/p' "$kPage") && pass ||
    fail "NAME section is not 'safespool - description' (whatis/apropos need it)"
fi

# ---- the page's structure, as plain text --------------------------------------

# plain: roff text without font changes and escapes, as a reader sees it.
plain() { sed -E 's/\\f[BIRP]//g; s/\\&//g; s/\\-/-/g; s/\\e/\\/g; s/"//g'; }
# section_of NAME: the lines of section .SH NAME, up to the next .SH.
section_of() { awk -v s="$1" '/^\.SH / { on = ($0 == ".SH " s || $0 == ".SH \"" s "\"") ; next } on' "$kPage"; }
# tp_tags: the tags of the .TP entries (the line after each .TP) on stdin,
# where options are defined: an option mentioned only in passing does not count.
tp_tags() { awk 'tag { print; tag = 0 } /^\.TP/ { tag = 1 }' | plain; }
# option_names: the option names (-x, --long-name) in the text on stdin.
option_names() {
  grep -oE '(^|[][ |,/])--?[a-zA-Z][a-zA-Z0-9-]*' | sed -E 's/^[][ |,/]+//' | sort -u
}

# The page's facts as sets (associative arrays), so that the comparisons
# below run in this shell and not as a process per option.
declare -A defined=()     # [OPTION]: OPTION has a .TP entry
declare -A synopsis=()    # ["SUBCOMMAND OPTION"]: its SYNOPSIS line names OPTION
declare -A page_subs=()   # [SUBCOMMAND]: has a SYNOPSIS line
declare -A headed_subs=() # [SUBCOMMAND]: has an .SS entry
tp_tags <"$kPage" >"$T/tags.txt"
for name in $(option_names <"$T/tags.txt"); do defined[$name]=1; done
# The options DECODE-OPTIONS stands for in a SYNOPSIS line.
decode_options=$(section_of "DECODE OPTIONS" | tp_tags | option_names)
[[ -n "$decode_options" ]] && pass || fail "no options defined under DECODE OPTIONS"
# The SYNOPSIS, one paragraph per line, as "SUBCOMMAND OPTION..." ("-" for
# the lines without a subcommand: the global options).
while read -r sub names; do
  [[ $sub == - ]] || page_subs[$sub]=1
  for name in $names; do
    if [[ $name == DECODE-OPTIONS ]]; then
      for name in $decode_options; do synopsis["$sub $name"]=1; done
    else
      synopsis["$sub $name"]=1
    fi
  done
done < <(section_of SYNOPSIS | plain | awk '
  /^\.PP/ { if (p != "") print p; p = ""; next }
  NF { p = p (p == "" ? "" : " ") $0 }
  END { if (p != "") print p }' | awk '
  $1 != "safespool" { next }
  {
    sub_ = ($2 ~ /^[a-z]/) ? $2 : "-"
    out = sub_
    n = split($0, w, /[][ |,\/=]+/)
    for (i = 1; i <= n; i++)
      if (w[i] ~ /^--?[a-zA-Z][a-zA-Z0-9-]*$/ || w[i] == "DECODE-OPTIONS") out = out " " w[i]
    print out
  }')
for sub in $(sed -nE 's/^\.SS "?safespool ([a-z][a-z-]*).*/\1/p' "$kPage" | sed 's/\\//g'); do
  headed_subs[$sub]=1
done

# help_pairs HELPFILE: the options a --help text shows, one per line, short
# and long name of one option together ("-s --seqfile", "--zstd").
help_pairs() {
  awk '/^Options:/ { on = 1; next } /^$/ { on = 0 } on && /^ +-/ { gsub(/,/, " ", $1); print $1 }' "$1"
}

# compare_options SUBCOMMAND HELPFILE: the SYNOPSIS line of SUBCOMMAND ("-"
# for the global one) names exactly the options of HELPFILE (besides
# -h/--help, which every subcommand has and GLOBAL OPTIONS describes), and
# each of them has a .TP entry.
declare -A help_options=() # [OPTION]: some --help shows OPTION
compare_options() {
  local sub=$1 what=$1 pair name found key
  [[ $sub == - ]] && what="global options"
  declare -A in_help=()
  while read -r pair; do
    [[ $sub != - && $pair == "-h --help" ]] && continue
    found=0
    for name in $pair; do
      in_help[$name]=1
      help_options[$name]=1
      [[ -n "${synopsis["$sub $name"]:-}" ]] && found=1
      [[ -n "${defined[$name]:-}" ]] && pass ||
        fail "$what: option $name (--help) has no .TP entry in the man page"
    done
    ((found)) && pass || fail "$what: option $pair (--help) is missing from its SYNOPSIS line"
  done < <(help_pairs "$2")
  for key in "${!synopsis[@]}"; do
    [[ ${key%% *} == "$sub" ]] || continue
    name=${key#* }
    [[ -n "${in_help[$name]:-}" ]] && pass ||
      fail "$what: the SYNOPSIS line names $name, which --help does not show"
  done
}

section "subcommands and options: the man page and --help agree"
# (Only for safespool: run with SAFESPOOL=fspl, this part has nothing to check.)
if safespool_only; then
  run help "$SAFESPOOL" --help
  expect_eq "safespool --help: exit status" 0 "$RC"
  mapfile -t subcommands < <(sed -n '/^Subcommands:/,$p' "$T/help.out" | awk 'NR > 1 && NF { print $1 }')
  ((${#subcommands[@]} >= 19)) && pass ||
    fail "only ${#subcommands[@]} subcommands found in safespool --help"
  compare_options - "$T/help.out"
  declare -A help_subs=()
  for sub in "${subcommands[@]}"; do
    help_subs[$sub]=1
    # An .SS heading per subcommand (several may share one entry).
    [[ -n "${headed_subs[$sub]:-}" ]] && pass ||
      fail "subcommand $sub has no '.SS safespool $sub ...' entry"
    [[ -n "${page_subs[$sub]:-}" ]] && pass || fail "subcommand $sub has no SYNOPSIS line"
    run "help_$sub" "$SAFESPOOL" "$sub" --help
    if ((RC != 0)); then
      fail "safespool $sub --help: exit status $RC"
      continue
    fi
    compare_options "$sub" "$T/help_$sub.out"
  done
  # And nothing the binary does not have: subcommands ...
  for sub in "${!headed_subs[@]}" "${!page_subs[@]}"; do
    [[ -n "${help_subs[$sub]:-}" ]] && pass ||
      fail "the man page documents subcommand $sub, which safespool --help does not list"
  done
  # ... and options.
  for name in "${!defined[@]}"; do
    [[ -n "${help_options[$name]:-}" ]] && pass ||
      fail "the man page defines option $name (.TP), which no --help shows"
  done
fi

section "exit statuses"
section_of "EXIT STATUS" | tp_tags | grep -E '^[0-9]+$' >"$T/exit_tags.txt"
codes=$(grep -oE '^\| *[0-9]+ \|' "$kRoot/docs/exit-codes.md" | tr -dc '0-9\n')
[[ -n "$codes" ]] && pass || fail "no exit status table found in docs/exit-codes.md"
for code in $codes; do
  grep -qx "$code" "$T/exit_tags.txt" && pass ||
    fail "exit status $code (docs/exit-codes.md) has no entry under EXIT STATUS"
done
# And no entry the contract does not have.
for code in $(cat "$T/exit_tags.txt"); do
  grep -qx "$code" <<<"$codes" && pass ||
    fail "EXIT STATUS lists $code, which docs/exit-codes.md does not"
done

section "version and packaging"
version=$("$SAFESPOOL" --version | awk '{ print $NF }')
is_fspl_mode && version=$(sed -n 's/^project(safespool VERSION \([^ )]*\).*/\1/p' "$kRoot/CMakeLists.txt")
grep -Eq "^\.TH SAFESPOOL 1 \"[^\"]*\" \"safespool $version\"" "$kPage" && pass ||
  fail ".TH does not name safespool $version"
changelog_version=$(sed -n '1s/^safespool (\([^)-]*\).*/\1/p' "$kRoot/packaging/debian/changelog")
expect_eq "packaging/debian/changelog version" "$version" "$changelog_version"
# Both packages take the page, compressed, from the CMake install
# (scripts/check-deb.sh looks into the CPack .deb itself).
grep -qE '^usr/share/man/man1/safespool\.1\.gz$' "$kRoot/packaging/debian/safespool.install" &&
  pass || fail "packaging/debian/safespool.install does not install the man page"

e2e_finish

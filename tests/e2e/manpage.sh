#!/usr/bin/env bash
# The man page, docs/safespool.1:
#  - groff renders it with every warning enabled (-ww) and prints nothing;
#    `man -l` (man-db, with --warnings) renders it without a warning too;
#  - it is plain ASCII and has the usual sections;
#  - every subcommand that `$SAFESPOOL --help` lists has its own .SS entry,
#    and every long option that `--help` shows (globally and for each
#    subcommand) has a .TP entry (is defined, not only mentioned);
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
grep -Eq '^safespool \\- ' <(sed -n '/^\.SH NAME/,/^\.SH/p' "$kPage") && pass ||
  fail "NAME section is not 'safespool \\- description' (whatis/apropos need it)"

section "every subcommand and option of --help is documented"
# (Only for safespool: run with SAFESPOOL=fspl, this part has nothing to check.)
if safespool_only; then
run help "$SAFESPOOL" --help
expect_eq "safespool --help: exit status" 0 "$RC"
mapfile -t subcommands < <(sed -n '/^Subcommands:/,$p' "$T/help.out" | awk 'NR > 1 && NF { print $1 }')
((${#subcommands[@]} >= 19)) && pass ||
  fail "only ${#subcommands[@]} subcommands found in safespool --help"
# The tags of the page's .TP entries (the line after each .TP), where options
# are defined, as plain text: an option mentioned only in passing does not count.
awk 'tag { print; tag = 0 } /^\.TP/ { tag = 1 }' "$kPage" |
  sed -E 's/\\-/-/g; s/\\f[BIRP]//g; s/"//g' >"$T/tags.txt"
# defined OPTION: OPTION is in a .TP tag, as a whole word.
defined() { grep -qE -- "(^|[^a-z-])$1([^a-z-]|\$)" "$T/tags.txt"; }
# options_of HELPFILE: the long options a --help text shows, one per line.
options_of() { grep -oE '(^|[ ,])--[a-z][a-z0-9-]*' "$1" | sed 's/^[ ,]*//' | sort -u; }
for opt in $(options_of "$T/help.out"); do
  defined "$opt" && pass || fail "global option $opt has no .TP entry in the man page"
done
for sub in "${subcommands[@]}"; do
  # A .SS heading per subcommand (several may share one entry).
  grep -Eq "^\.SS \"safespool ${sub//-/\\\\-}( |\")" "$kPage" && pass ||
    fail "subcommand $sub has no '.SS \"safespool $sub ...\"' entry"
  run "help_$sub" "$SAFESPOOL" "$sub" --help
  if ((RC != 0)); then
    fail "safespool $sub --help: exit status $RC"
    continue
  fi
  for opt in $(options_of "$T/help_$sub.out"); do
    defined "$opt" && pass ||
      fail "option $opt of $sub (safespool $sub --help) has no .TP entry in the man page"
  done
done

fi

section "exit statuses"
exit_section=$(sed -En '/^\.SH "?EXIT STATUS"?$/,/^\.SH [^E]/p' "$kPage")
codes=$(grep -oE '^\| *[0-9]+ \|' "$kRoot/docs/exit-codes.md" | tr -dc '0-9\n')
[[ -n "$codes" ]] && pass || fail "no exit status table found in docs/exit-codes.md"
for code in $codes; do
  grep -qx "\.B $code" <<<"$exit_section" && pass ||
    fail "exit status $code (docs/exit-codes.md) has no entry under EXIT STATUS"
done
# And no entry the contract does not have.
for code in $(grep -oE '^\.B [0-9]+$' <<<"$exit_section" | cut -d' ' -f2); do
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
grep -qE '^docs/safespool\.1 usr/share/man/man1/?$' "$kRoot/packaging/debian/safespool.install" &&
  pass || fail "packaging/debian/safespool.install does not install docs/safespool.1"

e2e_finish

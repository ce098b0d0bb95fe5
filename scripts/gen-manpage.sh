#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Generates the man page docs/safespool.1 from its source docs/safespool.1.md
# with go-md2man (Debian package go-md2man). The generated page is committed,
# so that building and packaging need no go-md2man; tests/e2e/manpage.sh
# checks that it matches a fresh generation.
#
# Usage: scripts/gen-manpage.sh [-o OUTPUT]   (default OUTPUT: docs/safespool.1)
set -euo pipefail

readonly kRoot=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly kSource=$kRoot/docs/safespool.1.md
out=$kRoot/docs/safespool.1

case "${1:-}" in
  "") ;;
  -o)
    [[ $# == 2 ]] || { echo "usage: $0 [-o OUTPUT]" >&2; exit 64; }
    out=$2
    ;;
  *) echo "usage: $0 [-o OUTPUT]" >&2; exit 64 ;;
esac

if ! command -v go-md2man >/dev/null; then
  echo "gen-manpage: go-md2man not found (apt-get install go-md2man)" >&2
  exit 69
fi

tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp" "$tmp.err"' EXIT
{
  printf '%s\n' \
    '.\" Manual page for safespool(1), generated from docs/safespool.1.md by' \
    '.\" scripts/gen-manpage.sh (go-md2man): edit the Markdown, not this file.'
  go-md2man -in "$kSource" 2>"$tmp.err"
} >"$tmp"
# go-md2man reports Markdown it cannot render (e.g. HTML) on stderr and drops
# it from the page: treat that as an error, not as a page with a hole.
if [[ -s "$tmp.err" ]]; then
  echo "gen-manpage: go-md2man could not render all of $kSource:" >&2
  cat "$tmp.err" >&2
  exit 65
fi
chmod 0644 "$tmp"
mv "$tmp" "$out"

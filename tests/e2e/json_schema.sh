#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The --json documents of queue-ls, queue-info, stdin-info and queue-status
# against their JSON Schemas in docs/schemas/ (validated with Debian's
# python3-jsonschema):
#  - a queue with a plain packet (with parameters and a variable that is not
#    UTF-8), a zstd packet (prepare --zstd), a NOP, a Fail, a gap, a file
#    that is not a packet, a job that fails, a stale copy and a held lock; a
#    queue with a signed packet, read under a signer policy; an append-only
#    queue and an empty one; a split job with a part missing;
#  - every document the commands print there must validate, and carry the
#    values the situation calls for, with the matching exit status;
#  - documents broken on purpose (a field removed, an unknown field, a wrong
#    type or enum value, a document of another command) must not validate,
#    so a schema that accepts anything fails the test;
#  - the definitions the schemas share must be identical in each file.
# All documents are collected first and checked by one Python run at the end
# (starting Python per document would cost more than the rest of the test).
source "${E2E_LIB:-$(dirname "$0")/lib.sh}"
kSchemas=$E2E_LIB_DIR/../../docs/schemas
# Debian's interpreter, which python3-jsonschema is installed for
# (scripts/install-deps.sh), whatever other python3 comes first on PATH.
kPython=/usr/bin/python3

export GNUPGHOME=$T/gnupg
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill gpg-agent 2>/dev/null; e2e_cleanup' EXIT
gpg --batch --passphrase '' --quick-gen-key "sender@example.org" ed25519 sign never 2>/dev/null ||
  fail "cannot make a signing key"
FPR=$(gpg --with-colons --list-keys "<sender@example.org>" 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}')

mkdir -p "$T/docs" "$T/p"
: > "$T/manifest"
# The manifest: one check per line, tab-separated, for the validator below.
#   valid   SCHEMA NAME                document NAME validates against SCHEMA
#   invalid SCHEMA NAME OP PATH [JSON] NAME changed by OP (del: remove PATH;
#                                      set: set PATH to JSON; -: unchanged)
#                                      does NOT validate; PATH is keys and
#                                      list indices joined by "/"
#   want    NAME EXPR EXPECTED         Python EXPR over the document d gives
#                                      EXPECTED (as str)
check() { local IFS=$'\t'; printf '%s\n' "$*" >> "$T/manifest"; }

# doc NAME SCHEMA WANT_RC CMD...: CMD's stdout becomes document NAME, to be
# validated against SCHEMA; CMD must exit WANT_RC (lib.sh's expect_rc, which
# also catches sanitizer reports).
doc() {
  local name=$1 schema=$2 want=$3
  shift 3
  expect_rc "$want" "doc-$name" "$@"
  cp "$T/doc-$name.out" "$T/docs/$name.json"
  check valid "$schema" "$name"
}
broken() { check invalid "$@"; }
want() { check want "$@"; }

section "packets: plain, zstd, NOP, a job that will fail, a gap, Fail; a signed one"
seqf=$T/seq
printf 'one' | FSPL_SET_HOST=nas FSPL_SET_RAW=$'a\xffb' ss prepare -s "$seqf" -i - -- receive "two words" > "$T/p/1" ||
  fail "prepare 1"
printf 'two' | ss prepare -s "$seqf" --zstd -i - > "$T/p/2" || fail "prepare --zstd"
ss prepare-nop -s "$seqf" > "$T/p/3" || fail "prepare-nop"
printf 'four' | ss prepare -s "$seqf" -i - > "$T/p/4" || fail "prepare 4"
ss prepare-set-next -s "$seqf" 6 || fail "prepare-set-next" # 5 is never made: a gap
printf 'six' | ss prepare -s "$seqf" -i - > "$T/p/6" || fail "prepare 6"
ss prepare-fail -s "$seqf" > "$T/p/7" || fail "prepare-fail"
# gpg decodes a signed packet at every scan of its queue: it gets a queue of
# its own, so that the main queue scans fast.
printf 'signed' | ss prepare -s - --zstd --sign-with "$FPR" -i - > "$T/p/signed" || fail "prepare --sign-with"
expect_eq "packet 1 is plain" 2a46494c "$(head -c 4 "$T/p/1" | xxd -p)"
expect_eq "packet 2 is zstd-compressed" 28b52ffd "$(head -c 4 "$T/p/2" | xxd -p)"

q=$T/q
ss queue-init -q "$q" || fail "queue-init"
for n in 1 2 3 4 6 7; do deliver "$q" "$T/p/$n" "fspl-$n.fspl"; done
printf 'not a packet\n' > "$q/jobs/fspl-garbage.fspl"
sq=$T/signed
ss queue-init -q "$sq" || fail "queue-init signed"
deliver "$sq" "$T/p/signed" fspl-1.fspl
deliver "$sq" "$T/p/2" fspl-2.fspl

section "a fresh queue"
doc status-fresh queue-status 0 ss queue-status -q "$q" --json
want status-fresh "d['state'], d['gaps'], [u['filename'] for u in d['unreadable']]" \
  "('healthy', [{'from': 5, 'to': 5}], ['fspl-garbage.fspl'])"
want status-fresh "d['blocked'], d['totals'], [u['recipients'] for u in d['unreadable']], d['abandoned_temp_files']" \
  "(None, {'success': 0, 'failure': 0, 'rejected': 0, 'bytes': 0}, [[]], [])"
doc ls queue-ls 0 ss queue-ls -q "$q" --json
want ls "[(j['seq'], j['kind']) for j in d['jobs']]" \
  "[(1, 'command'), (2, 'command'), (3, 'nop'), (4, 'command'), (6, 'command'), (7, 'fail')]"
want ls "d['jobs'][0]['params'], d['jobs'][0]['env']['HOST']" "(['receive', 'two words'], 'nas')"
# Bytes that are not UTF-8 become U+FFFD.
want ls "d['jobs'][0]['env']['RAW'] == 'a\\ufffdb'" True
for n in 1 2 3 4 6 7; do
  doc "info-$n" queue-info 0 ss queue-info -q "$q" -j "$n" --json
  doc "stdin-$n" stdin-info 0 ss stdin-info --json < "$T/p/$n"
done
want info-1 "d['environment']['FSPL_JOB_FULLPATH'] == d['queuedir'] + '/jobs/fspl-1.fspl'" True

section "the signer policy"
doc ls-signer queue-ls 0 ss queue-ls -q "$sq" --json --require-signer "$FPR"
want ls-signer "[(j['seq'], j['signer']['trusted']) for j in d['jobs']]" "[(1, True), (2, False)]"
doc info-signed queue-info 0 ss queue-info -q "$sq" -j 1 --json --require-signer "$FPR"
want info-signed "d['signer']['fingerprint']" "$FPR"
doc info-unsigned queue-info 0 ss queue-info -q "$sq" -j 2 --json --require-signer "$FPR"
want info-unsigned "d['signer']['fingerprint'], d['signer']['trusted']" "('none', False)"
doc stdin-signed stdin-info 0 ss stdin-info --json --require-signer "$FPR" < "$T/p/signed"
doc stdin-unsigned stdin-info 0 ss stdin-info --json --require-signer "$FPR" < "$T/p/2"

section "a failing job blocks the queue; a stale copy; the lock held"
cat > "$T/consumer" <<'SH'
#!/bin/sh
cat >/dev/null
[ "$FSPL_SEQ" != 4 ]
SH
chmod +x "$T/consumer"
expect_rc 1 process ss queue-process -q "$q" "$T/consumer"
deliver "$q" "$T/p/1" fspl-1-again.fspl
doc status-blocked queue-status 1 ss queue-status -q "$q" --json
want status-blocked "d['state'], d['next_seq'], d['failed']['seq'], [s['seq'] for s in d['stale']], d['last_run'] > 0" \
  "('failing', 4, 4, [1], True)"
want status-blocked "d['blocked'], d['totals']['success'], d['totals']['failure']" "(None, 3, 1)"
if hold_lock "$q/nextseq.lock"; then
  doc status-locked queue-status 1 ss queue-status -q "$q" --json
  want status-locked "type(d['lock_holder_pid']).__name__" int
  release_lock
fi

section "job 4 skipped: 5 is missing and a file cannot be read: blocked"
ss queue-set-next -q "$q" 5 || fail "queue-set-next"
doc status-unreadable queue-status 3 ss queue-status -q "$q" --json
want status-unreadable "d['state'], d['next_seq'], [u['filename'] for u in d['unreadable']]" \
  "('blocked', 5, ['fspl-garbage.fspl'])"

section "the unreadable file gone: waiting for 5"
mv "$q/jobs/fspl-garbage.fspl" "$T/garbage.fspl"
doc status-waiting queue-status 2 ss queue-status -q "$q" --json
want status-waiting "d['state'], d['next_seq'], [p['seq'] for p in d['pending']], d['failed']['seq']" \
  "('waiting', 5, [6, 7], 4)"

section "an append-only queue and an empty one"
ss queue-init -q "$T/ao" --append-only || fail "queue-init --append-only"
deliver "$T/ao" "$T/p/6" fspl-6.fspl
deliver "$T/ao" "$T/p/1" fspl-1.fspl
doc status-append-only queue-status 0 ss queue-status -q "$T/ao" --json
want status-append-only "d['next_seq'], [p['seq'] for p in d['pending']]" "(None, [1, 6])"
doc ls-append-only queue-ls 0 ss queue-ls -q "$T/ao" --json
ss queue-init -q "$T/empty" || fail "queue-init empty"
doc status-empty queue-status 0 ss queue-status -q "$T/empty" --json
want status-empty "d['pending'], d['oldest_job_age_seconds']" "([], None)"
doc ls-empty queue-ls 0 ss queue-ls -q "$T/empty" --json

section "a split job missing a part"
mkdir -p "$T/parts"
head -c 20000 /dev/urandom | ss prepare -s - -i - --split 8K --output-dir "$T/parts" >/dev/null ||
  fail "prepare --split"
ss queue-init -q "$T/sp" || fail "queue-init split"
for f in "$T"/parts/*-part-[13]-of-3.fspl; do deliver "$T/sp" "$f" "$(basename "$f")"; done
doc status-parts queue-status 2 ss queue-status -q "$T/sp" --json
want status-parts "d['state'], d['gaps'], d['missing_parts']" "('waiting', [], ['job 1: part 2 of 3 missing'])"
doc ls-parts queue-ls 0 ss queue-ls -q "$T/sp" --json
want ls-parts "sorted(j['part']['index'] for j in d['jobs']), d['missing_parts']" \
  "([1, 3], ['job 1: part 2 of 3 missing'])"

section "documents broken on purpose"
broken queue-info info-1 del seq
broken queue-info info-1 del environment/FSPL_JOB_FULLPATH
broken queue-info info-1 set extra 1
broken queue-info info-1 set kind '"job"'
broken queue-info info-1 set ctime_nanos 1000000000
broken queue-info info-3 set params '["x"]'
broken queue-info info-1 set environment/PATH '"/bin"'
broken queue-info stdin-1 -
broken stdin-info info-1 -
broken stdin-info stdin-signed del signer/trusted
broken stdin-info stdin-unsigned set signer/trusted true
broken queue-ls ls del jobs/0/filename
broken queue-ls ls set skipped/0/filename '"garbage"'
broken queue-ls ls-signer del jobs/1/signer
broken queue-ls ls set jobs/0/signer '{"fingerprint": "none", "trusted": false, "reason": "x"}'
broken queue-status status-blocked del failed
broken queue-status status-blocked set state '"stuck"'
broken queue-status status-waiting set gaps '[]'
broken queue-status status-waiting set next_seq '"5"'
broken queue-status status-locked set lock_holder_pid 0
broken queue-status status-empty set oldest_job_age_seconds 3
broken queue-status status-append-only set state '"waiting"'
broken queue-status status-fresh del last_success
broken queue-status status-fresh del totals
broken queue-status status-fresh set blocked '{"reason": "conflict", "summary": "x", "files": []}'
broken queue-status status-fresh set unreadable/0/recipients '["not-a-key-id"]'
broken queue-status status-fresh del unreadable/0/recipients
broken queue-status status-blocked set blocked '{"reason": "stuck", "summary": "x", "files": []}'
broken queue-status status-parts set missing_parts '[]'
broken queue-ls ls-parts set jobs/0/part/index 0
broken queue-ls ls-parts set missing_parts '["part 2 missing"]'

section "validation"
cat > "$T/validate.py" <<'PY'
import copy, json, sys

try:
    import jsonschema
except ImportError:
    print(f"FAIL {sys.executable} cannot import jsonschema: install python3-jsonschema (scripts/install-deps.sh)")
    sys.exit(0)

schemas_dir, docs_dir = sys.argv[1], sys.argv[2]
schemas = {}
for name in ("queue-ls", "queue-info", "stdin-info", "queue-status"):
    with open(f"{schemas_dir}/{name}.schema.json") as f:
        s = json.load(f)
    try:
        jsonschema.Draft202012Validator.check_schema(s)
        print(f"ok schema {name} is a valid draft 2020-12 schema")
    except jsonschema.SchemaError as e:
        print(f"FAIL schema {name}: {e.message}")
    schemas[name] = s

# Definitions shared between files must not drift apart.
seen = {}
for name, s in schemas.items():
    for key, value in s.get("$defs", {}).items():
        if key in seen and seen[key][1] != value:
            print(f"FAIL $defs/{key} differs between {seen[key][0]} and {name}")
        seen.setdefault(key, (name, value))
print("ok shared $defs compared")

def load(name):
    with open(f"{docs_dir}/{name}.json") as f:
        return json.load(f)

def change(doc, op, path, value):
    keys = [int(k) if k.isdigit() else k for k in path.split("/")]
    for k in keys[:-1]:
        doc = doc[k]
    if op == "del":
        del doc[keys[-1]]
    else:
        doc[keys[-1]] = json.loads(value)

for line in sys.stdin:
    kind, *args = line.rstrip("\n").split("\t")
    what = " ".join(args)
    try:
        if kind == "want":
            name, expr, expected = args
            got = eval(expr, {"d": load(name)})
            print(f"ok {what}" if str(got) == expected else f"FAIL {name}: {expr}: expected {expected}, got {got}")
            continue
        schema, name, op, *rest = args + ["-"] * (3 - len(args))
        doc = copy.deepcopy(load(name))
        if op != "-":
            change(doc, op, rest[0], rest[1] if len(rest) > 1 else "")
    except (OSError, ValueError, LookupError, TypeError) as e:
        print(f"FAIL {what}: {type(e).__name__}: {e}")
        continue
    errors = list(jsonschema.Draft202012Validator(schemas[schema]).iter_errors(doc))
    if kind == "valid" and errors:
        for e in errors[:3]:
            print(f"FAIL {name} against {schema}: at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
    elif kind == "invalid" and not errors:
        print(f"FAIL {what}: accepted by {schema}, but it is broken")
    else:
        print(f"ok {kind} {what}")
PY
"$kPython" "$T/validate.py" "$kSchemas" "$T/docs" < "$T/manifest" > "$T/results" 2>&1 ||
  fail "validator crashed: $(tail -n 5 "$T/results")"
while IFS= read -r line; do
  case $line in
    ok\ *) pass ;;
    FAIL\ *) fail "${line#FAIL }" ;;
    *) fail "validator: $line" ;;
  esac
done < "$T/results"
# 4 schemas + the $defs comparison + one line per manifest entry.
expect_eq "every check ran" "$(($(wc -l < "$T/manifest") + 5))" "$(grep -c '^ok ' "$T/results")"

e2e_finish

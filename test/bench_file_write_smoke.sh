#!/usr/bin/env bash
# zxpager bench file --write on a small file: every row runs, every written page reads
# back as written (the bench checks: wrong_pages), --json is well formed, the file is
# removed, and an existing file is refused without --overwrite. The zxpager rows are
# required once the library writes back (the JSON says whether it does).
# Usage: bench_file_write_smoke.sh ZXPAGER
set -uo pipefail
zxpager=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/zxp-bench-write.XXXXXX")
trap 'rm -rf "$dir"' EXIT

grep -q -- --write <<<"$("$zxpager" bench file --help)" || fail "--help does not show --write"

json=$("$zxpager" bench file --write "$dir/f" --size 8M --repeat 1 --json)
rc=$?
[ $rc -eq 0 ] || fail "exit $rc: $json"
[ -e "$dir/f" ] && fail "the bench left its file behind"
grep -q '"wrong_pages": 0' <<<"$json" || fail "wrong pages: $json"
grep -q '"failed_methods": 0' <<<"$json" || fail "failed methods: $json"
methods="mmap pwrite"
grep -q '"writeback": true' <<<"$json" && methods="zxpager $methods"
for m in $methods; do
  for c in true false; do
    for p in rand seq; do
      grep -q "{\"method\": \"$m\", \"cold\": $c, \"pattern\": \"$p\", \"seconds\": [0-9.]*" \
        <<<"$json" || fail "no $m cold=$c $p row: $json"
    done
  done
done

# The table, with the targets' ratios.
out=$("$zxpager" bench file --write "$dir/f" --size 4M --repeat 1 --no-cold --keep) ||
  fail "table run: $out"
grep -q "warm rand  zxpager vs mmap + msync" <<<"$out" || fail "no ratio lines: $out"
grep -q "^host: Linux" <<<"$out" || fail "no host line: $out"
# What this host charges, measured: numbers, not placeholders.
grep -qE "^host costs: fresh 4 KiB page first touch [0-9]+\.[0-9] us \([0-9]+ MB/s\), .*warm touch [0-9]+\.[0-9] GB/s, (raw userfaultfd round trip [0-9]+\.[0-9] us|userfaultfd unavailable)$" \
  <<<"$out" || fail "no host costs line: $out"
[ -e "$dir/f" ] || fail "--keep removed the file"

# An existing file is not written over without --overwrite.
"$zxpager" bench file --write "$dir/f" --size 4M --repeat 1 --no-cold >/dev/null 2>&1 &&
  fail "wrote over an existing file"
"$zxpager" bench file --write "$dir/f" --size 4M --repeat 1 --no-cold --overwrite \
  >/dev/null || fail "--overwrite refused"
exit 0

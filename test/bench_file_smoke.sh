#!/usr/bin/env bash
# zxpager bench file (reads) on a small file: every asked row is there cold and warm,
# with both ways of filling the cache for the warm runs, the read ceiling is measured,
# --json is well formed and carries the host's costs and kind, and a bad --warm-fill or
# --only is refused with a message.
# Usage: bench_file_smoke.sh ZXPAGER
set -uo pipefail
zxpager=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/zxp-bench-read.XXXXXX")
trap 'rm -rf "$dir"' EXIT
head -c 8388608 /dev/urandom > "$dir/f" || fail "cannot write the test file"

for fill in seq random; do
  json=$("$zxpager" bench file "$dir/f" --repeat 1 --no-rss --json --warm-fill "$fill" \
           --only mmap zxpager)
  rc=$?
  [ $rc -eq 0 ] || fail "--warm-fill $fill: exit $rc: $json"
  colds=false
  grep -q '"cold": true, "results"' <<<"$json" && colds="true false"
  for m in mmap zxpager; do
    for c in $colds; do
      for p in seq rand; do
        grep -q "{\"method\": \"$m\", \"cold\": $c, \"pattern\": \"$p\", \"seconds\": [0-9.]*}" \
          <<<"$json" || fail "--warm-fill $fill: no $m cold=$c $p row: $json"
      done
    done
  done
  grep -Eq '"read_ceiling_warm_seconds": 0\.[0-9]*[1-9]' <<<"$json" ||
    fail "--warm-fill $fill: no warm read ceiling: $json"
  grep -Eq '"host": \{"kernel": "[^"]+", "machine": "[^"]+", "cpus": [1-9][0-9]*, .*"fresh_4k_us": [0-9.]*[1-9][0-9.]*,' <<<"$json" ||
    fail "--warm-fill $fill: no host costs: $json"
  grep -Eq '"host_kind": "(cheap|expensive)"' <<<"$json" ||
    fail "--warm-fill $fill: no host kind: $json"
  if [ "$colds" != false ]; then
    grep -Eq '"read_ceiling_cold_seconds": 0\.[0-9]*[1-9]' <<<"$json" ||
      fail "--warm-fill $fill: no cold read ceiling: $json"
  fi
done

grep -q '"settle_seconds": 0,' <<<"$json" || fail "no settle_seconds 0 by default: $json"

# --settle: each cold run waits that long after the drop (mmap's seq and rand runs and the
# two cold read ceilings: four waits at least), and says so.
t0=$(date +%s%N)
json=$("$zxpager" bench file "$dir/f" --repeat 1 --no-rss --json --settle 0.5 --only mmap)
rc=$?
t1=$(date +%s%N)
[ $rc -eq 0 ] || fail "--settle 0.5: exit $rc: $json"
grep -q '"settle_seconds": 0.5,' <<<"$json" || fail "no settle_seconds 0.5: $json"
if grep -q '"cold": true, "settle' <<<"$json"; then
  [ $(( (t1 - t0) / 1000000 )) -ge 2000 ] || fail "--settle 0.5 took $(( (t1 - t0) / 1000000 )) ms"
  out=$("$zxpager" bench file "$dir/f" --repeat 1 --no-rss --settle 0.25 --only mmap 2>&1)
  grep -q "before each cold run, then 0.25 s idle" <<<"$out" || fail "no settle note: $out"
fi
err=$("$zxpager" bench file "$dir/f" --write --overwrite --settle 1 2>&1)
rc=$?
[ $rc -eq 2 ] || fail "--write --settle: exit $rc: $err"
grep -q -- "--settle is for the read bench" <<<"$err" || fail "no --settle message: $err"

out=$("$zxpager" bench file "$dir/f" --repeat 1 --no-rss --only zxpager --no-cold 2>&1)
grep -q "^(read ceiling)" <<<"$out" || fail "no read-ceiling row: $out"
grep -q "^warm runs: page cache filled in order" <<<"$out" || fail "no warm-fill line: $out"

# A method --only does not know is refused with its name, not measured as nothing (read
# methods; and with --write, where the read ones are unknown too).
err=$("$zxpager" bench file "$dir/f" --only nonsense 2>&1)
rc=$?
[ $rc -ne 0 ] || fail "--only nonsense was accepted: $err"
grep -q "nonsense" <<<"$err" || fail "no message naming the bad method: $err"
err=$("$zxpager" bench file --write "$dir/w" --size 1M --only mmap-random 2>&1)
rc=$?
[ $rc -ne 0 ] || fail "--write --only mmap-random was accepted: $err"
grep -q "mmap-random" <<<"$err" || fail "no message naming the bad write method: $err"
[ ! -e "$dir/w" ] || fail "--write with a bad --only created its file"

err=$("$zxpager" bench file "$dir/f" --warm-fill sideways 2>&1)
rc=$?
[ $rc -ne 0 ] || fail "--warm-fill sideways was accepted"
grep -q -- "--warm-fill" <<<"$err" || fail "no message naming --warm-fill: $err"
echo "ok"

#!/usr/bin/env bash
# zxpager bench remote --quick against nbdkit (no delay) serving a small random file: every
# row runs, every page read matches the fetched copy (the bench exits 1 otherwise), and a
# URL nobody serves is refused with a message. Skips (77) without nbdkit or nbdcopy.
# Usage: bench_remote_smoke.sh ZXPAGER
set -uo pipefail
zxpager=$1
command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null ||
  { echo "SKIP: nbdkit or nbdcopy missing"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

head -c $((4 << 20)) /dev/urandom >"$dir/object.bin"
nbdkit -f -U "$dir/nbd.sock" -P "$dir/nbd.pid" --exit-with-parent file "$dir/object.bin" &
pid=$!
# The pid file is written once the socket listens (deadline 20 s).
for _ in $(seq 400); do [ -s "$dir/nbd.pid" ] && break; sleep 0.05; done
[ -s "$dir/nbd.pid" ] || fail "nbdkit did not start"

url="nbd+unix:///?socket=$dir/nbd.sock"
out=$("$zxpager" bench remote "$url" --quick --threads 4 --think-ms 10 --fetch-dir "$dir" \
      --rtt-note "nbdkit, no delay" 2>"$dir/err")
rc=$?
if [ $rc -ne 0 ] && grep -q "has no NBD support" "$dir/err"; then
  echo "SKIP: this build has no NBD support"; exit 77
fi
[ $rc -eq 0 ] || fail "exit $rc: $out $(cat "$dir/err")"
for row in "object: nbd, 4194304 bytes" "server: nbdkit, no delay" "first byte after open, offset 0" \
           "first byte after open, middle" "(1%), kRandom, 1 thread" "(1%), no hint, 1 thread" \
           "(1%), kRandom, 4 threads" "(1%), WILLNEED each, then touch" "sequential scan, no hint" "sequential scan, kSequential" \
           "run 1 (no hint)" "run 1 (kRandom)" "run 2 (replay), think 0 ms" "run 2 (replay), think 10 ms"; do
  grep -qF -- "$row" <<<"$out" || fail "no row '$row': $out"
done
# Baselines ran: ratios are numbers, and the fetched copy was removed.
grep -q "nbdcopy null: [0-9]* MB/s" <<<"$out" || fail "no stream baseline: $out"
grep -q "fetch [0-9.]* s + pread" <<<"$out" || fail "no fetch baseline: $out"
grep -q fetched <<<"$(ls "$dir")" && fail "the fetched copy was left behind"

# A URL nobody serves: a message and a failure, no hang.
out=$("$zxpager" bench remote "nbd+unix:///?socket=$dir/nobody.sock" --quick 2>&1) &&
  fail "a dead URL was accepted: $out"
grep -q "cannot open" <<<"$out" || fail "dead URL: no message: $out"
# A server whose reads fail (nbdkit's error filter, EIO on every read): the first touch
# fails after the source's retries, and the bench ends with the page's offset (exit 3),
# not a crash.
kill "$pid"; wait "$pid" 2>/dev/null
rm -f "$dir/nbd.sock" "$dir/nbd.pid"
nbdkit -f -U "$dir/nbd.sock" -P "$dir/nbd.pid" --exit-with-parent --filter=error \
  file "$dir/object.bin" error-pread=EIO error-pread-rate=100% &
pid=$!
for _ in $(seq 400); do [ -s "$dir/nbd.pid" ] && break; sleep 0.05; done
[ -s "$dir/nbd.pid" ] || fail "nbdkit (error filter) did not start"
out=$("$zxpager" bench remote "$url" --quick --no-baseline --retries 1 2>&1)
rc=$?
[ $rc -eq 3 ] || fail "a failing server: exit $rc, not 3: $out"
grep -q "the page at object offset 0 failed" <<<"$out" || fail "a failing server: no message: $out"
echo ok

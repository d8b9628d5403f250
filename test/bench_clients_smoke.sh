#!/usr/bin/env bash
# zxpager bench blobfs --clients on a tiny blob: every row runs (each client checks the
# bytes it read: a wrong byte is exit 1), the daemon's STATS and the clients' PSS arrive,
# and --json and --svg are well formed. Skips (77) where blobfsd cannot map blobs.
# Usage: bench_clients_smoke.sh ZXPAGER BLOBFSD
set -uo pipefail
zxpager=$1 blobfsd=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# --clients alone: the default rows, 1, 2, 4 and 8 clients.
json=$("$zxpager" bench blobfs --size 1 --blobfsd "$blobfsd" --json --svg "$dir/c.svg" \
       --deadline 60 --clients)
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || fail "exit $rc: $json"

blob=$(grep -o '"blob_bytes": [0-9]*' <<<"$json" | grep -o '[0-9]*$')
[ "$blob" = 1048576 ] || fail "blob_bytes: $json"
for w in whole random; do
  for n in 1 2 4 8; do
    row=$(grep -o "{\"workload\": \"$w\", \"clients\": $n,[^}]*}" <<<"$json") ||
      fail "no $w row for $n clients: $json"
    num() { grep -o "\"$1\": [0-9.]*" <<<"$row" | grep -o '[0-9.]*$'; }
    [ "$(num bytes_read)" -gt 0 ] || fail "$w/$n: nothing read: $row"
    [ "$(num pss_kib_sum)" -gt 0 ] || fail "$w/$n: no PSS: $row"
    [ "$(num map_pss_kib_sum)" -gt 0 ] || fail "$w/$n: no PSS of the blob mapping: $row"
    awk -v t="$(num wall_s)" 'BEGIN { exit !(t > 0) }' || fail "$w/$n: wall: $row"
    if [ $w = whole ]; then
      # Every byte was read at least once, and a compressed blob's bytes are decompressed.
      [ "$(num bytes_decompressed)" -ge "$blob" ] || fail "$w/$n: decompressed: $row"
      awk -v t="$(num cats_wall_s)" 'BEGIN { exit !(t > 0) }' || fail "$w/$n: cats: $row"
    fi
  done
done
grep -q '"warm": {"after_clients": 8, "seconds": [0-9.]*' <<<"$json" || fail "warm: $json"
[ "$(grep -o '"pass": \(true\|false\)' <<<"$json" | wc -l)" -eq 5 ] || fail "targets: $json"
grep -q '^<svg ' "$dir/c.svg" && grep -q '^</svg>$' "$dir/c.svg" || fail "svg: $(cat "$dir/c.svg")"

# Bad input is refused with a message, before anything runs.
out=$("$zxpager" bench blobfs --clients 0 --size 1 2>&1) && fail "--clients 0 accepted: $out"
grep -q 'clients' <<<"$out" || fail "--clients 0: no message: $out"
echo ok

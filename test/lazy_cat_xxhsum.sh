#!/bin/sh
# lazy-cat prints the checksum `xxhsum -H3` prints, on every test file and in every mode.
# usage: lazy_cat_xxhsum.sh LAZY_CAT
set -eu
lazy_cat=$1
command -v xxhsum >/dev/null || { echo "xxhsum missing: skipped"; exit 77; }
dir=$(mktemp -d /var/tmp/zxp-lazycat-XXXXXX)
trap 'rm -rf "$dir"' EXIT
: > "$dir/empty"
printf x > "$dir/one"
head -c 4095 /dev/urandom > "$dir/page-1"
head -c 4096 /dev/urandom > "$dir/page"
head -c 4097 /dev/urandom > "$dir/page+1"
head -c $((12 * 1024 * 1024 + 321)) /dev/urandom > "$dir/many-mib"
truncate -s 20M "$dir/sparse"
printf 'island' | dd of="$dir/sparse" bs=1 seek=$((7 * 1024 * 1024 + 5)) conv=notrunc 2>/dev/null
truncate -s $((20 * 1024 * 1024 + 9)) "$dir/sparse"
fail=0
for f in "$dir"/*; do
  want=$(xxhsum -H3 "$f" 2>/dev/null)
  for opts in "" "--direct" "--copy" "--budget 1M" "--readahead 64K"; do
    # shellcheck disable=SC2086
    got=$("$lazy_cat" --quiet $opts "$f")
    if [ "$got" != "$want" ]; then
      echo "MISMATCH $opts: got '$got' want '$want'"
      fail=1
    fi
  done
done
# Record a random sample, replay it: the same sampled checksum, and no page requested.
"$lazy_cat" --quiet --random 1 --record "$dir/trace" "$dir/many-mib" > "$dir/a"
# --prefetch-wait: the replay lands before the first read, so the check does not depend on
# which comes first (without it, a loaded machine touches every page before the replay).
"$lazy_cat" --random 1 --prefetch "$dir/trace" --prefetch-wait "$dir/many-mib" > "$dir/b" 2> "$dir/b.err"
cmp -s "$dir/a" "$dir/b" || { echo "replayed sample differs"; fail=1; }
grep -q "prefetched [1-9]" "$dir/b.err" || { echo "replay fetched nothing:"; cat "$dir/b.err"; fail=1; }
grep -q "requests 0," "$dir/b.err" || { echo "pages requested after the replay:"; cat "$dir/b.err"; fail=1; }
# --direct on a file system that refuses O_DIRECT at open (ramfs, mounted in a private
# mount namespace; needs root): falls back to buffered reads, same checksum.
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
  if ! unshare -m sh -c '
      mount -t ramfs none "$1" && head -c 300007 /dev/urandom > "$1/f" &&
      [ "$("$2" --quiet --direct "$1/f")" = "$(xxhsum -H3 "$1/f" 2>/dev/null)" ] &&
      "$2" --direct "$1/f" 2>&1 >/dev/null | grep -q "(move)\|(copy)" &&
      ! "$2" --direct "$1/f" 2>&1 >/dev/null | grep -q O_DIRECT' sh "$dir" "$lazy_cat"; then
    echo "O_DIRECT fallback on ramfs failed"; fail=1
  fi
else
  echo "not root: the ramfs O_DIRECT fallback case is skipped"
fi
[ "$fail" = 0 ] && echo "lazy-cat matches xxhsum -H3 on every file and mode"
exit $fail

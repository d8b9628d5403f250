#!/usr/bin/env bash
# mkblobfs, blobfs-ls and blobfs-fsck end to end: help, packing, naming, determinism,
# errors, and fsck on good, damaged and truncated images.
#   tools_test.sh MKBLOBFS BLOBFS_LS BLOBFS_FSCK
set -euo pipefail
mk=$1 ls=$2 fsck=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for t in "$mk" "$ls" "$fsck"; do "$t" --help | grep -q Usage || fail "$t --help"; done

mkdir -p "$dir/in/sub/deeper"
{ printf RAW-BLOB-MARKER; head -c 3000000 /dev/urandom; } > "$dir/in/random"
{ yes "blobfs pager frame merkle" || true; } | head -c 2000000 > "$dir/in/sub/text"
cp "$dir/in/sub/text" "$dir/in/sub/deeper/copy"
: > "$dir/in/empty"
echo loose > "$dir/loose.txt"

"$mk" -q "$dir/img" "$dir/in" "$dir/loose.txt"
"$mk" -q "$dir/img2" "$dir/loose.txt" "$dir/in"
cmp -s "$dir/img" "$dir/img2" || fail "two runs differ"

"$ls" -H "$dir/img" | awk '{print $5}' > "$dir/names"
printf '%s\n' empty loose.txt random sub/deeper/copy sub/text | diff - "$dir/names" || fail "names"
"$ls" -H "$dir/img" | grep -q ' sub/text$' || fail "ls"
"$ls" -H "$dir/img" | grep ' sub/text$' | grep -q zstd-chunked || fail "text not compressed"
"$ls" -H "$dir/img" | grep ' random$' | grep -q ' raw ' || fail "random not raw"
[ "$("$ls" -H -b "$dir/img" | wc -l)" -eq 4 ] || fail "dedup: expected 4 blobs"
"$fsck" "$dir/img" | grep -q ': ok: 5 names, 4 blobs' || fail "fsck good image"

# Errors: a duplicate name, a missing input.
if "$mk" "$dir/bad" "$dir/in/random" "$dir/in" 2> "$dir/err"; then fail "duplicate accepted"; fi
grep -q 'duplicate name "random"' "$dir/err" || fail "duplicate message: $(cat "$dir/err")"
if "$mk" "$dir/bad" "$dir/nothing" 2> "$dir/err"; then fail "missing input accepted"; fi
grep -q 'ZX_ERR_NOT_FOUND' "$dir/err" || fail "missing message: $(cat "$dir/err")"

# Damage: the superblock, the last data byte, a truncation.
flip() {  # flip FILE OFFSET
  local byte
  byte=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $(( byte ^ 1 )))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
cp "$dir/img" "$dir/sb"; flip "$dir/sb" 20
if "$fsck" "$dir/sb" 2> "$dir/err"; then fail "fsck passed a damaged superblock"; fi
grep -q 'superblock checksum mismatch' "$dir/err" || fail "superblock message: $(cat "$dir/err")"
if "$ls" "$dir/sb" 2> /dev/null; then fail "ls opened a damaged image"; fi

random_root=$("$ls" -H "$dir/img" | awk '$5 == "random" {print $1}')
cp "$dir/img" "$dir/data"
# The random blob is raw; find its bytes in the image and damage one.
offset=$(LC_ALL=C grep -obUa RAW-BLOB-MARKER "$dir/data" | head -1 | cut -d: -f1)
[ -n "$offset" ] || fail "raw data not found in the image"
flip "$dir/data" $(( offset + 100000 ))
if "$fsck" "$dir/data" 2> "$dir/err"; then fail "fsck passed damaged data"; fi
grep -q "$random_root" "$dir/err" || fail "data message: $(cat "$dir/err")"
grep -q 'ZX_ERR_IO_DATA_INTEGRITY' "$dir/err" || fail "data status: $(cat "$dir/err")"

cp "$dir/img" "$dir/short"; truncate -s -8192 "$dir/short"
if "$fsck" "$dir/short" 2> "$dir/err"; then fail "fsck passed a truncated image"; fi
grep -q 'truncated' "$dir/err" || fail "truncation message: $(cat "$dir/err")"
echo ok

#!/usr/bin/env bash
# The blobfsd demo: files -> image -> daemon -> lazy clients -> a corrupted image.
#   blobfs-demo.sh BUILD_DIR
# Everything lives in a temporary directory; every daemon started is stopped, on every
# way out (trap).
set -euo pipefail
B=${1:?usage: blobfs-demo.sh BUILD_DIR}
MKBLOBFS=$B/blobfs/mkblobfs
BLOBFS_LS=$B/blobfs/blobfs-ls
BLOBFS_CAT=$B/blobfs/blobfs-cat
BLOBFSD=$B/blobfs/daemon/blobfsd
TOOL=$B/examples/blobfs-demo/blobfs-demo-tool

T=$(mktemp -d "${TMPDIR:-/tmp}/blobfs-demo.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '\n== %s\n' "$*"; }

# start_daemon IMAGE SOCKET LOG: blobfsd in the background, waited for until it listens.
start_daemon() {
  "$BLOBFSD" --image "$1" --socket "$2" 2>"$3" &
  PIDS+=($!)
  local i
  for i in $(seq 100); do
    [ -S "$2" ] && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "blobfsd did not start:" >&2
  cat "$3" >&2
  return 1
}

# stop_daemon: SIGTERM to the last daemon started, and wait for it.
stop_daemon() {
  local pid=${PIDS[-1]}
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  unset 'PIDS[-1]'
  echo "  blobfsd (pid $pid) stopped, exit $rc"
}

say "1. files: some compressible, some random, one large (64 MiB of text)"
mkdir -p "$T/src/docs" "$T/src/bin" "$T/src/data"
awk 'BEGIN { for (n = 0; n < 2^26; n += 56) printf "line %07d: the pager supplies this page on first touch\n", n / 56 }' \
  >"$T/src/data/large.txt"
truncate -s $((64 << 20)) "$T/src/data/large.txt"
awk 'BEGIN { for (i = 1; i <= 200000; i++) printf "%d squared is %d\n", i, i * i }' \
  >"$T/src/docs/squares.txt"
printf 'Hello from a blob, read through blobfsd.\n' >"$T/src/docs/hello.txt"
head -c $((4 << 20)) /dev/urandom >"$T/src/bin/random-4m.bin"
head -c 300000 /dev/urandom >"$T/src/bin/random-300k.bin"
(cd "$T/src" && find . -type f -printf '  %-26P %10s bytes\n' | sort)

say "2. mkblobfs: pack them into an image (raw or chunked zstd, whichever is smaller)"
"$MKBLOBFS" "$T/image" "$T/src" 2>&1 | sed 's/^/  /'
"$BLOBFS_LS" "$T/image" | cut -c1-16,65- | sed 's/^/  /'

say "3. blobfsd serves the image in the background"
SOCK=$T/blobfsd.sock
start_daemon "$T/image" "$SOCK" "$T/blobfsd.log"
sed 's/^/  /' "$T/blobfsd.log"

say "4. three clients at once map blobs and touch a few ranges: only those pages come in"
"$TOOL" peek --socket "$SOCK" data/large.txt 0:100 $((32 << 20)):4096 $(((64 << 20) - 200)):200 \
  >"$T/peek1" &
c1=$!
"$TOOL" peek --socket "$SOCK" bin/random-4m.bin $((1 << 20)):8192 >"$T/peek2" &
c2=$!
"$TOOL" peek --socket "$SOCK" docs/squares.txt 1000000:64 >"$T/peek3" &
c3=$!
wait $c1 $c2 $c3
cat "$T/peek1" "$T/peek2" "$T/peek3"

say "5. one copy for all clients: the same blob read whole by two clients in turn"
echo "  (blobfsd keeps one shared pager VMO per blob and user id: a page one client brought"
echo "  in is there for the next with no fault, and blobs nobody has open stay cached"
echo "  up to --page-cache)"
"$TOOL" pageins --socket "$SOCK" --label "before:" docs/squares.txt
for client in first second; do
  "$BLOBFS_CAT" --socket "$SOCK" docs/squares.txt | cmp -s - "$T/src/docs/squares.txt"
  "$TOOL" pageins --socket "$SOCK" --label "after the $client blobfs-cat:" docs/squares.txt
done
echo "  and two at once, each holding it open while the other reads:"
"$TOOL" pageins --socket "$SOCK" --label "before:" bin/random-4m.bin
"$BLOBFS_CAT" --socket "$SOCK" bin/random-4m.bin >"$T/cat1" &
c1=$!
"$BLOBFS_CAT" --socket "$SOCK" bin/random-4m.bin >"$T/cat2" &
c2=$!
wait $c1 $c2
cmp -s "$T/cat1" "$T/src/bin/random-4m.bin" && cmp -s "$T/cat2" "$T/src/bin/random-4m.bin"
"$TOOL" pageins --socket "$SOCK" --label "after both:" bin/random-4m.bin
echo "  (one copy: read from the image once, resident once, however many clients map it)"

say "6. blobfs-cat: a whole blob, byte-identical to its source file"
for name in docs/hello.txt docs/squares.txt data/large.txt; do
  if "$BLOBFS_CAT" --socket "$SOCK" "$name" | cmp -s - "$T/src/$name"; then
    echo "  blobfs-cat $name: identical to the source ($(stat -c %s "$T/src/$name") bytes)"
  else
    echo "  blobfs-cat $name: DIFFERS from the source" >&2
    exit 1
  fi
done
echo
"$BLOBFSD" stats --socket "$SOCK" | sed 's/^/  /'
stop_daemon

say "7. a damaged copy of the image: one byte of bin/random-4m.bin's data flipped"
"$TOOL" corrupt "$T/image" bin/random-4m.bin "$T/image.bad"
SOCK2=$T/blobfsd-bad.sock
start_daemon "$T/image.bad" "$SOCK2" "$T/blobfsd-bad.log"
rc=0
"$BLOBFS_CAT" --socket "$SOCK2" bin/random-4m.bin >/dev/null 2>"$T/cat.err" || rc=$?
echo "  blobfs-cat bin/random-4m.bin: exit $rc: $(cat "$T/cat.err")"
if [ "$rc" -eq 0 ] || ! grep -q ZX_ERR_IO_DATA_INTEGRITY "$T/cat.err"; then
  echo "  the integrity failure did not reach the client" >&2
  exit 1
fi
"$TOOL" peek --socket "$SOCK2" bin/random-4m.bin $((2 << 20)):4096 || true
echo "  other blobs keep working:"
"$TOOL" peek --socket "$SOCK2" docs/hello.txt 0:41
"$BLOBFS_CAT" --socket "$SOCK2" data/large.txt | cmp -s - "$T/src/data/large.txt"
echo "  blobfs-cat data/large.txt: identical to the source"
echo "  the daemon logged, once:"
sed 's/^/    /' "$T/blobfsd-bad.log" | grep -v serving
stop_daemon

say "done: every daemon stopped, $T removed"

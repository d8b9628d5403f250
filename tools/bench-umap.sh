#!/usr/bin/env bash
# zxpager's file pager beside LLNL's umap (https://github.com/LLNL/umap) on one file, in
# one run: tools/umap-bench/umap_bench (umap with 4 KiB and 2 MiB pages, its buffer sized
# to the file), then `zxpager bench file FILE --no-rss --only mmap mmap-random pread
# zxpager zxpager-direct`, both with the same method (cold = this file's page cache
# dropped, seq = a byte of every 4 KiB page, rand = the same 1% sample), then the ratios
# issue 14 names: zxpager cold seq vs umap 2 MiB [>= 1.5x], zxpager cold rand vs umap
# 4 KiB [>= 1.0x].
#
# Usage: tools/bench-umap.sh [--umap-src DIR | --umap-build DIR] [--cache DIR]
#                            [--zxpager-build DIR] [--repeat N] [--out FILE]
#                            [--no-zxpager] FILE [-- UMAP-BENCH-ARGS...]
#   --umap-src DIR      a umap checkout (or $UMAP_SRC); built (Release, no tests) into
#                       CACHE/umap-build the first time, cmake rebuilds what changed after
#   --umap-build DIR    an existing umap build instead (or $UMAP_BUILD): a cmake build
#                       directory (src/umap/libumap.so; the sources come from its
#                       CMakeCache.txt), or an install prefix (lib/libumap.so,
#                       include/umap/umap.h)
#                       Neither given: CACHE/umap-build if an earlier run built it there.
#   --cache DIR         where umap and umap_bench are built (default /var/tmp/zxpager-umap)
#   --zxpager-build DIR zxpager's meson build directory (default: build/ of this repository;
#                       ninja -C DIR tools/zxpager/zxpager builds what it needs)
#   --repeat N          runs per cell, median kept (default 3)
#   --out FILE          also write the tables (stdout) to FILE
#   --no-zxpager        umap only
#   UMAP-BENCH-ARGS go to umap_bench (see its --help: --page-sizes, --bufsize-pages, ...)
# Prerequisites: cmake and a C++ compiler (to build umap), userfaultfd (root, or
# vm.unprivileged_userfaultfd=1), and root for the cold runs (POSIX_FADV_DONTNEED of a
# file you do not own leaves it cached; then cold runs are skipped and the output says so).
set -euo pipefail

me=bench-umap
die() { echo "$me: $*" >&2; exit 2; }

umap_src=${UMAP_SRC:-} umap_build=${UMAP_BUILD:-}
cache=/var/tmp/zxpager-umap zxbuild="" repeat=3 out="" with_zxpager=1 file=""
bench_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --umap-src) umap_src=${2:?--umap-src needs a directory}; shift 2 ;;
    --umap-build) umap_build=${2:?--umap-build needs a directory}; shift 2 ;;
    --cache) cache=${2:?--cache needs a directory}; shift 2 ;;
    --zxpager-build) zxbuild=${2:?--zxpager-build needs a directory}; shift 2 ;;
    --repeat) repeat=${2:?--repeat needs a count}; shift 2 ;;
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --no-zxpager) with_zxpager=0; shift ;;
    --) shift; bench_args=("$@"); break ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$file" ] || die "one FILE only (got $file and $1)"; file=$1; shift ;;
  esac
done
[ -n "$file" ] || die "FILE missing (see --help)"
[ -f "$file" ] || die "$file: no such regular file"
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "--repeat takes a count >= 1 (got $repeat)"
[ -z "$umap_src" ] || [ -z "$umap_build" ] ||
  die "give --umap-src or --umap-build, not both (UMAP_SRC/UMAP_BUILD count as given)"
repo=$(cd "$(dirname "$0")/.." && pwd)
zxbuild=${zxbuild:-$repo/build}
cxx=${CXX:-c++}
command -v "$cxx" >/dev/null || die "no C++ compiler ($cxx): install g++ or set CXX"
mkdir -p "$cache" || die "cannot create the cache directory $cache"

# umap: sources and library -> umap_inc (include flags) and umap_lib (libumap.so's dir).
umap_missing() {
  die "umap missing: give --umap-src DIR (a checkout of https://github.com/LLNL/umap) or" \
    "--umap-build DIR (a build of it); $*"
}
if [ -z "$umap_src" ] && [ -z "$umap_build" ]; then
  [ -f "$cache/umap-build/src/umap/libumap.so" ] ||
    umap_missing "no earlier build in $cache/umap-build"
  umap_build=$cache/umap-build
fi
if [ -n "$umap_src" ]; then
  [ -f "$umap_src/src/umap/umap.h" ] && [ -f "$umap_src/CMakeLists.txt" ] ||
    umap_missing "$umap_src is not a umap checkout (no src/umap/umap.h)"
  command -v cmake >/dev/null || die "cmake missing: it builds umap (apt-get install cmake)"
  umap_src=$(cd "$umap_src" && pwd)
  umap_build=$cache/umap-build
  if [ ! -f "$umap_build/CMakeCache.txt" ]; then
    echo "$me: configuring umap ($umap_src) in $umap_build, Release, tests off" >&2
    cmake -S "$umap_src" -B "$umap_build" -DCMAKE_BUILD_TYPE=Release -DENABLE_TESTS=Off \
      >"$cache/umap-cmake.log" 2>&1 || die "umap's cmake failed: see $cache/umap-cmake.log"
  fi
  echo "$me: building libumap in $umap_build (a minute the first time)" >&2
  cmake --build "$umap_build" --target umap -j2 >"$cache/umap-build.log" 2>&1 ||
    die "building umap failed: see $cache/umap-build.log"
fi
if [ -f "$umap_build/include/umap/umap.h" ] && [ -f "$umap_build/lib/libumap.so" ]; then
  umap_inc=(-I"$umap_build/include") umap_lib=$umap_build/lib umap_desc="prefix $umap_build"
elif [ -f "$umap_build/CMakeCache.txt" ] && [ -f "$umap_build/src/umap/libumap.so" ]; then
  src=$(sed -n 's/^umap_SOURCE_DIR:STATIC=//p' "$umap_build/CMakeCache.txt")
  [ -f "$src/src/umap/umap.h" ] ||
    umap_missing "$umap_build's sources ($src, from its CMakeCache.txt) are gone"
  umap_src=$src
  umap_inc=(-I"$src/src" -I"$umap_build/src") umap_lib=$umap_build/src/umap
  type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$umap_build/CMakeCache.txt")
  [ "$type" = Release ] || echo "$me: warning: $umap_build is a ${type:-default} build," \
    "not Release: umap's numbers will be low" >&2
  umap_desc="build $umap_build ($type)"
else
  umap_missing "$umap_build has neither src/umap/libumap.so with a CMakeCache.txt nor" \
    "lib/libumap.so with include/umap/umap.h"
fi
umap_version=unknown
if [ -n "$umap_src" ]; then
  umap_version=$(sed -n 's/^# UMAP v\([0-9.]*\).*/\1/p' "$umap_src/README.md" 2>/dev/null | head -1)
  commit=$(git -C "$umap_src" rev-parse --short HEAD 2>/dev/null || true)
  umap_version="${umap_version:-unknown}${commit:+, commit $commit}, sources $umap_src"
fi

# umap_bench, rebuilt when its source or libumap changed.
bench=$cache/umap_bench
bench_src=$repo/tools/umap-bench/umap_bench.cpp
if [ ! -x "$bench" ] || [ "$bench_src" -nt "$bench" ] || [ "$umap_lib/libumap.so" -nt "$bench" ]; then
  echo "$me: building $bench" >&2
  "$cxx" -std=c++20 -O2 -Wall -Wextra "$bench_src" "${umap_inc[@]}" -L"$umap_lib" \
    -Wl,-rpath,"$umap_lib" -lumap -pthread -o "$bench.tmp" || die "building umap_bench failed"
  mv "$bench.tmp" "$bench"
fi

zxpager=$zxbuild/tools/zxpager/zxpager
if [ $with_zxpager = 1 ]; then
  [ -f "$zxbuild/build.ninja" ] ||
    die "$zxbuild is not a meson build directory: run ./x build, or give --zxpager-build DIR"
  echo "$me: ninja -C $zxbuild tools/zxpager/zxpager" >&2
  ninja -C "$zxbuild" tools/zxpager/zxpager >"$cache/zxpager-build.log" 2>&1 ||
    die "building zxpager failed: see $cache/zxpager-build.log"
fi

emit() { if [ -n "$out" ]; then tee -a "$out"; else cat; fi; }
[ -z "$out" ] || : >"$out"
tmp=$(mktemp -d /tmp/bench-umap.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

{
  echo "bench-umap $(date -u '+%Y-%m-%d %H:%M UTC'): $file, --repeat $repeat"
  echo "zxpager $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)" \
    "($(git -C "$repo" log -1 --format=%s 2>/dev/null | cut -c1-70))"
  echo "umap ${umap_version}; libumap from $umap_desc"
  echo
} | emit

status=0
"$bench" "$file" --repeat "$repeat" "${bench_args[@]}" >"$tmp/umap.txt" || status=$?
emit <"$tmp/umap.txt"
[ $status = 0 ] || echo "$me: umap_bench failed (status $status); its message is above" >&2
if [ $with_zxpager = 1 ]; then
  echo | emit
  "$zxpager" bench file "$file" --repeat "$repeat" --no-rss \
    --only mmap mmap-random pread zxpager zxpager-direct >"$tmp/zx.txt" || status=$?
  emit <"$tmp/zx.txt"
fi

# Ratios from the tables: row NAME of the Nth table with the 5 columns of bench file.
cell() {  # cell FILE TABLE-INDEX ROW COLUMN(2..5)
  awk -v t="$2" -v row="$3" -v col="$4" '
    $1 == "method" && NF >= 5 { n++ }
    n == t && $1 == row && NF == 5 { print $col; exit }' "$1"
}
ratio() {  # ratio A B: A / B, or - when either is missing
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else printf "-" }'
}
if [ $with_zxpager = 1 ]; then
  {
    echo
    echo "Ratios (speed of zxpager / speed of umap, one run; target in brackets):"
    for z in zxpager zxpager-direct; do
      printf '  cold seq   %-15s vs %-20s %7s  [>= 1.5x]\n' "$z" umap-2m \
        "$(ratio "$(cell "$tmp/zx.txt" 1 "$z" 2)" "$(cell "$tmp/umap.txt" 1 umap-2m 2)")"
    done
    for z in zxpager zxpager-direct; do
      printf '  cold rand  %-15s vs %-20s %7s  [>= 1.0x]\n' "$z" umap-4k \
        "$(ratio "$(cell "$tmp/umap.txt" 1 umap-4k 3)" "$(cell "$tmp/zx.txt" 1 "$z" 3)")"
    done
    for z in zxpager zxpager-direct; do
      printf '  cold seq   %-15s vs %-20s %7s  [reference only]\n' "$z" "umap-2m touch only" \
        "$(ratio "$(cell "$tmp/zx.txt" 1 "$z" 2)" "$(cell "$tmp/umap.txt" 2 umap-2m 2)")"
      printf '  cold rand  %-15s vs %-20s %7s  [reference only]\n' "$z" "umap-4k touch only" \
        "$(ratio "$(cell "$tmp/umap.txt" 2 umap-4k 3)" "$(cell "$tmp/zx.txt" 1 "$z" 3)")"
    done
    echo "  (umap touch only: without its umap() and uunmap(); zxpager's rows always include"
    echo "   its open and close, as every row of zxpager bench file does)"
    echo "loadavg at end $(cat /proc/loadavg)"
  } | emit
fi
exit $status

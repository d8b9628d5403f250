#!/bin/sh
# Installs the build into a scratch DESTDIR, then builds test/outside/outside.cpp with
# `pkg-config --cflags --libs zxpager` alone and runs it against the installed library.
# Usage: pkgconfig_test.sh MESON BUILD_ROOT OUTSIDE_CPP
set -eu

meson=$1
build_root=$2
source=$3

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zxpager-pkgconfig.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

"$meson" install -C "$build_root" --no-rebuild --quiet --destdir "$tmp/root" >"$tmp/install.log" 2>&1 || {
  cat "$tmp/install.log" >&2
  echo "pkgconfig_test: meson install failed" >&2
  exit 1
}

pc=$(find "$tmp/root" -name zxpager.pc -path '*/pkgconfig/*' | head -n 1)
if [ -z "$pc" ]; then
  echo "pkgconfig_test: no zxpager.pc was installed" >&2
  exit 1
fi
pcdir=$(dirname "$pc")

# The .pc names the configured prefix; point it at the relocated tree.
prefix=$(pkg-config --variable=prefix "$pc")
relocated="$tmp/root$prefix"

flags=$(PKG_CONFIG_PATH="$pcdir" \
        pkg-config --define-variable=prefix="$relocated" --cflags --libs zxpager)
echo "pkgconfig_test: flags: $flags"

# Nothing from the source or build tree may be needed.
case "$flags" in
  *"$build_root"*) echo "pkgconfig_test: flags point into the build tree" >&2; exit 1 ;;
esac

# shellcheck disable=SC2086  # the flags are a word list
${CXX:-g++} -std=c++17 -Wall -Wextra -Werror -o "$tmp/outside" "$source" $flags

libdir=$(PKG_CONFIG_PATH="$pcdir" \
         pkg-config --define-variable=prefix="$relocated" --variable=libdir zxpager)
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/outside")
echo "$out"
[ "$out" = "outside: ok" ]

# It really ran against the installed library, not a stray one.
LD_LIBRARY_PATH="$libdir" ldd "$tmp/outside" | grep -q "$libdir/libzxpager.so" || {
  echo "pkgconfig_test: outside was not linked against $libdir/libzxpager.so" >&2
  LD_LIBRARY_PATH="$libdir" ldd "$tmp/outside" >&2
  exit 1
}

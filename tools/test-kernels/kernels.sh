# Debian's stock kernels for qemu runs, shared by test-kernels.sh and tools/bench-tcg.sh.
# Sourced, not run. The caller defines log MESSAGE... (its own prefix) and sets $cache
# (the directory downloaded packages are unpacked into). The kernel packages are unpacked
# with dpkg-deb -x into the cache, never installed.

# resolve PACKAGE: the concrete linux-image-<version>-amd64 package apt would install
# (a meta-package is followed to the image it depends on); empty if apt offers none.
updated=0
resolve() {
  local pkg=$1 dep
  if ! apt-cache show "$pkg" >/dev/null 2>&1 && [ "$updated" -eq 0 ]; then
    # The package lists may predate the package, or never have been fetched.
    apt-get update -qq >/dev/null 2>&1 || true
    updated=1
  fi
  apt-cache show "$pkg" >/dev/null 2>&1 || return 0
  dep=$(apt-cache depends "$pkg" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
  if [ -n "$dep" ]; then echo "$dep"; else echo "$pkg"; fi
}

# fetch PACKAGE: downloads and unpacks it once; prints the directory it was unpacked into.
fetch() {
  local pkg=$1 dir="$cache/$1"
  if [ ! -f "$dir/.unpacked" ]; then
    rm -rf "$dir"
    mkdir -p "$dir/deb"
    (cd "$dir/deb" && apt-get download "$pkg" >/dev/null 2>&1) || {
      log "apt-get download $pkg failed"; return 1; }
    dpkg-deb -x "$dir"/deb/*.deb "$dir/root"
    rm -rf "$dir/deb"
    touch "$dir/.unpacked"
  fi
  echo "$dir"
}

# check_config CONFIG OPTION...: each CONFIG_OPTION is built in (no modules in the
# initramfs unless the caller adds them).
check_config() {
  local config=$1 missing=() opt
  shift
  for opt in "$@"; do
    grep -q "^CONFIG_$opt=y" "$config" || missing+=("$opt")
  done
  if [ ${#missing[@]} -ne 0 ]; then
    log "$(basename "$config"): not built in: ${missing[*]}"
    return 1
  fi
}

# copy_with_libs ROOT FILE...: the files (into ROOT/tests) and the shared libraries they
# load: the system's at their own paths under ROOT, the build tree's in ROOT/lib, where a
# RUNPATH of $ORIGIN/../lib finds them from ROOT/tests. All without debug information: the
# initramfs is unpacked into the guest's memory, and every test program with its DWARF
# (1.1 GB for all of them) does not fit in 2 GiB.
copy_with_libs() {
  local root=$1; shift
  local f lib dest
  for f in "$@"; do
    install -D -m 0755 "$f" "$root/tests/$(basename "$f")"
    strip --strip-debug "$root/tests/$(basename "$f")"
    while read -r lib; do
      [ -n "$lib" ] || continue
      case $lib in
        /lib/* | /lib64/* | /usr/*) dest=$root$lib ;;
        *) dest=$root/lib/$(basename "$lib") ;;
      esac
      if [ ! -e "$dest" ]; then
        install -D -m 0755 "$lib" "$dest"
        strip --strip-debug "$dest"
      fi
    done < <(ldd "$f" | grep -o '/[^ ]*' | sort -u)
  done
}

# console_result CONSOLE_LOG: the guest's ZXPAGER-RESULT line, or nothing (a guest that
# crashed or timed out wrote none). Never fails, so a caller under set -e -o pipefail goes
# on to the next kernel.
console_result() {
  { grep -a '^ZXPAGER-RESULT ' "$1" || true; } | tr -d '\r' | tail -n1
}

# console_failure CONSOLE_LOG: why a guest that wrote no result line stopped, as far as its
# console tells.
console_failure() {
  local out=$1
  if grep -aq 'Initramfs unpacking failed' "$out"; then
    echo "the initramfs did not unpack in the guest's memory (too large?)"
  elif grep -aq 'Kernel panic' "$out"; then
    echo "kernel panic: $(grep -a 'Kernel panic' "$out" | tr -d '\r' | head -n1 | sed 's/^\[[^]]*\] *//')"
  elif grep -aq '^ZXPAGER-RUN ' "$out"; then
    echo "stopped during test $(grep -a '^ZXPAGER-RUN ' "$out" | tr -d '\r' | tail -n1 | cut -d' ' -f2) (timed out or crashed)"
  else
    echo "no test started (timed out or crashed while booting)"
  fi
}

#!/usr/bin/env bash
# Boots Debian's stock kernels (the ones apt offers: 6.1 from bookworm, 6.12 where offered)
# in qemu (TCG: no KVM needed) with an initramfs holding the pager, remote and blobfsd
# tests, runs them there, and prints one result line per kernel:
#   test-kernels: KERNEL: N passed, M failed, S skipped (FAILED: names)
# Usage: test-kernels.sh BUILD_DIR [KERNEL_PACKAGE...]
#   KERNEL_PACKAGE: an apt package name (linux-image-amd64, linux-image-6.12-amd64, or an
#   exact linux-image-6.1.0-N-amd64). Default: linux-image-amd64 and linux-image-6.12-amd64.
# Environment: TEST_KERNELS_CACHE (default ~/.cache/zxpager-test-kernels): downloaded
# packages and extracted kernels; TEST_KERNELS_TIMEOUT (seconds per kernel, default 3600);
# TEST_KERNELS_TESTS (space-separated test names; default: every test_* program built).
# The kernel packages are unpacked with dpkg-deb -x into the cache, never installed
# (tools/test-kernels/kernels.sh).
set -euo pipefail

build=$(realpath "${1:?usage: test-kernels.sh BUILD_DIR [KERNEL_PACKAGE...]}")
shift
packages=("$@")
[ ${#packages[@]} -eq 0 ] && packages=(linux-image-amd64 linux-image-6.12-amd64)
cache=${TEST_KERNELS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zxpager-test-kernels}
per_kernel_timeout=${TEST_KERNELS_TIMEOUT:-3600}
# Every test program of the build unless told otherwise.
if [ -n "${TEST_KERNELS_TESTS:-}" ]; then
  tests=($TEST_KERNELS_TESTS)
else
  tests=()
  for t in "$build"/test/test_*; do
    [ -f "$t" ] && [ -x "$t" ] && tests+=("${t##*/test_}")
  done
fi
# Seconds each test may take under TCG (tens of times slower than the host).
per_test_timeout=${TEST_KERNELS_TEST_TIMEOUT:-900}

log() { printf 'test-kernels: %s\n' "$*" >&2; }
mkdir -p "$cache"

# resolve, fetch, check_config, copy_with_libs (shared with tools/bench-tcg.sh);
# console_result, console_failure (this script's, kept there so that a test can source them).
source "$(dirname "${BASH_SOURCE[0]}")/kernels.sh"

# What the tests need built in (no modules in the initramfs).
config_needs=(USERFAULTFD IO_URING SERIAL_8250 SERIAL_8250_CONSOLE BLK_DEV_INITRD RD_GZIP
              DEVTMPFS TMPFS UNIX MEMFD_CREATE EPOLL)

make_initramfs() {
  local out=$1 root
  root=$(mktemp -d)
  # mktemp -d makes the root 0700: in the guest no other user could reach any path (the
  # blobfsd tests' non-root client could not connect to the daemon's socket).
  chmod 0755 "$root"
  mkdir -p "$root"/{bin,dev,proc,sys,tmp,tests,etc,var/tmp}
  cp /bin/busybox "$root/bin/busybox"
  ln -s busybox "$root/bin/sh"
  local files=()
  for t in "${tests[@]}"; do
    [ -x "$build/test/test_$t" ] || { log "missing $build/test/test_$t (build first)"; return 1; }
    files+=("$build/test/test_$t")
  done
  files+=("$build/blobfs/daemon/blobfsd" "$build/blobfs/blobfs-cat" "$build/tools/zxpager/zxpager")
  copy_with_libs "$root" "${files[@]}"
  echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
  echo "nobody:x:65534:65534:nobody:/:/bin/sh" >>"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  cat >"$root/init" <<EOF
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o size=1g,mode=1777 tmp /tmp
mount -t tmpfs -o size=512m,mode=1777 vartmp /var/tmp
mkdir -p /dev/shm && mount -t tmpfs -o size=256m,mode=1777 shm /dev/shm
# The tests' servers (HTTP, NBD) listen on 127.0.0.1.
ip link set lo up
export PATH=/bin TMPDIR=/tmp HOME=/tmp
export BLOBFSD=/tests/blobfsd BLOBFS_CAT=/tests/blobfs-cat
ulimit -n 65536 2>/dev/null
echo "ZXPAGER-KERNEL \$(uname -r)"
/tests/zxpager info
passed=0; failed=0; skipped=0; names=""
for t in ${tests[*]}; do
  echo "ZXPAGER-RUN \$t"
  timeout $per_test_timeout /tests/test_\$t >/tmp/out 2>&1
  rc=\$?
  if [ \$rc -eq 0 ]; then passed=\$((passed+1)); r=ok
  elif [ \$rc -eq 77 ]; then skipped=\$((skipped+1)); r=skip
  else failed=\$((failed+1)); names="\$names \$t"; r="fail(rc=\$rc)"; tail -n 80 /tmp/out; fi
  grep -E "^SKIP|^test cases|^All tests|warning:|with message" /tmp/out | tail -n 6
  echo "ZXPAGER-TEST \$t \$r"
done
echo "ZXPAGER-RESULT \$(uname -r) passed=\$passed failed=\$failed skipped=\$skipped names=\$names"
sync
poweroff -f
EOF
  chmod +x "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
  rm -rf "$root"
}

total_failed=0
summary=()
for want in "${packages[@]}"; do
  pkg=$(resolve "$want")
  if [ -z "$pkg" ]; then
    log "apt offers no $want here: skipped"
    summary+=("$want: skipped (not offered by apt)")
    continue
  fi
  dir=$(fetch "$pkg") || { summary+=("$pkg: could not be fetched"); total_failed=$((total_failed+1)); continue; }
  vmlinuz=$(ls "$dir"/root/boot/vmlinuz-* | head -n1)
  config=$(ls "$dir"/root/boot/config-* | head -n1)
  check_config "$config" "${config_needs[@]}" || {
    summary+=("$pkg: kernel config lacks what the tests need")
    total_failed=$((total_failed+1)); continue; }
  initrd="$cache/initrd-$pkg.cpio.gz"
  make_initramfs "$initrd"
  out="$cache/console-$pkg.log"
  log "booting $pkg ($(basename "$vmlinuz")) under qemu (TCG); console in $out"
  accel=tcg
  # -cpu max: TCG's default CPU model lacks instructions the host build may use.
  timeout "$per_kernel_timeout" qemu-system-x86_64 -accel "$accel" -cpu max -smp 2 -m 2G \
    -nographic -no-reboot -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3" >"$out" 2>&1 || true
  grep -E '^ZXPAGER-TEST ' "$out" | sed 's/\r$//' >&2 || true
  line=$(console_result "$out")
  if [ -z "$line" ]; then
    why=$(console_failure "$out")
    log "$pkg: no result line: $why; see $out"
    summary+=("$pkg: no result: $why (see $out)")
    total_failed=$((total_failed+1))
    continue
  fi
  read -r _ release p f s names <<<"$line"
  p=${p#passed=}; f=${f#failed=}; s=${s#skipped=}; names=${names#names=}
  res="$release: $p passed, $f failed, $s skipped"
  [ "$f" -ne 0 ] && res="$res (FAILED:$names)"
  summary+=("$res")
  total_failed=$((total_failed + f))
done
for l in "${summary[@]}"; do echo "test-kernels: $l"; done
[ "$total_failed" -eq 0 ]

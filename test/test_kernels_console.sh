#!/usr/bin/env bash
# What ./x test-kernels makes of a guest's console (tools/test-kernels/kernels.sh): the
# result line where there is one; where there is none, a reason, and the caller, which runs
# under set -e -o pipefail, goes on (it used to stop there, silently, before the next
# kernel). And the test programs copied into the initramfs lose their debug information,
# and one linked to the build tree's libzxpager.so finds it there.
# Usage: test_kernels_console.sh KERNELS_SH ELF_WITH_DEBUG_INFO ELF_LINKED_TO_LIBZXPAGER_SO
set -euo pipefail
kernels_sh=$1
elf=$2
dynamic=$3
fail() { echo "FAIL: $*" >&2; exit 1; }
log() { echo "log: $*" >&2; }
cache=/nonexistent
# shellcheck source=/dev/null
source "$kernels_sh"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

printf 'ZXPAGER-KERNEL 6.1.0\r\nZXPAGER-RUN vmo\r\nZXPAGER-TEST vmo ok\r\nZXPAGER-RESULT 6.1.0 passed=1 failed=0 skipped=0 names=\r\n' >"$dir/ok.log"
[ "$(console_result "$dir/ok.log")" = "ZXPAGER-RESULT 6.1.0 passed=1 failed=0 skipped=0 names=" ] ||
  fail "result line: '$(console_result "$dir/ok.log")'"

# The console of a guest whose initramfs did not fit (seen with every test program in it).
printf '[   19.79] Initramfs unpacking failed: write error\r\n[   20.69] Kernel panic - not syncing: No working init found.\r\n' >"$dir/unpack.log"
line=$(console_result "$dir/unpack.log")
[ -z "$line" ] || fail "a result line from a guest that wrote none: '$line'"
why=$(console_failure "$dir/unpack.log")
case $why in *"initramfs did not unpack"*) ;; *) fail "unpack failure told as '$why'" ;; esac

printf '[    1.00] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n' >"$dir/panic.log"
why=$(console_failure "$dir/panic.log")
[ "$why" = "kernel panic: Kernel panic - not syncing: VFS: Unable to mount root fs" ] ||
  fail "panic told as '$why'"

printf 'ZXPAGER-RUN vmo\r\nZXPAGER-TEST vmo ok\r\nZXPAGER-RUN pager_huge\r\n' >"$dir/hang.log"
[ -z "$(console_result "$dir/hang.log")" ] || fail "a result line from a guest that hung"
why=$(console_failure "$dir/hang.log")
case $why in *"during test pager_huge"*) ;; *) fail "a hang told as '$why'" ;; esac

: >"$dir/empty.log"
case $(console_failure "$dir/empty.log") in *"no test started"*) ;; *) fail "an empty console" ;; esac

# Debug information stays out of the initramfs.
# (No `cmd | grep -q` under pipefail: grep leaves at the first match, and a command still
# writing then dies of SIGPIPE, which fails the pipeline.)
grep -q '\.debug_info' <<<"$(readelf -S "$elf")" || echo "note: $elf has no debug information"
mkdir "$dir/root"
copy_with_libs "$dir/root" "$elf"
copy="$dir/root/tests/$(basename "$elf")"
[ -x "$copy" ] || fail "no copy of $elf"
if grep -q '\.debug_info' <<<"$(readelf -S "$copy")"; then
  fail "the copy keeps its debug information"
fi
"$copy" --help >/dev/null 2>&1 || fail "the stripped copy does not run"

# From /tests, a RUNPATH of $ORIGIN/../lib is /lib (the guest's loader looks nowhere else
# for a library of the build tree).
grep -q 'libzxpager.so.0 => /' <<<"$(ldd "$dynamic")" ||
  fail "$dynamic does not load libzxpager.so.0"
copy_with_libs "$dir/root" "$dynamic"
[ -f "$dir/root/lib/libzxpager.so.0" ] || fail "libzxpager.so.0 is not in the initramfs's /lib"
echo "ok"

#!/usr/bin/env bash
# A second host profile that any x86-64 Linux machine can reproduce: `zxpager bench` (the
# mechanism table) and `zxpager bench file` inside a qemu guest without KVM (TCG: every
# guest instruction, page-table walk and TLB refill is emulated), on a Debian stock kernel,
# with the file on ext4 on a virtio disk. Both benches print their host line first.
#
# Usage: tools/bench-tcg.sh [OPTIONS] [-- BENCH-ARGS...]
#   --kernel PKG     Debian kernel package (default linux-image-6.12-amd64: the MOVE rows
#                    need UFFDIO_MOVE, Linux 6.8+); a meta-package is followed with apt, an
#                    exact package already unpacked in the cache is used without apt
#   --size N         bytes of random data in the file `bench file` reads (K/M/G; default 256M)
#   --repeat N       runs per configuration in both benches, the median is kept (default 3)
#   --memory M       guest memory (qemu -m; default 3G)
#   --smp N          guest CPUs (default 2, as this machine has)
#   --tcg-thread T   single (default): one host thread runs every vCPU in turn, so a thread
#                    woken on the other vCPU runs without the host scheduler's latency
#                    (multi: a host thread per vCPU; a userfaultfd round trip then costs
#                    2-9 ms on a busy host instead of 0.1-0.3 ms)
#   --thp MODE       the guest's transparent huge pages: always, madvise or never (default
#                    madvise, as on most distributions; Debian's kernel alone says always)
#   --timeout S      seconds the guest may run in all (default 1740: under 30 minutes)
#   --only WHAT      mech: only `zxpager bench`; file: only `zxpager bench file`
#   --file-args 'A'  more arguments for `zxpager bench file` (e.g. '--only mmap zxpager')
#   --zxpager PATH   the binary to run (default build/tools/zxpager/zxpager)
#   --out FILE       also write the report (command, this machine's host line, the guest's
#                    tables) to FILE
#   BENCH-ARGS       more arguments for `zxpager bench` (default --region 16M)
# Environment: TEST_KERNELS_CACHE (default ~/.cache/zxpager-test-kernels), shared with
# tools/test-kernels/test-kernels.sh: unpacked kernels; the raw console log of the last
# run is kept there (bench-tcg-console-PKG.log).
# Needs qemu-system-x86_64, a static busybox, cpio, gzip, xz and mkfs.ext4 (e2fsprogs 1.43+
# for -d); `./x bench-tcg` installs them and builds zxpager first.
set -euo pipefail

log() { printf 'bench-tcg: %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

kernel=linux-image-6.12-amd64 size=256M repeat=3 memory=3G smp=2 tcg_thread=single thp=madvise timeout_s=1740 only="" file_args=""
zxpager="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kernel=${2:?--kernel needs a package}; shift 2 ;;
    --size) size=${2:?--size needs a value}; shift 2 ;;
    --repeat) repeat=${2:?--repeat needs a number}; shift 2 ;;
    --memory) memory=${2:?--memory needs a value}; shift 2 ;;
    --smp) smp=${2:?--smp needs a number}; shift 2 ;;
    --tcg-thread) tcg_thread=${2:?--tcg-thread needs single or multi}; shift 2 ;;
    --thp) thp=${2:?--thp needs always, madvise or never}; shift 2 ;;
    --timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
    --only) only=${2:?--only needs mech or file}; shift 2 ;;
    --file-args) file_args=${2?--file-args needs a value}; shift 2 ;;
    --zxpager) zxpager=${2:?--zxpager needs a path}; shift 2 ;;
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
bench_args=("$@")
[ ${#bench_args[@]} -eq 0 ] && bench_args=(--region 16M)

repo=$(cd "$(dirname "$0")/.." && pwd)
zxpager=${zxpager:-$repo/build/tools/zxpager/zxpager}
[ -x "$zxpager" ] || die "$zxpager missing: run ./x build (or ./x bench-tcg) first"
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "--repeat takes a whole number >= 1"
[[ "$smp" =~ ^[1-9][0-9]*$ ]] || die "--smp takes a whole number >= 1"
[[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || die "--timeout takes whole seconds"
[[ "$memory" =~ ^[1-9][0-9]*[MG]$ ]] || die "--memory takes a size like 3G or 2048M"
case "$tcg_thread" in single|multi) ;; *) die "--tcg-thread takes single or multi" ;; esac
case "$thp" in always|madvise|never) ;; *) die "--thp takes always, madvise or never" ;; esac
case "$only" in ""|mech|file) ;; *) die "--only takes mech or file" ;; esac
bytes=$(numfmt --from=iec "$size" 2>/dev/null) || die "--size: not a size: $size"
[ "$bytes" -ge 1048576 ] || die "--size must be at least 1M"
# The arguments are written into the guest's init script: keep them to plain words.
read -r -a file_args_a <<<"$file_args"
for a in "${bench_args[@]}" "${file_args_a[@]}"; do
  [[ "$a" =~ ^[A-Za-z0-9_.,=:/+-]+$ ]] || die "bench argument '$a': only letters, digits and _.,=:/+- are passed to the guest"
done
for tool in qemu-system-x86_64 cpio gzip xz mkfs.ext4 numfmt; do
  command -v "$tool" >/dev/null || die "$tool missing (./x bench-tcg installs qemu-system-x86, cpio, xz-utils, e2fsprogs)"
done
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox missing (./x bench-tcg installs busybox-static)"
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is linked dynamically: install busybox-static"

cache=${TEST_KERNELS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zxpager-test-kernels}
mkdir -p "$cache"
# resolve, fetch, check_config, copy_with_libs
source "$repo/tools/test-kernels/kernels.sh"

if [ -f "$cache/$kernel/.unpacked" ]; then
  pkg=$kernel
else
  pkg=$(resolve "$kernel")
  [ -n "$pkg" ] || die "apt offers no $kernel here (and $cache/$kernel is not unpacked)"
fi
kdir=$(fetch "$pkg") || die "could not fetch $pkg"
vmlinuz=$(ls "$kdir"/root/boot/vmlinuz-* 2>/dev/null | head -n1)
config=$(ls "$kdir"/root/boot/config-* 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] && [ -n "$config" ] || die "$kdir/root/boot holds no vmlinuz-* and config-*"
kmods=$(ls -d "$kdir"/root/lib/modules/*/ 2>/dev/null | head -n1)
kmods=${kmods%/}
[ -n "$kmods" ] || die "$kdir/root/lib/modules is missing"
check_config "$config" USERFAULTFD SERIAL_8250 SERIAL_8250_CONSOLE BLK_DEV_INITRD RD_GZIP \
  DEVTMPFS TMPFS MEMFD_CREATE VIRTIO_PCI TRANSPARENT_HUGEPAGE ||
  die "$pkg lacks what the benches need"

work=$(mktemp -d "${TMPDIR:-/tmp}/zxpager-bench-tcg.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# add_module DEST NAME: NAME's module and the ones it depends on, decompressed into DEST,
# their names appended to DEST/order in load order; nothing for a built-in one.
add_module() {
  local dest=$1 name=$2 file dep deps
  grep -qx "$name" "$dest/order" 2>/dev/null && return 0
  grep -qE "/($name|${name//_/-})\.ko\$" "$kmods/modules.builtin" && return 0
  file=$(find "$kmods/kernel" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) | head -n1)
  [ -n "$file" ] || { log "$pkg has no module $name, nor is it built in"; return 1; }
  case "$file" in
    *.xz) xz -dc "$file" ;;
    *.zst) zstd -dc "$file" ;;
    *.gz) gzip -dc "$file" ;;
    *) cat "$file" ;;
  esac >"$dest/$name.ko"
  deps=$(grep -a -o 'depends=[^[:cntrl:]]*' "$dest/$name.ko" | head -n1 | cut -d= -f2)
  for dep in ${deps//,/ }; do add_module "$dest" "$dep" || return 1; done
  echo "$name" >>"$dest/order"
}

# The file system: an ext4 image holding the file, made here (mkfs.ext4 -d), attached as a
# virtio disk. The inode tables and the journal are written now, so no lazy-init thread
# writes in the guest while it measures.
file_name=zxp-bench-$size.bin
if [ "$only" != mech ]; then
  log "creating the disk: $size of random data in $file_name on ext4"
  mkdir "$work/fs"
  head -c "$bytes" /dev/urandom >"$work/fs/$file_name"
  chmod 0644 "$work/fs/$file_name"
  image_mib=$(( (bytes + bytes / 8) / 1048576 + 256 ))
  mkfs.ext4 -q -F -m 0 -L zxpbench -E lazy_itable_init=0,lazy_journal_init=0 \
    -d "$work/fs" "$work/disk.img" "${image_mib}M" >/dev/null || die "mkfs.ext4 -d failed"
  rm -rf "$work/fs"
else
  # Still a disk: /tmp in the guest lives on it (the kernel-file-mmap row's file).
  mkfs.ext4 -q -F -m 0 -L zxpbench -E lazy_itable_init=0,lazy_journal_init=0 \
    "$work/disk.img" 256M >/dev/null || die "mkfs.ext4 failed"
fi

# The initramfs: busybox, zxpager and its libraries, the disk's modules, the script.
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,mnt,tests,modules,etc}
chmod 0755 "$root"
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
copy_with_libs "$root" "$zxpager"
# crc32c first: ext4 and jbd2 ask the crypto API for it (a soft dependency, not in depends=).
for m in crc32c_generic virtio_blk ext4; do add_module "$root/modules" "$m" || exit 2; done
touch "$root/modules/order"
{
  printf 'repeat=%s\nfile=/mnt/%s\nonly=%s\n' "$repeat" "$file_name" "$only"
  printf 'bench_args="%s"\nfile_args="%s"\n' "${bench_args[*]}" "${file_args_a[*]}"
} >"$root/etc/bench.conf"
cat >"$root/init" <<'EOF'
#!/bin/sh
# Lines starting ZXP-M are markers for the host script, ZXP-P the benches' progress
# (stderr); everything else is the report.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
export PATH=/bin HOME=/
. /etc/bench.conf
mark() { echo "ZXP-M $*"; }
finish() { umount /tmp /mnt 2>/dev/null; sync; poweroff -f; }
fail() { mark "failed: $*"; finish; }
mark "started: kernel $(uname -r)"
for m in $(cat /modules/order); do insmod /modules/$m.ko || fail "insmod $m"; done
# virtio_blk registers the disk as it probes; give devtmpfs up to 10 s to show it.
i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1)); [ $i -gt 100 ] && fail "no /dev/vda after loading virtio_blk"
  sleep 0.1
done
mount -t ext4 -o noatime /dev/vda /mnt || fail "mount /dev/vda"
mkdir -p /mnt/tmp && chmod 1777 /mnt/tmp && mount -o bind /mnt/tmp /tmp || fail "/tmp"
ulimit -n 65536 2>/dev/null
echo "guest: Linux $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs," \
  "$(awk '/^MemTotal/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo)," \
  "THP $(cat /sys/kernel/mm/transparent_hugepage/enabled)," \
  "/tmp and the file on ext4 on virtio ($(cat /sys/block/vda/size) sectors)"
/tests/zxpager info | sed -n '/^paths the library takes here/,$p'
# run NAME CMD...: CMD's stdout to the console, its stderr (\r progress included) as ZXP-P
# lines; the exit status and the minutes it took as a marker.
run() {
  name=$1; shift
  mark "start $name: $*"
  t0=$(date +%s)
  { { "$@" 2>&1 1>&3 3>&-; echo $? >/tmp/rc; } | tr '\r' '\n' |
    sed -n 's/^ *\(..*\)$/ZXP-P \1/p'; } 3>&1
  mark "end $name: exit $(cat /tmp/rc) after $(( $(date +%s) - t0 )) s"
}
if [ "$only" != file ]; then
  echo; echo "\$ zxpager bench --repeat $repeat $bench_args"
  run bench /tests/zxpager bench --repeat $repeat $bench_args
fi
if [ "$only" != mech ]; then
  echo; echo "\$ zxpager bench file $file --repeat $repeat --no-rss $file_args"
  run file /tests/zxpager bench file $file --repeat $repeat --no-rss $file_args
fi
mark "done"
finish
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"
rm -rf "$root"

# This machine's host line, to read the guest's beside (the first lines of a tiny bench).
here=$("$zxpager" bench --only kernel-anon --region 4M --repeat 1 --quiet 2>/dev/null |
       grep -E '^host' || true)

console=$cache/bench-tcg-console-$pkg.log
[ -n "$out" ] && : >"$out"
emit() { printf '%s\n' "$*"; if [ -n "$out" ]; then printf '%s\n' "$*" >>"$out"; fi; }
emit "# tools/bench-tcg.sh --kernel $pkg --size $size --repeat $repeat --memory $memory --smp $smp --tcg-thread $tcg_thread --thp $thp" \
     "${only:+--only $only }${file_args:+--file-args '$file_args' }-- ${bench_args[*]}"
emit "# $(date -u '+%Y-%m-%d %H:%M UTC'); qemu $(qemu-system-x86_64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')" \
     "-accel tcg,thread=$tcg_thread -cpu max -smp $smp -m $memory, virtio disk (raw image, host page cache)"
emit "# this machine, outside the guest:"
while IFS= read -r l; do emit "#   $l"; done <<<"$here"

log "booting $pkg under qemu (TCG $tcg_thread-threaded, $smp vCPUs, $memory), at most $timeout_s s; console in $console"
start=$SECONDS
# -nodefaults: no NIC (its option ROM) or VGA; the serial port is the only console and
# stdin is not the terminal, so qemu leaves the terminal alone.
set +e
timeout "$timeout_s" qemu-system-x86_64 -accel tcg,thread="$tcg_thread" -cpu max -smp "$smp" -m "$memory" \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
    -drive file="$work/disk.img",format=raw,if=virtio,cache=writeback \
    -append "console=ttyS0 panic=-1 quiet loglevel=3 transparent_hugepage=$thp" </dev/null 2>&1 |
  tee "$console" | {
    started=0
    while IFS= read -r line; do
      line=${line//$'\r'/}
      case "$line" in
        "ZXP-M done"*) started=0; log "guest done (+$((SECONDS - start)) s)" ;;
        "ZXP-M started:"*) started=1; log "guest ${line#ZXP-M } (+$((SECONDS - start)) s)" ;;
        "ZXP-M "*) log "guest ${line#ZXP-M } (+$((SECONDS - start)) s)"
                   case "$line" in "ZXP-M end "*|"ZXP-M failed"*) emit "# ${line#ZXP-M }" ;; esac ;;
        "ZXP-P "*) log "  ${line#ZXP-P }" ;;
        *) [ "$started" -eq 1 ] && emit "$line" ;;
      esac
    done
  }
rc=${PIPESTATUS[0]}
set -e
elapsed=$((SECONDS - start))

markers=$(tr -d '\r' <"$console" | grep -a '^ZXP-M ' || true)
if ! grep -q '^ZXP-M done' <<<"$markers"; then
  if [ "$rc" -eq 124 ]; then
    log "the guest did not finish within $timeout_s s (raise --timeout, or lower --size/--repeat)"
  elif grep -q '^ZXP-M failed' <<<"$markers"; then
    log "the guest run failed: $(grep '^ZXP-M failed' <<<"$markers" | head -n1 | cut -c7-)"
  else
    log "the guest stopped before it finished (qemu exit $rc); the console's last lines:"
    tr -d '\r' <"$console" | tail -n 15 >&2
  fi
  log "console log: $console"
  exit 1
fi
bad=$(grep '^ZXP-M end ' <<<"$markers" | grep -v ': exit 0 after' || true)
if [ -n "$bad" ]; then
  log "a bench failed in the guest: ${bad//ZXP-M /}; console log: $console"
  exit 1
fi
log "done in $elapsed s${out:+; report in $out}"

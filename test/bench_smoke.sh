#!/usr/bin/env bash
# zxpager bench --json on a small region: a row for every asked mechanism and batch (with a
# throughput that is not zero: 1668.00 is fine), the host's costs in the output (as the
# text output's host lines), and a bad --only refused.
# Usage: bench_smoke.sh ZXPAGER
set -uo pipefail
zxpager=$1
fail() { echo "FAIL: $*" >&2; exit 1; }

json=$("$zxpager" bench --json --quiet --region 2M --batches 1 16 --fault-threads 1 \
         --pager-threads 1 --repeat 1 --only raw-copy zxpager-copy)
rc=$?
[ $rc -eq 0 ] || fail "exit $rc: $json"
for m in raw-copy zxpager-copy; do
  for b in 1 16; do
    grep -q "{\"mechanism\":\"$m\",\"batch\":$b,\"fault_threads\":1,\"pager_threads\":1,\"mib_per_s\":[0-9.]*[1-9][0-9.]*," \
      <<<"$json" || fail "no $m batch $b row: $json"
  done
done
grep -Eq '^\{"host":\{"kernel": "[^"]+", "machine": "[^"]+", "cpus": [1-9][0-9]*, .*"fresh_4k_us": [0-9.]*[1-9][0-9.]*,.*\},"results":\[' \
  <<<"$json" || fail "no host costs: $json"
# What an idle CPU does here, as sysfs tells it: a cross-CPU wake-up's price depends on it.
idle=$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || true)
grep -Eq "\"cpuidle\": \"$idle\", \"halt_poll_ns\": -?[0-9]+," <<<"$json" ||
  fail "no cpuidle '$idle' in the host: $json"
if [ "$idle" = haltpoll ] && [ -r /sys/module/haltpoll/parameters/guest_halt_poll_ns ]; then
  ns=$(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns)
  grep -q "\"halt_poll_ns\": $ns," <<<"$json" || fail "halt_poll_ns is not $ns: $json"
fi
# Whether a virtio balloon reports free pages (feature bit 5, the sixth character of its
# features in sysfs): fresh memory then costs hypervisor faults a few seconds after it was
# freed.
reporting=false
for d in /sys/bus/virtio/devices/*; do
  [ -r "$d/device" ] && [ "$(cat "$d/device")" = 0x0005 ] || continue
  [ "$(cut -c6 "$d/features")" = 1 ] && reporting=true
done
grep -q "\"free_page_reporting\": $reporting," <<<"$json" ||
  fail "free_page_reporting is not $reporting: $json"
text=$("$zxpager" bench --quiet --region 2M --batches 1 --fault-threads 1 --pager-threads 1 \
         --repeat 1 --only raw-copy)
if [ $reporting = true ]; then
  grep -q '^host: .*, free page reporting (' <<<"$text" || fail "no free page reporting: $text"
else
  grep -q 'free page reporting' <<<"$text" && fail "free page reporting claimed: $text"
fi

# The text output: the decommit-price section appears only with the three rows it compares.
text=$("$zxpager" bench --quiet --region 2M --batches 1 --fault-threads 1 --pager-threads 1 \
         --repeat 1 --only raw-copy-punch zxpager-copy)
grep -q '^zxpager-copy ' <<<"$text" || fail "no zxpager-copy row: $text"
grep -q "price of Zircon's decommit" <<<"$text" && fail "an empty decommit-price section: $text"
text=$("$zxpager" bench --quiet --region 2M --batches 1 --fault-threads 1 --pager-threads 1 \
         --repeat 1 --only raw-copy raw-copy-punch zxpager-copy)
grep -q 'batch   1: raw-copy-punch [0-9.]*x of raw-copy' <<<"$text" ||
  fail "no decommit price with all three rows: $text"

err=$("$zxpager" bench --only nonsense 2>&1)
rc=$?
[ $rc -ne 0 ] || fail "--only nonsense was accepted"
grep -q -- "nonsense" <<<"$err" || fail "no message naming the bad mechanism: $err"
echo "ok"

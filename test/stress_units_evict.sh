#!/usr/bin/env bash
# zxpager stress with eviction and failures while whole 2 MiB units are in play: private
# VMOs take units by MOVE until two units' worth of pages have been moved in
# (--evict-after-moved), when the evictor's first call on each turns its write tracking on
# with fills under way; from then on unit-shaped fills go in by COPY, write-protected, and
# are evicted and asked for again, while requests fail and VMO 0 is detached. Every byte
# is checked by the stress run itself (exit 1 on any error); this script checks that each
# of those things did happen.
# Usage: stress_units_evict.sh ZXPAGER
set -uo pipefail
zxpager=$1
fail() { echo "FAIL: $*" >&2; exit 1; }

# Without UFFDIO_MOVE (Linux before 6.8, ZXPAGER_DISABLE=move) there are no units: the
# same run, with every supply a COPY. Nor without transparent huge pages (THP "never"),
# where the service copies every fill in from its warm small slots.
move=0
grep -q '"anon_supply":"move"' <<<"$("$zxpager" info --json)" && move=1
thp=0
grep -qv '\[never\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null && thp=1

# 4 x 256 MiB, each fault reading ahead 4 MiB: the units take seconds to be asked for, so
# most of them come after eviction began. It begins on a condition, not at a time: with
# --evict-after 0.2 an ASan build once had moved nothing by then (CI, 2026-12-01). Where
# nothing can be moved (no units), it begins at 0.2 s.
start=(--evict-after 0.2)
[ $move -eq 1 ] && [ $thp -eq 1 ] && start=(--evict-after-moved 1024)
json=$("$zxpager" stress --duration 10 --private --batch 1024 --vmo-size 256M \
         --fail-rate 0.02 --evict "${start[@]}" --detach-after 5 --json)
rc=$?
[ $rc -eq 0 ] || fail "exit $rc: $json"
python3 - "$json" "$move" "$thp" <<'PY' || exit 1
import json, sys
d = json.loads(sys.argv[1])
move = sys.argv[2] == "1"
units = move and sys.argv[3] == "1"
s, f = d["pages_supplied"], d["fails_observed"]
checks = [
    ("no errors", d["ok"] and d["errors"] == 0),
    ("eviction began", d["evict_began"] is not None),
    ("whole units moved in before eviction began",
     not units or (d["evict_began"] or {}).get("pages_moved", 0) >= 1024),
    ("pages supplied by COPY once writes were tracked", s["copy"] > 0),
    ("2 MiB unit fills", not units or d["service"]["huge_units"] > 0),
    ("pages evicted", d["pages_evicted"] > 0),
    ("write faults on tracked pages", d["write_faults"] > 0),
    ("failed requests seen", f["sigbus"] + f["status"] > 0),
    ("VMO 0 detached", d["detaches"] == 1),
]
bad = [name for name, ok in checks if not ok]
if bad:
    print("FAIL: " + "; ".join(bad) + ": " + sys.argv[1], file=sys.stderr)
    sys.exit(1)
print("moved {} pages, copied {}, {} unit fills, eviction from {} s, evicted {}, "
      "{} write faults, {} fails seen".format(
          s["move"], s["copy"], d["service"]["huge_units"], d["evict_began"]["seconds"],
          d["pages_evicted"], d["write_faults"], f["sigbus"] + f["status"]))
PY
# --evict-after-moved is refused where eviction could never begin: shared VMOs (filled by
# COPY) at the command line, a run that copies every page when it is set up.
out=$("$zxpager" stress --duration 1 --evict --evict-after-moved 8 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "is for --evict with --private" <<<"$out" ||
  fail "--evict-after-moved on shared VMOs: exit $rc: $out"
out=$("$zxpager" stress --duration 1 --private --supply copy --evict --evict-after-moved 8 2>&1)
rc=$?
[ $rc -ne 0 ] && grep -q "no page would ever be moved" <<<"$out" ||
  fail "--evict-after-moved with --supply copy: exit $rc: $out"
[ $move -eq 1 ] || echo "no UFFDIO_MOVE here: no 2 MiB units, every supply a COPY"
[ $move -eq 0 ] || [ $thp -eq 1 ] || echo "no transparent huge pages here: no 2 MiB units, every supply a COPY"
echo "ok"
